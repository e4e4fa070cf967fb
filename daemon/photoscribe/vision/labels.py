"""Text embeddings of the vocabulary's prompts, cached on disk per model + labels.

(The vocabulary itself is loaded by photoscribe.vision.vocabulary.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
TEXT_BATCH = 256


def cache_key(model_id: str, labels: Sequence[str], templates: Sequence[str]) -> str:
    blob = json.dumps([model_id, list(templates), list(labels)], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def label_embeddings(
    encode_texts, model_id: str, labels: Sequence[str], templates: Sequence[str], cache_dir: Path
) -> np.ndarray:
    """(labels × dim) float32, L2-normalised; the mean over the prompt templates.

    ``encode_texts(list[str]) -> np.ndarray`` returns normalised text embeddings.
    """
    path = cache_dir / "labels" / f"{cache_key(model_id, labels, templates)}.npy"
    cached = _read_cache(path, len(labels))
    if cached is not None:
        return cached
    log.info("embedding %d labels × %d templates (cached afterwards)", len(labels), len(templates))
    prompts = [t.format(label) for label in labels for t in templates]
    parts = [encode_texts(prompts[i : i + TEXT_BATCH]) for i in range(0, len(prompts), TEXT_BATCH)]
    per_prompt = np.concatenate(parts).reshape(len(labels), len(templates), -1)
    mean = per_prompt.mean(axis=1)
    result = (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)
    _write_cache(path, result)
    return result


def _read_cache(path: Path, rows: int) -> np.ndarray | None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr if arr.ndim == 2 and arr.shape[0] == rows else None


def _write_cache(path: Path, arr: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache only costs time
        log.warning("cannot cache label embeddings in %s: %s", path.parent, exc)
