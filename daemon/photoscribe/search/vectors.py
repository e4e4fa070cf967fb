"""Embeddings held for search: an exact in-memory matrix (small indexes, tests)."""

from __future__ import annotations

import numpy as np

from photoscribe.store import PhotoStore


class MatrixVectors:
    """Exact cosine ranking over an (n, d) float32 matrix of unit rows."""

    def __init__(self, ids: np.ndarray, matrix: np.ndarray) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.matrix = np.asarray(matrix, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def nearest(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        if not len(self.ids):
            return []
        sims = self.matrix @ np.asarray(query, dtype=np.float32)
        if allowed is not None:
            sims = np.where(np.isin(self.ids, allowed), sims, -np.inf)
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(int(self.ids[i]), float(sims[i])) for i in top if np.isfinite(sims[i])]


def from_store(store: PhotoStore, model_id: str) -> MatrixVectors:
    """Every stored embedding of ``model_id``, read from the index (one full read)."""
    ids, blob, count = store.embeddings(model_id)
    if not count:
        return MatrixVectors(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
    matrix = np.frombuffer(blob, dtype="<f2").reshape(count, -1).astype(np.float32)
    return MatrixVectors(np.array(ids, dtype=np.int64), matrix)
