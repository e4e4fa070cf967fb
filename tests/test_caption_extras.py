"""extra_headers and extra_body reach the server; the user's extra_body wins."""

from __future__ import annotations

from photoscribe.caption import Captioner
from photoscribe.config import LLMConfig
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
