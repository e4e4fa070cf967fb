"""Search: full-text (captions, keywords, names, camera, place) and CLIP text→image
similarity, fused by reciprocal rank, within filters. Shared by the CLI and the web page."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol

import numpy as np

from photoscribe.errors import ConfigError
from photoscribe.fsutil import display
from photoscribe.search.query import (
    Term,
    clip_text,
    exclusion_expression,
    has_long_run,
    match_expression,
    parse_terms,
    term_expression,
)
from photoscribe.segment import query_pieces
from photoscribe.store import PhotoStore
from photoscribe.store.paths import to_db

RRF_K = 60  # reciprocal-rank-fusion constant (the usual choice)
CLIP_POOL = 100  # at least this many CLIP candidates fused (and checked for exclusions)

EncodeText = Callable[[Sequence[str]], np.ndarray]
ClipPrompt = Callable[[str], str | None]  # search words → CLIP text (None: no CLIP ranking)


class Vectors(Protocol):
    """Nearest embeddings to a query vector: [(photo id, cosine)], best first."""

    def nearest(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]: ...


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    limit: int = 20
    folder: Path | None = None  # only photos below this folder
    after: date | None = None  # taken on or after this day
    before: date | None = None  # taken before this day
    keywords: tuple[str, ...] = ()  # every one of these keywords (any language)
    camera: str | None = None  # camera make/model contains this (case-insensitive)
    use_clip: bool = True

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ConfigError(f"the number of results must be at least 1 (got {self.limit})")
        if self.after and self.before and self.after >= self.before:
            raise ConfigError(
                f"--after {self.after} is not before --before {self.before}: no photo could match"
            )

    def filtered(self) -> bool:
        return bool(self.folder or self.after or self.before or self.keywords or self.camera)


@dataclass(frozen=True)
class Hit:
    path: Path
    score: float
    caption: str | None
    keywords: tuple[str, ...]
    matched_by: tuple[str, ...] = field(default=())  # "text", "clip", "filter"
    similarity: float | None = None
    id: int | None = None
    date_taken: str | None = None
    camera: str | None = None

    def as_json(self) -> dict:
        return {
            "id": self.id,
            "path": display(self.path),  # printable even when not UTF-8
            "score": round(self.score, 6),
            "caption": self.caption,
            "keywords": list(self.keywords),
            "matched_by": list(self.matched_by),
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "date_taken": self.date_taken,
            "camera": self.camera,
        }


def filter_sql(query: SearchQuery) -> tuple[str, tuple]:
    """The filters as a condition on the photos table (and its parameters)."""
    parts: list[str] = []
    params: list = []
    if query.folder is not None:
        prefix = to_db(query.folder).rstrip("/") + "/"
        parts.append("substr(photos.path, 1, ?) = ?")
        params += [len(prefix), prefix]
    if query.after is not None:
        parts.append("photos.date_taken >= ?")
        params.append(query.after.isoformat())
    if query.before is not None:
        parts.append("photos.date_taken < ?")
        params.append(query.before.isoformat())
    if query.camera:
        parts.append("photos.camera LIKE ? ESCAPE '\\'")
        params.append("%" + _like_escape(query.camera.strip()) + "%")
    for keyword in query.keywords:
        expr = term_expression(Term(keyword))
        if expr is None:
            raise ConfigError(f"--keyword {keyword!r} has no letters or digits to look for")
        parts.append("photos.id IN (SELECT rowid FROM photos_fts WHERE photos_fts MATCH ?)")
        params.append("keywords : (" + expr + ")")
    return (" AND ".join(parts) or "1"), tuple(params)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def text_ranking(
    store: PhotoStore, terms: list[Term], limit: int, where: str = "1", params: tuple = ()
) -> list[int]:
    """Every wanted term as typed; then, for Chinese written without spaces (猫沙发), each
    run split into the words the index knows; then any term or word (bm25 order)."""
    exclude = exclusion_expression(terms)
    splitter = IndexSplitter(store)
    attempts: list[dict] = [{}]
    if has_long_run(terms):
        attempts.append({"split": splitter})
    attempts.append({"any_term": True, "split": splitter if has_long_run(terms) else None})
    for options in attempts:
        expr = match_expression(terms, **options)
        if expr is None:
            return []
        ids = store.full_text(expr, limit, exclude=exclude, where=where, params=params)
        if ids:
            return ids
    return []


class IndexSplitter:
    """Split a CJK run into as few pieces as possible that each occur in the index
    (猫沙发 → 猫 | 沙发): a segmenter whose dictionary is the library's own text."""

    MAX_RUN = 12  # longer runs: its characters' two-character pieces, unsplit

    def __init__(self, store: PhotoStore) -> None:
        self.store = store
        self.known: dict[str, bool] = {}

    def occurs(self, piece: str) -> bool:
        if piece not in self.known:
            expr = '"' + query_pieces(piece) + '"'
            self.known[piece] = self.store.text_exists(expr)
        return self.known[piece]

    def __call__(self, run: str) -> list[str]:
        if len(run) > self.MAX_RUN:
            return [run]
        n = len(run)
        best: list[list[str] | None] = [[]] + [None] * n  # best[i]: split of run[:i]
        for end in range(1, n + 1):
            for start in range(end):
                before = best[start]
                piece = run[start:end]
                if before is None or not self.occurs(piece):
                    continue
                if best[end] is None or len(before) + 1 < len(best[end]):
                    best[end] = [*before, piece]
        return best[n] or list(run)


def clip_ranking(
    store: PhotoStore,
    vectors: Vectors,
    query_vector: np.ndarray,
    terms: list[Term],
    limit: int,
    min_similarity: float,
    allowed: np.ndarray | None,
) -> list[tuple[int, float]]:
    found = [h for h in vectors.nearest(query_vector, limit, allowed) if h[1] >= min_similarity]
    exclude = exclusion_expression(terms)
    if exclude and found:
        unwanted = store.matching(exclude, (row_id for row_id, _ in found))
        found = [h for h in found if h[0] not in unwanted]
    return found


def fuse(text_ids: list[int], clip_hits: list[tuple[int, float]]) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for rank, row_id in enumerate(text_ids):
        scores[row_id] = scores.get(row_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    for rank, (row_id, _) in enumerate(clip_hits):
        scores[row_id] = scores.get(row_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def search(
    store: PhotoStore,
    query: SearchQuery,
    *,
    vectors: Vectors | None = None,
    encode_text: EncodeText | None = None,
    min_similarity: float = 0.2,
    clip_prompt: ClipPrompt | None = None,
) -> list[Hit]:
    """Best matches first. CLIP ranking runs only when vectors and an encoder are given
    (and ``clip_prompt``, e.g. search.prompt.ClipPrompt, finds words CLIP can read)."""
    terms = parse_terms(query.text)
    wanted = [t for t in terms if not t.exclude]
    where, params = filter_sql(query)
    if not wanted:
        if not query.filtered() and not terms:
            raise ConfigError("give words to search for, or a filter (--folder, --after, ...)")
        ids = store.newest(
            query.limit, exclude=exclusion_expression(terms), where=where, params=params
        )
        return _hits(store, [(i, 0.0) for i in ids], set(), {}, by_filter=True)
    pool = max(query.limit, CLIP_POOL)
    if query.use_clip and vectors is not None and encode_text is not None:

        def by_clip() -> list[tuple[int, float]]:
            text = clip_text(terms)
            text = clip_prompt(text) if clip_prompt is not None else text
            if not text:
                return []
            allowed = None
            if query.filtered():
                allowed = np.array(store.filtered_ids(where, params), dtype=np.int64)
            vector = np.asarray(encode_text([text])[0], dtype=np.float32)
            return clip_ranking(store, vectors, vector, terms, pool, min_similarity, allowed)

        # the embedding scan (faiss) and the full-text query (SQLite) both release the
        # GIL: run side by side, a fused search takes about as long as the slower one
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="search-clip") as pool_:
            clip_future = pool_.submit(by_clip)
            text_ids = text_ranking(store, terms, query.limit * 2, where, params)
            clip_hits = clip_future.result()
    else:
        text_ids = text_ranking(store, terms, query.limit * 2, where, params)
        clip_hits = []
    fused = fuse(text_ids, clip_hits)[: query.limit]
    return _hits(store, fused, set(text_ids), dict(clip_hits))


def _hits(
    store: PhotoStore,
    ranked: list[tuple[int, float]],
    text_set: set[int],
    sims: dict[int, float],
    *,
    by_filter: bool = False,
) -> list[Hit]:
    rows = store.by_ids(row_id for row_id, _ in ranked)
    hits = []
    for row_id, score in ranked:
        row = rows.get(row_id)
        if row is None:
            continue
        by = ("filter",) if by_filter else ()
        by += tuple(n for n, ok in (("text", row_id in text_set), ("clip", row_id in sims)) if ok)
        hits.append(
            Hit(
                row.path,
                score,
                row.caption,
                tuple(k.label for k in row.keywords),
                by,
                sims.get(row_id),
                row.id,
                row.date_taken,
                row.camera,
            )
        )
    return hits
