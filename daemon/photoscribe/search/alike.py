"""Look-alikes of one photo (`photoscribe similar`) and groups of duplicates
(`photoscribe duplicates`): exact copies by content hash, near copies by embedding."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photoscribe.errors import ConfigError
from photoscribe.fsutil import display
from photoscribe.search.core import Hit, Vectors, _hits
from photoscribe.store import PhotoStore
from photoscribe.store.paths import from_db, to_db
from photoscribe.store.photos import SEARCHABLE

BLOCK = 2048  # rows compared at once when looking for near copies


def similar(store: PhotoStore, vectors: Vectors, path: Path, limit: int) -> list[Hit]:
    """Photos whose embedding is closest to that of the indexed photo at ``path``."""
    row = store.by_path(path)
    if row is None:
        raise ConfigError(
            f"{display(path)} is not in the index; run `photoscribe scan` on it first"
        )
    blob = store.embedding_of(row.id)
    if not blob:
        raise ConfigError(
            f"{display(path)} has no CLIP embedding in the index; "
            "`photoscribe index rebuild --embeddings` adds them"
        )
    query = np.frombuffer(blob, dtype="<f2").astype(np.float32)
    found = [h for h in vectors.nearest(query, limit + 1) if h[0] != row.id][:limit]
    return _hits(store, found, set(), dict(found))


@dataclass(frozen=True)
class Group:
    kind: str  # "exact": same content hash; "near": embeddings at least the threshold alike
    paths: tuple[Path, ...]
    similarity: float | None = None  # the lowest cosine inside a near group

    def as_json(self) -> dict:
        return {
            "kind": self.kind,
            "paths": [display(p) for p in self.paths],
            "similarity": None if self.similarity is None else round(self.similarity, 4),
        }


def _where(folder: Path | None) -> tuple[str, tuple]:
    if folder is None:
        return "1", ()
    prefix = to_db(folder).rstrip("/") + "/"
    return "substr(path, 1, ?) = ?", (len(prefix), prefix)


def exact_copies(store: PhotoStore, folder: Path | None = None) -> list[Group]:
    where, params = _where(folder)
    rows = store.query(
        f"SELECT content_hash, path FROM photos WHERE state IN ({SEARCHABLE}) AND ({where}) "
        "AND content_hash IN (SELECT content_hash FROM photos WHERE content_hash IS NOT NULL "
        f"AND state IN ({SEARCHABLE}) AND ({where}) GROUP BY content_hash HAVING count(*) > 1) "
        "ORDER BY content_hash, path",
        (*params, *params),
    )
    groups: dict[str, list[Path]] = {}
    for r in rows:
        groups.setdefault(r["content_hash"], []).append(from_db(r["path"]))
    return [Group("exact", tuple(paths)) for paths in groups.values()]


def near_copies(
    store: PhotoStore, model: str, threshold: float, folder: Path | None = None
) -> list[Group]:
    """Groups of photos linked by cosine ≥ ``threshold`` (an exact all-pairs comparison in
    blocks: seconds for 20,000 photos; use --folder on very large libraries). Photos with
    the same content hash are left to exact_copies."""
    where, params = _where(folder)
    rows = store.query(
        f"SELECT id, path, content_hash, embedding FROM photos WHERE model = ? "
        f"AND embedding IS NOT NULL AND state IN ({SEARCHABLE}) AND ({where}) ORDER BY id",
        (model, *params),
    )
    if len(rows) < 2:
        return []
    matrix = np.frombuffer(b"".join(r["embedding"] for r in rows), dtype="<f2")
    matrix = matrix.astype(np.float32).reshape(len(rows), -1)
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    lowest: dict[int, float] = {}
    pairs = []
    for start in range(0, len(rows), BLOCK):
        sims = matrix[start : start + BLOCK] @ matrix.T
        for a, b in zip(*np.nonzero(sims >= threshold), strict=True):
            i = start + int(a)
            if int(b) > i and rows[i]["content_hash"] != rows[int(b)]["content_hash"]:
                pairs.append((i, int(b), float(sims[a, b])))
    for i, j, _ in pairs:
        parent[root(i)] = root(j)
    for i, _, sim in pairs:
        r = root(i)
        lowest[r] = min(lowest.get(r, 1.0), sim)
    members: dict[int, list[int]] = {}
    for i in range(len(rows)):
        if root(i) in lowest:
            members.setdefault(root(i), []).append(i)
    return [
        Group("near", tuple(from_db(rows[i]["path"]) for i in idx), lowest[r])
        for r, idx in members.items()
    ]
