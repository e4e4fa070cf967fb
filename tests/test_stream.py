"""Streaming captions (`photoscribe describe`): reasoning never shown, caption validated."""

from __future__ import annotations

import pytest
import yaml

from photoscribe.caption import Captioner
from photoscribe.caption.client import VisibleText
from photoscribe.cli import main
from photoscribe.config import LLMConfig
from photoscribe.errors import CaptionRejected, CaptionUnavailable
from photoscribe.records import Keyword

from conftest import tiny_config_dict
from fixtures.synthetic import draw_shape

KEYWORDS = (Keyword("red", 0.6), Keyword("circle", 0.4))


def feed_all(pieces: list[str]) -> str:
    shown: list[str] = []
    visible = VisibleText(shown.append)
    for piece in pieces:
        visible.feed(piece)
    return "".join(shown)


@pytest.mark.parametrize(
    "pieces",
    [
        ["A red ", "circle."],
        ["<thi", "nk>plan", "ning</th", "ink>\n\nA red ", "circle."],
        ["  ", "<think>", "x", "</think>", "A red circle."],
        ["reasoning without an opening tag</think>A red circle."],
    ],
)
def test_visible_text_holds_back_reasoning(pieces: list[str]) -> None:
    assert feed_all(pieces) == "A red circle."


def test_with_thinking_on_content_before_a_lone_close_tag_is_never_shown() -> None:
    """Templates that open <think> in the prompt stream reasoning with no opening tag."""
    shown: list[str] = []
    visible = VisibleText(shown.append, thinking=True)
    for piece in [
        "The user wants ",
        "a caption; keep it short.",
        "\n</think>\n\nA red ",
        "circle.",
    ]:
        visible.feed(piece)
        assert "user" not in "".join(shown)
    visible.finish()
    assert "".join(shown) == "A red circle."


def test_with_thinking_on_an_answer_without_markers_arrives_at_the_end() -> None:
    shown: list[str] = []
    visible = VisibleText(shown.append, thinking=True)
    visible.feed("A red ")
    visible.feed("circle.")
    assert shown == []  # could still be reasoning
    visible.finish()
    assert "".join(shown) == "A red circle."


def test_with_thinking_on_reasoning_in_its_own_field_lets_content_stream() -> None:
    shown: list[str] = []
    visible = VisibleText(shown.append, thinking=True)
    visible.reasoning_seen()
    visible.feed("A red ")
    assert shown == ["A red "]
    visible.feed("circle.")
    visible.finish()
    assert "".join(shown) == "A red circle."


@pytest.mark.parametrize("behavior", ["lone_close_think", "think_tags", "reasoning_field"])
def test_stream_with_thinking_on_shows_no_reasoning(fake_llm, behavior: str) -> None:
    fake_llm.set_behavior(behavior)
    shown: list[str] = []
    cfg = LLMConfig(base_url=fake_llm.base_url, timeout=5, thinking=True)
    caption = Captioner(cfg, "x").stream(KEYWORDS, shown.append)
    assert caption == "A photo showing red and circle."
    assert "".join(shown).strip() == caption


@pytest.mark.parametrize("behavior", ["normal", "think_tags", "reasoning_field"])
def test_stream_from_a_real_http_server(fake_llm, behavior: str) -> None:
    fake_llm.set_behavior(behavior)
    shown: list[str] = []
    captioner = Captioner(LLMConfig(base_url=fake_llm.base_url, timeout=5), "x")
    caption = captioner.stream(KEYWORDS, shown.append)
    assert caption == "A photo showing red and circle."
    assert "".join(shown).strip() == caption
    assert len(shown) > 3  # it really arrived in pieces
    assert fake_llm.requests[-1]["stream"] is True
    assert "think" not in "".join(shown).lower()


def test_stream_from_a_server_that_is_down(fake_llm) -> None:
    captioner = Captioner(LLMConfig(base_url=fake_llm.base_url, timeout=2), "x")
    with fake_llm.down(), pytest.raises(CaptionUnavailable, match="cannot reach"):
        captioner.stream(KEYWORDS, print)


@pytest.mark.parametrize("mode", ["hang_up", "stall"])
def test_a_stream_cut_off_before_its_end_is_no_caption(fake_llm, mode: str) -> None:
    """The server hangs up (or goes silent and then hangs up) before llm.timeout: the
    fragment it sent ("A ph") is no caption."""
    fake_llm.set_behavior(mode, delay=0.3)
    shown: list[str] = []
    captioner = Captioner(LLMConfig(base_url=fake_llm.base_url, timeout=5), "x")
    with pytest.raises(CaptionUnavailable, match="ended the answer before finishing it"):
        captioner.stream(KEYWORDS, shown.append)
    assert "".join(shown) == "A ph"


def test_a_stream_with_a_broken_event_is_a_caption_error(fake_llm) -> None:
    fake_llm.set_behavior("truncated")
    captioner = Captioner(LLMConfig(base_url=fake_llm.base_url, timeout=5), "x")
    with pytest.raises(CaptionUnavailable, match="cut off or not JSON"):
        captioner.stream(KEYWORDS, print)


def test_a_stream_cut_at_max_tokens_is_rejected(fake_llm) -> None:
    fake_llm.set_behavior("length", chars=12)
    captioner = Captioner(LLMConfig(base_url=fake_llm.base_url, max_tokens=9), "x")
    with pytest.raises(CaptionRejected, match=r"cut off at llm\.max_tokens \(9\)"):
        captioner.stream(KEYWORDS, print)


def test_describe_prints_caption_and_keywords_and_writes_nothing(
    tmp_path, fake_llm, capsys
) -> None:
    photo = tmp_path / "red.jpg"
    draw_shape("red", "circle", size=(320, 240), seed=4242).save(photo)
    before = photo.read_bytes()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, fake_llm.base_url)))
    assert main(["-c", str(config), "describe", str(photo)]) == 0
    out = capsys.readouterr().out
    first, second = out.splitlines()[:2]
    assert first.startswith("A photo showing") and "red" in first and "circle" in first
    assert second.startswith("keywords: ") and "red" in second and "circle" in second
    assert photo.read_bytes() == before
    assert not (tmp_path / "state").exists()  # no index was created either


def test_describe_a_missing_photo_is_a_clear_error(tmp_path, fake_llm, capsys) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, fake_llm.base_url)))
    assert main(["-c", str(config), "describe", str(tmp_path / "nope.jpg")]) == 2
    assert "cannot read" in capsys.readouterr().err
