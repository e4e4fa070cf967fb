"""extra_headers and extra_body reach the server; the user's extra_body wins."""

from __future__ import annotations

import pytest

from photoscribe.caption import Captioner
from photoscribe.config import LLMConfig
from photoscribe.errors import CaptionError, CaptionUnavailable
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


@pytest.mark.parametrize("behavior", ["truncated", "no_choices", "stall"])
def test_broken_replies_are_unavailable_not_written(fake_llm, behavior: str) -> None:
    """Truncated JSON, empty choices and a server stalling mid-answer: the caption waits
    (CaptionUnavailable, retried later), nothing half-made is returned."""
    fake_llm.set_behavior(behavior, delay=3.0)
    cfg = LLMConfig(base_url=fake_llm.base_url, timeout=1.0, retries=1)
    captioner = Captioner(cfg, "x", sleep=lambda _: None)
    with pytest.raises(CaptionError):
        captioner.caption((Keyword("red", 0.6), Keyword("circle", 0.4)))
    assert len(fake_llm.requests) == 2  # retried once, as configured
    fake_llm.set_behavior("normal")


def test_a_stream_stalling_mid_answer_times_out(fake_llm) -> None:
    fake_llm.set_behavior("stall", delay=3.0)
    cfg = LLMConfig(base_url=fake_llm.base_url, timeout=1.0, retries=0)
    shown: list[str] = []
    with pytest.raises(CaptionUnavailable):
        Captioner(cfg, "x").stream((Keyword("red", 0.6),), shown.append)
    fake_llm.set_behavior("normal")
