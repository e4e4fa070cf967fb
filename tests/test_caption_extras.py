"""extra_headers and extra_body reach the server; the user's extra_body wins."""

from __future__ import annotations

import pytest

from photoscribe.caption import Captioner
from photoscribe.config import LLMConfig
from photoscribe.errors import CaptionRejected, CaptionUnavailable
from photoscribe.records import Keyword


def test_extra_headers_and_body_are_sent(fake_llm) -> None:
    cfg = LLMConfig(
        base_url=fake_llm.base_url,
        extra_headers={"X-Team": "photos"},
        extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}},
    )
    Captioner(cfg, "x").caption((Keyword("red", 0.6), Keyword("circle", 0.4)))
    body = fake_llm.requests[-1]
    assert body["top_k"] == 20
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert fake_llm.last_headers["x-team"] == "photos"


@pytest.mark.parametrize(
    ("behavior", "error", "message"),
    [
        ("truncated", CaptionUnavailable, "cannot reach the LLM server"),
        ("stall", CaptionUnavailable, "no reply from the LLM server"),
        ("hang_up", CaptionUnavailable, "sent a reply that is cut off or not JSON"),
        ("no_choices", CaptionRejected, "the LLM reply holds no answer"),
    ],
)
def test_broken_replies_are_caption_errors_not_written(
    fake_llm, behavior: str, error: type, message: str
) -> None:
    """Truncated JSON, a server stalling mid-answer or hanging up before the timeout, empty
    choices: photoscribe's own caption error, asked twice, nothing half-made is returned."""
    fake_llm.set_behavior(behavior, delay=3.0 if behavior == "stall" else 0.2)
    cfg = LLMConfig(base_url=fake_llm.base_url, timeout=1.0, retries=1)
    captioner = Captioner(cfg, "x", sleep=lambda _: None)
    with pytest.raises(error, match=message) as raised:
        captioner.caption((Keyword("red", 0.6), Keyword("circle", 0.4)))
    assert type(raised.value) is error
    assert len(fake_llm.requests) == 2  # retried once (transient) or asked once more strictly
    fake_llm.set_behavior("normal")


def test_a_caption_cut_at_max_tokens_is_rejected(fake_llm) -> None:
    fake_llm.set_behavior("length", chars=12)
    captioner = Captioner(LLMConfig(base_url=fake_llm.base_url, max_tokens=7), "x")
    with pytest.raises(CaptionRejected, match=r"cut off at llm\.max_tokens \(7\)"):
        captioner.caption((Keyword("red", 0.6), Keyword("circle", 0.4)))
    assert len(fake_llm.requests) == 2  # asked once more, more strictly


def test_a_stream_stalling_mid_answer_times_out(fake_llm) -> None:
    fake_llm.set_behavior("stall", delay=3.0)
    cfg = LLMConfig(base_url=fake_llm.base_url, timeout=1.0, retries=0)
    shown: list[str] = []
    with pytest.raises(CaptionUnavailable):
        Captioner(cfg, "x").stream((Keyword("red", 0.6),), shown.append)
    fake_llm.set_behavior("normal")
