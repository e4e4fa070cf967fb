"""A real llama.cpp OpenAI-compatible server (llama-cpp-python) on 127.0.0.1.

The model is gemma-3-270m (a *base* model, from PyPI): it proves the protocol —
models list, chat completion, streaming, Qwen3's chat_template_kwargs accepted —
not caption quality. Its replies mostly echo the prompt, which photoscribe must
reject rather than write into a photo.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import yaml

from photoscribe.caption import Captioner
from photoscribe.cli import main
from photoscribe.config import LLMConfig
from photoscribe.errors import CaptionRejected
from photoscribe.records import Keyword

from conftest import tiny_config_dict
from fixtures.exiftool import read_tags
from fixtures.llama import MODEL_ALIAS, gguf_path, serve_llama
from fixtures.synthetic import draw_shape

KEYWORDS = (Keyword("red", 0.6), Keyword("circle", 0.4))


@pytest.fixture(scope="module")
def llama_server(request: pytest.FixtureRequest):
    model = gguf_path(request.config.cache.mkdir("gemma-gguf"))
    with serve_llama(model, log_path=Path(f"{model}.{os.getpid()}.log")) as url:
        yield url


def captioner(url: str) -> Captioner:
    cfg = LLMConfig(base_url=url, temperature=0.0, max_tokens=48, timeout=120, retries=0)
    return Captioner(cfg, "not-needed")


def test_models_are_listed(llama_server: str) -> None:
    assert captioner(llama_server).list_models() == [MODEL_ALIAS]


def test_chat_completion_round_trip(llama_server: str) -> None:
    """The request (with chat_template_kwargs) is accepted; the reply is judged, not trusted."""
    try:
        caption = captioner(llama_server).caption(KEYWORDS)
    except CaptionRejected as exc:  # the base model echoes the prompt: rejected, not written
        assert "echoed the prompt" in str(exc) or "empty" in str(exc) or "language" in str(exc)
    else:
        assert caption and "<think>" not in caption and "Keywords" not in caption


def test_streaming_arrives_in_pieces(llama_server: str) -> None:
    pieces: list[str] = []
    with contextlib.suppress(CaptionRejected):
        captioner(llama_server).stream(KEYWORDS, pieces.append)
    assert len(pieces) > 3, pieces
    assert "".join(pieces).strip()


def test_scan_with_captions_from_llama_cpp(llama_server: str, tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    draw_shape("red", "circle", size=(320, 240), seed=31).save(photos / "a.jpg")
    draw_shape("blue", "square", size=(320, 240), seed=32).save(photos / "b.png")
    raw = tiny_config_dict(tmp_path, llama_server)
    raw["llm"].update({"temperature": 0.0, "max_tokens": 48, "timeout": 120, "retries": 0})
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["-c", str(config), "scan", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "2 photos: 2 tagged" in out
    for photo in photos.iterdir():
        tags = read_tags(photo)
        assert tags.get("XMP-dc:Subject"), photo  # keywords always written
        description = tags.get("XMP-dc:Description")
        if description is not None:  # only a caption that passed validation is written
            assert "Keywords" not in description and "<think>" not in description
