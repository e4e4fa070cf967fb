"""Shared fixtures: offline model hub, the tiny trained CLIP, a fake LLM server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # no test may download anything
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

import pytest  # noqa: E402

from photoscribe.config import Config, config_from_dict  # noqa: E402

TINY_CLIP = TESTS / "fixtures" / "tiny_clip"


def tiny_config_dict(tmp: Path, base_url: str = "http://127.0.0.1:9/v1") -> dict:
    """A complete config using the committed tiny CLIP and a local LLM URL."""
    return {
        "index_path": str(tmp / "state" / "index.sqlite3"),
        "cache_dir": str(tmp / "cache"),
        "model": {
            "arch": "tiny-clip",
            "pretrained": str(TINY_CLIP / "tiny-clip.safetensors"),
            "config_dir": str(TINY_CLIP),
            "batch_size": 8,
            "threads": 2,
            # fixed, so no test depends on which precision this host measures faster
            # (test_precision.py tests "auto")
            "precision": "fp32",
        },
        "tagging": {"labels_file": str(TINY_CLIP / "labels.txt"), "top_k": 3, "min_score": 0.1},
        "llm": {"base_url": base_url, "timeout": 5.0, "retries": 1},
        "search": {"min_similarity": 0.0},
    }


@pytest.fixture
def make_config(tmp_path: Path):
    """make_config(base_url=..., **section overrides) -> Config."""

    def make(base_url: str = "http://127.0.0.1:9/v1", **sections: dict) -> Config:
        raw = tiny_config_dict(tmp_path, base_url)
        for name, values in sections.items():
            if isinstance(values, dict):
                raw.setdefault(name, {}).update(values)
            else:
                raw[name] = values
        return config_from_dict(raw)

    return make


@pytest.fixture
def fake_llm():
    from fakes.openai_server import FakeOpenAI

    with FakeOpenAI() as server:
        yield server
