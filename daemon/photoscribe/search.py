"""Search: full-text over captions + keywords and CLIP text→image similarity, fused."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from photoscribe.fsutil import display
from photoscribe.store import PhotoStore

RRF_K = 60  # reciprocal-rank-fusion constant (the usual choice)
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
TOKEN = re.compile(r"\w+", re.UNICODE)

EncodeText = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Hit:
    path: Path
    score: float
    caption: str | None
    keywords: tuple[str, ...]
    matched_by: tuple[str, ...] = field(default=())  # "text", "clip"
    similarity: float | None = None

    def as_json(self) -> dict:
        return {
            "path": display(self.path),  # printable even when not UTF-8
            "score": round(self.score, 6),
            "caption": self.caption,
            "keywords": list(self.keywords),
            "matched_by": list(self.matched_by),
            "similarity": None if self.similarity is None else round(self.similarity, 4),
        }


def fts_expression(text: str, *, any_term: bool = False) -> str | None:
    """User text → a safe FTS5 expression: every word quoted, AND (or OR) between them."""
    words = TOKEN.findall(text)
    if not words:
        return None
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    return (" OR " if any_term else " ").join(quoted)


def text_ranking(store: PhotoStore, text: str, limit: int) -> list[int]:
    if CJK.search(text):  # unicode61 does not split CJK into words: match substrings
        return store.substring(text.strip(), limit)
    for any_term in (False, True):
        expr = fts_expression(text, any_term=any_term)
        if expr is None:
            return []
        ids = store.full_text(expr, limit)
        if ids:
            return ids
    return []


def clip_ranking(
    store: PhotoStore,
    model_id: str,
    encode_text: EncodeText,
    text: str,
    limit: int,
    min_similarity: float,
) -> list[tuple[int, float]]:
    ids, blob, count = store.embeddings(model_id)
    if not count:
        return []
    matrix = np.frombuffer(blob, dtype="<f2").reshape(count, -1).astype(np.float32)
    query = encode_text([text])[0]
    sims = matrix @ query
    order = np.argsort(-sims)[:limit]
    return [(ids[i], float(sims[i])) for i in order if sims[i] >= min_similarity]


def fuse(text_ids: list[int], clip_hits: list[tuple[int, float]]) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for rank, row_id in enumerate(text_ids):
        scores[row_id] = scores.get(row_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    for rank, (row_id, _) in enumerate(clip_hits):
        scores[row_id] = scores.get(row_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def search(
    store: PhotoStore,
    text: str,
    *,
    limit: int,
    model_id: str | None = None,
    encode_text: EncodeText | None = None,
    min_similarity: float = 0.2,
) -> list[Hit]:
    """Best matches first. CLIP ranking runs only when an encoder is given."""
    text_ids = text_ranking(store, text, limit)
    clip_hits: list[tuple[int, float]] = []
    if encode_text is not None and model_id:
        clip_hits = clip_ranking(store, model_id, encode_text, text, limit, min_similarity)
    fused = fuse(text_ids, clip_hits)[:limit]
    rows = store.by_ids(row_id for row_id, _ in fused)
    sims = dict(clip_hits)
    text_set = set(text_ids)
    hits = []
    for row_id, score in fused:
        row = rows.get(row_id)
        if row is None:
            continue
        by = tuple(n for n, ok in (("text", row_id in text_set), ("clip", row_id in sims)) if ok)
        hits.append(
            Hit(
                row.path,
                score,
                row.caption,
                tuple(k.label for k in row.keywords),
                by,
                sims.get(row_id),
            )
        )
    return hits
