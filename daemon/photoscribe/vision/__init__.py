"""The CLIP side: model lifecycle, decoding, label vocabulary and zero-shot tagging.

Importing this package is cheap: its names load on first use (so the vocabulary module
imports without numpy or PIL), and torch loads on first use of a model.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "decode": "loader",
    "prepare": "loader",
    "ClipModel": "model",
    "Encoder": "tagger",
    "Tagger": "tagger",
}
__all__ = ["ClipModel", "Encoder", "Tagger", "decode", "prepare"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
