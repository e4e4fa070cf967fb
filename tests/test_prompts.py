"""Prompt styles, the user's own templates, and the stricter retry."""

from __future__ import annotations

import pytest

from photoscribe.caption import Captioner
from photoscribe.caption.prompt import STRICTER, build_messages, prompts_for
from photoscribe.config import LLMConfig, config_from_dict
from photoscribe.errors import ConfigError
from photoscribe.records import Keyword

KEYWORDS = (Keyword("red", 0.6), Keyword("circle", 0.4))


@pytest.mark.parametrize("language", ["en", "zh"])
def test_styles_change_the_system_prompt(language: str) -> None:
    systems = {s: prompts_for(language, s).system for s in ("plain", "social", "alt_text")}
    assert len(set(systems.values())) == 3
    assert all(systems["plain"] in text for text in systems.values())


def test_users_own_templates() -> None:
    prompts = prompts_for("en", "plain", "Be brief.", "Photo of {keywords}. Caption it.")
    messages = build_messages(KEYWORDS, language="en", thinking=True, prompts=prompts)
    assert messages[0]["content"] == "Be brief."
    assert messages[1]["content"] == "Photo of red, circle. Caption it."
    with pytest.raises(ConfigError, match=r"must contain \{keywords\}"):
        config_from_dict({"llm": {"user_prompt": "no placeholder"}})
    with pytest.raises(ConfigError, match="not one of plain, social, alt_text"):
        config_from_dict({"llm": {"style": "poem"}})


def test_style_reaches_the_server(fake_llm) -> None:
    Captioner(LLMConfig(base_url=fake_llm.base_url, style="alt_text"), "x").caption(KEYWORDS)
    system = fake_llm.requests[-1]["messages"][0]["content"]
    assert system == prompts_for("en", "alt_text").system


def test_a_rejected_reply_is_retried_once_with_a_stricter_prompt(fake_llm) -> None:
    fake_llm.script("echo", "normal")
    cfg = LLMConfig(base_url=fake_llm.base_url)
    assert Captioner(cfg, "x").caption(KEYWORDS) == "A photo showing red and circle."
    first, second = (r["messages"][0]["content"] for r in fake_llm.requests[-2:])
    assert STRICTER["en"] not in first
    assert second.endswith(STRICTER["en"])
