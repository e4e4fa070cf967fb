"""Captions over real HTTP: the real ``openai`` client against the fault-injecting fake."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from photoscribe.caption import Captioner, build_messages, clean_reply
from photoscribe.caption.client import retry_after
from photoscribe.config import LLMConfig
from photoscribe.errors import CaptionRejected, CaptionUnavailable
from photoscribe.records import Keyword

from fakes.openai_server import FakeOpenAI

KEYWORDS = [Keyword("circle", 0.31), Keyword("red", 0.62)]  # deliberately not in score order
CAPTION = "A photo showing red and circle."
CJK = re.compile(r"[\u4e00-\u9fff]")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(fake_llm: FakeOpenAI, sleeps: list[float], clock: Clock) -> Callable[..., Captioner]:
    """make(api_key=..., **LLMConfig overrides) -> a Captioner for the fake server."""
    made: list[Captioner] = []

    def factory(api_key: str = "not-needed", **overrides: object) -> Captioner:
        values: dict[str, object] = {"base_url": fake_llm.base_url, "timeout": 0.5, "retries": 2}
        values.update(overrides)
        captioner = Captioner(
            LLMConfig(**values),
            api_key,
            sleep=sleeps.append,
            clock=clock,  # type: ignore[arg-type]
        )
        made.append(captioner)
        return captioner

    yield factory
    for captioner in made:
        captioner.close()


def user_message(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


# -- normal answers --------------------------------------------------------------------------


def test_english_caption_and_request(make, fake_llm: FakeOpenAI) -> None:
    assert make(max_tokens=77, temperature=0.3).caption(KEYWORDS) == CAPTION
    body = fake_llm.requests[-1]
    assert body["model"] == "Qwen3-1.7B"
    assert body["max_tokens"] == 77 and body["temperature"] == 0.3
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "red, circle" in user_message(body)  # most likely first


def test_chinese_caption(make, fake_llm: FakeOpenAI) -> None:
    caption = make(language="zh").caption(KEYWORDS)
    assert CJK.search(caption) and "红色" in caption
    system = fake_llm.requests[-1]["messages"][0]["content"]
    assert "简体中文" in system


def test_thinking_off_sends_both_switches(make, fake_llm: FakeOpenAI) -> None:
    make(thinking=False).caption(KEYWORDS)
    body = fake_llm.requests[-1]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert user_message(body).endswith(" /no_think")


def test_thinking_on(make, fake_llm: FakeOpenAI) -> None:
    make(thinking=True).caption(KEYWORDS)
    body = fake_llm.requests[-1]
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert "/no_think" not in user_message(body)


@pytest.mark.parametrize("behavior", ["think_tags", "lone_close_think", "reasoning_field"])
def test_reasoning_never_reaches_the_caption(make, fake_llm: FakeOpenAI, behavior: str) -> None:
    fake_llm.set_behavior(behavior)
    assert make().caption(KEYWORDS) == CAPTION
    assert len(fake_llm.requests) == 1


def test_think_tags_in_chinese(make, fake_llm: FakeOpenAI) -> None:
    fake_llm.set_behavior("think_tags")
    caption = make(language="zh").caption(KEYWORDS)
    assert "think" not in caption and CJK.search(caption)


def test_answer_only_in_reasoning_field_is_rejected(make, fake_llm: FakeOpenAI) -> None:
    fake_llm.set_behavior("reasoning_only")
    with pytest.raises(CaptionRejected, match="reasoning field"):
        make().caption(KEYWORDS)
    assert len(fake_llm.requests) == 2


def test_wrapped_reply_is_cleaned(make, fake_llm: FakeOpenAI) -> None:
    fake_llm.set_behavior("content", text='**Caption:** "A red circle on a  white wall."')
    assert make().caption(KEYWORDS) == "A red circle on a white wall."


# -- unusable replies ---------------------------------------------------------------------------


UNUSABLE = {
    "echo": "the LLM echoed the prompt",
    "empty": "the LLM returned an empty caption$",
    "wrong_language": "the caption is not in the configured language",
}


@pytest.mark.parametrize("behavior", sorted(UNUSABLE))
@pytest.mark.parametrize("language", ["en", "zh"])
def test_unusable_reply_is_retried_once(
    make, fake_llm: FakeOpenAI, behavior: str, language: str
) -> None:
    fake_llm.set_behavior(behavior)
    captioner = make(language=language)
    with pytest.raises(CaptionRejected, match=UNUSABLE[behavior]):
        captioner.caption(KEYWORDS)
    assert len(fake_llm.requests) == 2
    assert captioner.available  # the server answered: no reason to open the circuit


def test_rejected_then_good_reply(make, fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue("echo")
    assert make().caption(KEYWORDS) == CAPTION
    assert len(fake_llm.requests) == 2


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("red, circle, blue, square", "echoed the prompt"),  # the keyword list
        ("A" * 601 + ".", r"too long \(602 characters\)"),
        ("Describe the photo in one or two natural sentences.", "echoed the prompt"),
    ],
)
def test_junk_is_rejected(make, fake_llm: FakeOpenAI, text: str, why: str) -> None:
    fake_llm.set_behavior("content", text=text)
    keywords = [*KEYWORDS, Keyword("blue", 0.1), Keyword("square", 0.05)]
    with pytest.raises(CaptionRejected, match=why):
        make().caption(keywords)


def test_no_keywords_is_rejected_without_a_request(make, fake_llm: FakeOpenAI) -> None:
    with pytest.raises(CaptionRejected, match="no keywords"):
        make().caption([])
    assert fake_llm.requests == []


# -- server failures ----------------------------------------------------------------------------


def test_500_then_success_is_retried(make, fake_llm: FakeOpenAI, sleeps: list[float]) -> None:
    fake_llm.enqueue("status", status=500)
    assert make().caption(KEYWORDS) == CAPTION
    assert len(fake_llm.requests) == 2
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0  # backoff with jitter


def test_backoff_grows(make, fake_llm: FakeOpenAI, sleeps: list[float]) -> None:
    fake_llm.set_behavior("status", status=503)
    with pytest.raises(CaptionUnavailable, match="503"):
        make(retries=3).caption(KEYWORDS)
    assert len(fake_llm.requests) == 4
    assert len(sleeps) == 3
    for attempt, slept in enumerate(sleeps):  # 1, 2, 4 s, each with up to -50 % jitter
        assert 2**attempt * 0.5 <= slept <= 2**attempt, sleeps


def test_429_honours_retry_after(make, fake_llm: FakeOpenAI, sleeps: list[float]) -> None:
    fake_llm.enqueue("status", status=429, retry_after=2)
    assert make().caption(KEYWORDS) == CAPTION
    assert sleeps == [2.0]


def test_huge_retry_after_is_capped(make, fake_llm: FakeOpenAI, sleeps: list[float]) -> None:
    fake_llm.enqueue("status", status=429, retry_after=3600)
    make().caption(KEYWORDS)
    assert sleeps == [30.0]


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after": "1.5"}) == 1.5
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after({}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    assert 15 < (retry_after({"retry-after": later}) or 0) <= 20


def test_slow_server_times_out_quickly(make, fake_llm: FakeOpenAI) -> None:
    fake_llm.set_behavior("slow", delay=5.0)  # answers, but only after 5 s
    with pytest.raises(CaptionUnavailable, match=r"llm\.timeout") as info:
        make(timeout=0.5, retries=1).caption(KEYWORDS)  # a waited-for answer would pass
    assert fake_llm.base_url in str(info.value)
    assert len(fake_llm.requests) == 2


def test_server_down(make, fake_llm: FakeOpenAI) -> None:
    captioner = make(retries=1)
    with fake_llm.down(), pytest.raises(CaptionUnavailable, match="cannot reach") as info:
        captioner.caption(KEYWORDS)
    assert fake_llm.base_url in str(info.value) and "llm.base_url" in str(info.value)
    assert captioner.caption(KEYWORDS) == CAPTION  # back on the same port


def test_nothing_listening_at_all(sleeps: list[float]) -> None:
    fake = FakeOpenAI()
    with fake:
        url = fake.base_url
    captioner = Captioner(LLMConfig(base_url=url, timeout=0.5, retries=2), "", sleep=sleeps.append)
    with pytest.raises(CaptionUnavailable, match=re.escape(url)):
        captioner.caption(KEYWORDS)
    assert len(sleeps) == 2


def test_wrong_model_is_a_clear_message(make, fake_llm: FakeOpenAI) -> None:
    with pytest.raises(CaptionUnavailable) as info:
        make(model="qwen3:1.7b").caption(KEYWORDS)
    message = str(info.value)
    assert "'qwen3:1.7b'" in message and "llm.model" in message and "/v1/models" in message
    assert "does not exist" in message  # the server's own words
    assert len(fake_llm.requests) == 1  # not worth retrying


def test_wrong_api_key_is_a_clear_message(sleeps: list[float]) -> None:
    with FakeOpenAI(api_key="secret") as fake:
        cfg = LLMConfig(base_url=fake.base_url, timeout=0.5)
        with pytest.raises(CaptionUnavailable, match=r"llm\.api_key_env"):
            Captioner(cfg, "wrong", sleep=sleeps.append).caption(KEYWORDS)
        assert Captioner(cfg, "secret", sleep=sleeps.append).caption(KEYWORDS) == CAPTION
    assert sleeps == []


def test_server_refusing_template_kwargs_falls_back(make, fake_llm: FakeOpenAI) -> None:
    message = "Unrecognized request argument supplied: chat_template_kwargs"
    fake_llm.enqueue("status", status=400, message=message)
    captioner = make()
    assert captioner.caption(KEYWORDS) == CAPTION
    assert captioner.caption(KEYWORDS) == CAPTION
    first, *later = fake_llm.requests
    assert "chat_template_kwargs" in first
    assert all("chat_template_kwargs" not in b and "/no_think" in user_message(b) for b in later)


# -- circuit breaker ----------------------------------------------------------------------------


def test_circuit_opens_after_three_failures(make, fake_llm: FakeOpenAI, clock: Clock) -> None:
    fake_llm.set_behavior("status", status=500)
    captioner = make(retries=0)
    for _ in range(3):
        assert captioner.available
        with pytest.raises(CaptionUnavailable):
            captioner.caption(KEYWORDS)
    assert not captioner.available
    with pytest.raises(CaptionUnavailable, match="not asking again"):
        captioner.caption(KEYWORDS)
    assert len(fake_llm.requests) == 3  # the open circuit sent nothing

    clock.now += 61  # half-open: one trial request
    assert captioner.available
    fake_llm.set_behavior("normal")
    assert captioner.caption(KEYWORDS) == CAPTION
    assert captioner.available and len(fake_llm.requests) == 4


def test_failed_trial_reopens_the_circuit(make, fake_llm: FakeOpenAI, clock: Clock) -> None:
    captioner = make(retries=0)
    with fake_llm.down():
        for _ in range(3):
            with pytest.raises(CaptionUnavailable):
                captioner.caption(KEYWORDS)
        clock.now += 61
        with pytest.raises(CaptionUnavailable, match="cannot reach"):
            captioner.caption(KEYWORDS)  # the trial
        assert not captioner.available
    with pytest.raises(CaptionUnavailable, match="not asking again"):
        captioner.caption(KEYWORDS)
    assert fake_llm.requests == []


def test_success_resets_the_failure_count(make, fake_llm: FakeOpenAI) -> None:
    captioner = make(retries=0)
    fake_llm.script("status", "status", "normal", "status", "status")
    outcomes = []
    for _ in range(5):
        try:
            outcomes.append(captioner.caption(KEYWORDS))
        except CaptionUnavailable:
            outcomes.append(None)
    assert outcomes == [None, None, CAPTION, None, None]
    assert captioner.available


# -- building blocks ----------------------------------------------------------------------------


def test_build_messages_orders_and_dedupes() -> None:
    keywords = [Keyword("dog", 0.2), Keyword("beach", 0.7), Keyword("Dog", 0.1)]
    messages = build_messages(keywords, language="en", thinking=True)
    user = messages[1]["content"]
    assert "beach, dog" in user and "Dog" not in user and "/no_think" not in user
    zh = build_messages(keywords, language="zh", thinking=False)
    assert CJK.search(zh[0]["content"]) and zh[1]["content"].endswith("/no_think")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<think>\nhmm\n</think>\n\nA dog on a beach.", "A dog on a beach."),
        ("<think>a</think> <THINK>b</THINK> A dog.", "A dog."),
        ("<think>a <think>b</think>\nA dog on a beach.", "A dog on a beach."),
        ("reasoning here</think>A dog on a beach.", "A dog on a beach."),
        ("<think>reasoning that never ends", ""),
        ('"A dog on a beach."', "A dog on a beach."),
        ("“一只狗在海滩上。”", "一只狗在海滩上。"),
        ("Caption: *A dog on a beach.*", "A dog on a beach."),
        ("Sure! Here's a caption for the photo: A dog  on\n a beach.", "A dog on a beach."),
        ("## A dog on a beach.", "A dog on a beach."),
        ("描述：一只狗在海滩上。", "一只狗在海滩上。"),
        ("A dog on a beach.<|im_end|>", "A dog on a beach."),
        ("Here is my dog: a golden retriever.", "Here is my dog: a golden retriever."),
        (None, ""),
    ],
)
def test_clean_reply(raw: str | None, expected: str) -> None:
    assert clean_reply(raw) == expected


def test_clean_reply_never_uses_reasoning() -> None:
    assert clean_reply("", "A dog on a beach.") == ""
    assert clean_reply("Thinking hard. A dog.", "Thinking hard.") == "A dog."


def test_only_the_client_module_imports_openai() -> None:
    package = Path(__file__).parents[1] / "daemon" / "photoscribe"
    importers = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if re.search(r"^\s*(import openai|from openai)", p.read_text(), re.MULTILINE)
    }
    assert importers == {"caption/client.py"}
