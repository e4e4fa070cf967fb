"""Query embeddings kept on disk (cache_dir/search/queries), keyed by model and text, so a
repeated `photoscribe search` needs no CLIP text tower (no torch start-up)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from photoscribe.cachefile import save_array

log = logging.getLogger(__name__)
MAX_ENTRIES = 5000  # past this, the oldest half goes


class CachedEncoder:
    """An ``EncodeText`` that asks ``make_encoder()`` (loaded only on a miss) for texts
    it has not seen with this model."""

    def __init__(
        self,
        folder: Path,
        model_id: str,
        make_encoder: Callable[[], Callable[[Sequence[str]], np.ndarray]],
    ) -> None:
        self.folder = folder / "search" / "queries"
        self.model_id = model_id
        self.make_encoder = make_encoder
        self._encoder: Callable[[Sequence[str]], np.ndarray] | None = None
        self.misses = 0

    def _file(self, text: str) -> Path:
        key = hashlib.sha256(f"{self.model_id}\0{text}".encode()).hexdigest()[:32]
        return self.folder / f"{key}.npy"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._one(text) for text in texts])

    def _one(self, text: str) -> np.ndarray:
        path = self._file(text)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            pass
        self.misses += 1
        if self._encoder is None:
            self._encoder = self.make_encoder()
        vector = np.asarray(self._encoder([text])[0], dtype=np.float32)
        self._store(path, vector)
        return vector

    def _store(self, path: Path, vector: np.ndarray) -> None:
        try:
            save_array(path, vector)
            self._prune()
        except OSError as exc:  # a read-only cache_dir: only the speed-up is lost
            log.debug("query embedding not cached: %s", exc)

    def _prune(self) -> None:
        entries = list(self.folder.glob("*.npy"))
        if len(entries) <= MAX_ENTRIES:
            return
        entries.sort(key=lambda p: p.stat().st_mtime)
        for old in entries[: len(entries) // 2]:
            old.unlink(missing_ok=True)
