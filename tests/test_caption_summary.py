"""What the scan summary and `photoscribe status` say about captions: the right thing for
an LLM that is off, down, or answering with replies that are all rejected."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml

from photoscribe.cli import main

from conftest import tiny_config_dict
from fixtures.synthetic import draw_shape

LLM_DOWN_LINE = "captions will be added by the next `photoscribe scan` once the LLM answers"


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    draw_shape("red", "circle", size=(320, 240), seed=1).save(folder / "red.jpg")
    draw_shape("blue", "square", size=(320, 240), seed=2).save(folder / "blue.jpg")
    return folder


@pytest.fixture
def cli(tmp_path: Path, capsys):
    def run(base_url: str, *args: str, **llm) -> tuple[int, str]:
        raw = tiny_config_dict(tmp_path, base_url)
        raw["llm"].update(llm)
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        capsys.readouterr()
        code = main(["-c", str(config), *args])
        return code, capsys.readouterr().out

    return run


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_llm_disabled_says_captions_are_off(cli, photos: Path, fake_llm) -> None:
    code, out = cli(fake_llm.base_url, "scan", str(photos), enabled=False)
    assert code == 0
    first = out.splitlines()[0]
    assert first == (
        "2 photos: 2 tagged, 0 skipped (already done), 0 failed; captions off (llm.enabled: false)"
    )
    assert "waiting for the LLM" not in out and "once the LLM answers" not in out
    assert fake_llm.requests == []


def test_no_caption_option_says_captions_are_off(cli, photos: Path, fake_llm) -> None:
    code, out = cli(fake_llm.base_url, "scan", str(photos), "--no-caption")
    assert code == 0
    assert out.splitlines()[0].endswith("; captions off (--no-caption)"), out
    assert "once the LLM answers" not in out


def test_llm_down_says_captions_come_once_it_answers(cli, photos: Path) -> None:
    code, out = cli(dead_url(), "scan", str(photos), timeout=1.0, retries=0)
    assert code == 0
    assert "0 captions written, 2 waiting for the LLM" in out
    assert out.splitlines()[-1] == f"  {LLM_DOWN_LINE}"
    assert "rejected" not in out


def test_rejected_replies_say_why_and_what_to_do(cli, photos: Path, fake_llm) -> None:
    fake_llm.set_behavior("wrong_language")
    code, out = cli(fake_llm.base_url, "scan", str(photos))
    assert code == 0
    assert "0 captions written, 2 waiting for the LLM" in out
    assert LLM_DOWN_LINE not in out
    assert (
        "  the LLM answered, but its captions for 2 photos were rejected: "
        "the caption is not in the configured language en" in out
    ), out
    assert "photoscribe doctor" in out and "photoscribe caption --retry-pending" in out

    code, out = cli(fake_llm.base_url, "status")
    assert code == 0
    assert "    2 rejected: the caption is not in the configured language en" in out.splitlines(), (
        out
    )
    code, out = cli(fake_llm.base_url, "status", "--json")
    assert json.loads(out)["caption_problems"] == [
        {
            "reason": "caption rejected: the caption is not in the configured language en",
            "photos": 2,
        }
    ]


def test_retry_pending_with_rejected_replies_says_so(cli, photos: Path, fake_llm) -> None:
    fake_llm.set_behavior("echo")
    cli(fake_llm.base_url, "scan", str(photos))
    code, out = cli(fake_llm.base_url, "caption", "--retry-pending")
    assert code == 0
    assert out.startswith("0 captions written, 0 failed, 2 still waiting for the LLM"), out
    assert "were rejected: the LLM echoed the prompt" in out


def test_retry_pending_with_the_llm_disabled_says_captions_are_off(
    cli, photos: Path, fake_llm
) -> None:
    cli(fake_llm.base_url, "scan", str(photos), "--no-caption")
    code, out = cli(fake_llm.base_url, "caption", "--retry-pending", enabled=False)
    assert code == 0
    assert out.splitlines()[0] == "0 captions written, 0 failed; captions off (llm.enabled: false)"
    assert fake_llm.requests == []
