"""A real llama.cpp OpenAI-compatible server (llama-cpp-python) on 127.0.0.1.

The model is gemma-3-270m (a *base* model, from PyPI): it proves the protocol —
models list, chat completion, streaming, Qwen3's chat_template_kwargs accepted —
not caption quality. Its replies mostly echo the prompt, which photoscribe must
reject rather than write into a photo. Every test here proves that the server really
answered (HTTP 200 with content, in its own access log), so a dead server fails them.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from photoscribe.caption import Captioner
from photoscribe.cli import main
from photoscribe.config import LLMConfig
from photoscribe.errors import CaptionRejected
from photoscribe.records import Keyword, State
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures.exiftool import read_tags
from fixtures.llama import MODEL_ALIAS, LlamaServer, ServerDied, gguf_path, serve_llama
from fixtures.synthetic import draw_shape

KEYWORDS = (Keyword("red", 0.6), Keyword("circle", 0.4))
# What photoscribe may say of a base model's reply: about its *content*, never "empty"
CONTENT_REASONS = (
    "echoed the prompt",
    "language",
    "too long",
    "too short",
    "keywords",
    "cut off at llm.max_tokens",  # the base model rambles on: a whole reply, judged too long
)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return gguf_path(tmp_path_factory.mktemp("llama"))  # out of the checkout


@pytest.fixture(scope="module")
def llama(gguf: Path) -> Iterator[LlamaServer]:
    with serve_llama(gguf, log_path=gguf.with_name("server.log")) as server:
        yield server


@pytest.fixture
def server(llama: LlamaServer) -> Iterator[LlamaServer]:
    """The module's server, checked after each test: a crash is reported with its signal."""
    llama.check_alive()
    yield llama
    llama.check_alive()


def captioner(url: str) -> Captioner:
    cfg = LLMConfig(base_url=url, temperature=0.0, max_tokens=48, timeout=120, retries=0)
    return Captioner(cfg, "not-needed")


def post_chat(url: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, response.read()


def test_models_are_listed(server: LlamaServer) -> None:
    assert captioner(server.url).list_models() == [MODEL_ALIAS]


def test_raw_chat_completion_has_content(server: LlamaServer) -> None:
    """Below photoscribe: the server answers a chat completion with 200 and real text."""
    body = {
        "model": MODEL_ALIAS,
        "messages": [{"role": "user", "content": "Describe a photo of a red circle."}],
        "max_tokens": 16,
        "temperature": 0.0,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    status, raw = post_chat(server.url, body)
    reply = json.loads(raw)
    assert status == 200
    assert reply["choices"][0]["message"]["content"].strip(), reply
    assert reply["choices"][0]["finish_reason"] in ("stop", "length")
    assert reply["usage"]["completion_tokens"] > 0


def test_chat_completion_round_trip(server: LlamaServer) -> None:
    """photoscribe's request (with chat_template_kwargs) is answered with 200; the reply is
    judged on its content: written when valid, rejected for what it says otherwise."""
    answered = server.answered_chats()
    try:
        caption = captioner(server.url).caption(KEYWORDS)
    except CaptionRejected as exc:  # the base model echoes the prompt: rejected, not written
        assert any(reason in str(exc) for reason in CONTENT_REASONS), str(exc)
    else:
        assert caption.strip() and "<think>" not in caption and "Keywords" not in caption
    assert server.answered_chats() > answered


def test_streaming_arrives_in_pieces(server: LlamaServer) -> None:
    pieces: list[str] = []
    answered = server.answered_chats()
    try:
        captioner(server.url).stream(KEYWORDS, pieces.append)
    except CaptionRejected as exc:  # judged after the whole stream arrived
        assert any(reason in str(exc) for reason in CONTENT_REASONS), str(exc)
    assert len(pieces) > 3, pieces
    assert "".join(pieces).strip()
    assert server.answered_chats() == answered + 1


def test_scan_with_captions_from_llama_cpp(server: LlamaServer, tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    draw_shape("red", "circle", size=(320, 240), seed=31).save(photos / "a.jpg")
    draw_shape("blue", "square", size=(320, 240), seed=32).save(photos / "b.png")
    raw = tiny_config_dict(tmp_path, server.url)
    raw["llm"].update({"temperature": 0.0, "max_tokens": 48, "timeout": 120, "retries": 0})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    answered = server.answered_chats()
    assert main(["-c", str(config), "scan", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "2 photos: 2 tagged" in out
    assert server.answered_chats() >= answered + 2  # one answered request per photo at least
    store = open_store(Path(raw["index_path"]), readonly=True)
    try:
        rows = {r.path.name: r for r in store.rows_under(photos)}
    finally:
        store.close()
    assert sorted(rows) == ["a.jpg", "b.png"]
    for photo in photos.iterdir():
        tags = read_tags(photo)
        assert tags.get("XMP-dc:Subject"), photo  # keywords always written
        row = rows[photo.name]
        description = tags.get("XMP-dc:Description")
        if row.caption:  # a caption that passed validation is in the photo and the index
            assert description == row.caption
            assert "Keywords" not in description and "<think>" not in description
        else:  # a rejected reply: nothing written, the caption waits for a later run
            assert description is None
            assert row.state is State.NEEDS_CAPTION


def test_a_crashed_server_is_reported_with_its_signal(gguf: Path, tmp_path: Path) -> None:
    """A server that dies (as a build for another CPU does) is named with its signal and
    log, not left for the next request to fail with "connection refused"."""
    with serve_llama(gguf, log_path=tmp_path / "crash.log") as crashing:
        os.kill(crashing.proc.pid, signal.SIGSEGV)
        crashing.proc.wait(timeout=30)
        with pytest.raises(ServerDied, match=r"killed by SIGSEGV \(signal 11\)") as died:
            crashing.check_alive()
    assert "crash.log" in str(died.value)
    assert "llama" in str(died.value).split("crash.log:", 1)[1]  # the log's last lines


def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    with (
        pytest.raises(ServerDied, match=r"exited with status [1-9]") as died,
        serve_llama(broken, log_path=tmp_path / "broken.log"),
    ):
        pass
    tail = str(died.value).split("broken.log:", 1)[1]
    assert "broken.gguf" in tail or "model" in tail.lower(), tail
