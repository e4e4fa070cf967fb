"""The embeddings search ranks, kept out of SQLite: faiss scalar-quantised codes of every
searchable embedding of one model, saved in cache_dir and kept in step with the index.

Per query the codes are scanned exactly (no approximate graph: nothing to tune, nothing
that depends on how the embeddings cluster), the best ``RERANK_FACTOR`` × k candidates
are re-scored with their float16 embeddings read from SQLite by id, so the order is exact.
Codes are 8-bit while they fit in ``CODE_BUDGET`` bytes, 4-bit beyond (1,000,000 photos
× 512 dimensions: 256 MB).

From ``COARSE_FROM`` photos on, a scan of every scalar code costs more than the query may
take (1M × 4-bit: ~0.5 s on one core), so a second, coarser copy goes first: product-
quantised 4-bit "fast scan" codes (two dimensions per sub-quantiser, 128 bytes per photo
at 512 dimensions), which faiss scans with SIMD lookups ~20× faster. Its best
``COARSE_SHARE`` of the library (at least ``COARSE_MIN``) are scored with the scalar codes,
and the best of those exactly, as above. Measured on random unit vectors (the hardest case:
no clusters), the exact top 50 at 1,000,000 photos was found whole with 4,000 candidates.

In step: the index bumps ``search_generation`` on every change that can move an
embedding and logs deleted ids; when the generation differs, rows changed after the
newest ``updated_at`` seen are applied (new photos appended, changed ones retired and
appended again, deleted ones retired) and the searchable count is checked; a mismatch, or
a quarter of the codes retired, rebuilds from scratch.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photoscribe.store import PhotoStore
from photoscribe.store.photos import SEARCHABLE

log = logging.getLogger(__name__)

CODE_BUDGET = 256 * 2**20  # bytes of codes before 8-bit codes give way to 4-bit ones
RERANK_FACTOR = 2  # candidates re-scored exactly per result wanted
BUILD_BATCH = 10_000  # rows read and encoded at a time when building
MIN_POOL = 200  # candidates re-scored exactly at least (400 with 4-bit codes)
SAME = 0.06  # a code this close (max abs) to the stored embedding: the embedding is unchanged
STATES = {s.strip(" '") for s in SEARCHABLE.split(",")}
COARSE_FROM = 50_000  # photos from which the fast-scan codes pick the candidates
COARSE_SHARE = 250  # 1 in this many photos is a candidate for the scalar codes
COARSE_MIN = 1_000  # candidates at least


def _faiss():
    import faiss  # lazy: only CLIP search needs it

    faiss.omp_set_num_threads(1)  # a single query: threads cost more than they give
    return faiss


@dataclass
class _State:
    index: object  # faiss.IndexScalarQuantizer
    ids: np.ndarray  # int64, photo id of each code
    alive: np.ndarray  # bool, False: retired (deleted or changed since)
    generation: int = -1
    updated_at: float = 0.0  # newest updated_at applied
    removed_seq: int = 0  # last search_removed seq applied
    coarse: object | None = None  # faiss.IndexPQFastScan over the same positions, or None
    _positions: dict[int, int] | None = None

    @property
    def positions(self) -> dict[int, int]:
        """Photo id → live position; built when first needed (a filter or a change), as
        a dict of a million entries costs ~100 MB that a plain query never needs."""
        if self._positions is None:
            live = np.flatnonzero(self.alive)
            self._positions = dict(zip(self.ids[live].tolist(), live.tolist(), strict=True))
        return self._positions

    @property
    def live(self) -> int:
        if self._positions is not None:
            return len(self._positions)
        return int(np.count_nonzero(self.alive))


def _unit(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2").astype(np.float32)


class VectorCache:
    """``Vectors`` for search, backed by faiss codes on disk (``folder``) or in memory."""

    def __init__(self, store: PhotoStore, model_id: str, folder: Path | None) -> None:
        self.store = store
        self.model_id = model_id
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id)[:80]
        self.folder = folder / "search" / slug if folder else None
        self.state: _State | None = None
        self.rebuilt = self.applied = 0  # what the last refresh did (for tests and logs)
        self._reads: PhotoStore | None = None  # re-ranking reads beside a text query

    def _reader(self) -> PhotoStore:
        if self._reads is None:
            self._reads = self.store.reader()
        return self._reads

    # -- query ---------------------------------------------------------------
    def __len__(self) -> int:
        self.refresh()
        return self.state.live if self.state else 0

    def nearest(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        self.refresh()
        state = self.state
        if state is None or not state.live:
            return []
        faiss = _faiss()
        if allowed is not None:
            positions = [state.positions[i] for i in allowed.tolist() if i in state.positions]
        else:
            positions = None
        selector = None
        if positions is not None:
            if not positions:
                return []
            selector = faiss.IDSelectorBatch(np.array(positions, dtype=np.int64))
        elif state.coarse is None and state.live < len(state.ids):  # some retired
            selector = faiss.IDSelectorBatch(np.flatnonzero(state.alive).astype(np.int64))
        four_bit = state.index.code_size < state.index.d  # a wider net
        least = MIN_POOL * (2 if four_bit else 1)
        pool = min(max(k * RERANK_FACTOR, least), state.live)
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if state.coarse is not None and positions is None:
            found = self._coarse_then_codes(q, pool)
        else:
            params = faiss.SearchParameters(sel=selector) if selector is not None else None
            found = state.index.search(q, pool, params=params)[1][0]
        candidates = [int(state.ids[p]) for p in found if p >= 0]
        blobs = self._reader().embeddings_by_id(candidates)
        ids = [i for i in candidates if i in blobs]
        if not ids:
            return []
        joined = np.frombuffer(b"".join(blobs[i] for i in ids), dtype="<f2")
        exact = joined.reshape(len(ids), -1).astype(np.float32) @ q[0]
        order = np.argsort(-exact, kind="stable")[:k]
        return [(ids[j], float(exact[j])) for j in order]

    def _coarse_then_codes(self, q: np.ndarray, pool: int) -> np.ndarray:
        """The ``pool`` best live positions by scalar codes among the fast-scan codes' best
        (faiss scores those candidates on the codes themselves, nothing is decoded)."""
        state = self.state
        share = len(state.ids) / max(1, state.live)  # retired codes stay in place
        asked = min(len(state.ids), int(pool * share) + 1)
        candidates = max(COARSE_MIN, len(state.ids) // COARSE_SHARE, asked)
        refine = _faiss().IndexRefine(state.coarse, state.index)
        refine.k_factor = candidates / asked
        found = refine.search(q, asked)[1][0]
        found = found[found >= 0]
        return found[state.alive[found]][:pool]

    # -- keeping in step -----------------------------------------------------
    def refresh(self) -> None:
        self.rebuilt = self.applied = 0
        generation = self.store.search_generation()
        if self.state is not None and self.state.generation == generation:
            return
        if self.state is None:
            self.state = self._load()
        stale = self.state is not None and self.state.generation != generation
        if stale and not self._apply_changes(generation):
            self.state = None
        if self.state is None:
            self.state = self._build(generation)
            self.rebuilt = 1
        self._save()

    def _apply_changes(self, generation: int) -> bool:
        state = self.state
        removed, state.removed_seq = self.store.removed_since(state.removed_seq)
        for row_id in removed:
            self._retire(row_id)
        changed = self.store.changed_since(state.updated_at)
        fresh: list[tuple[int, np.ndarray]] = []
        for row in changed:
            state.updated_at = max(state.updated_at, row["updated_at"])
            wanted = (
                row["model"] == self.model_id
                and row["embedding"] is not None
                and row["state"] in STATES
            )
            pos = state.positions.get(row["id"])
            if pos is not None and wanted and self._same(pos, row["embedding"]):
                continue
            if pos is not None:
                self._retire(row["id"])
            if wanted:
                fresh.append((row["id"], _unit(row["embedding"])))
        if fresh:
            self._append(fresh)
        self.applied = len(removed) + len(fresh)
        state.generation = generation
        retired = len(state.ids) - state.live
        if retired > len(state.ids) // 4:
            return False
        return state.live == self.store.searchable_embeddings(self.model_id)

    def _same(self, pos: int, blob: bytes) -> bool:
        stored = self.state.index.reconstruct(pos)
        return bool(np.max(np.abs(stored - _unit(blob))) <= SAME)

    def _retire(self, row_id: int) -> None:
        pos = self.state.positions.pop(row_id, None)
        if pos is not None:
            self.state.alive[pos] = False

    def _append(self, rows: list[tuple[int, np.ndarray]]) -> None:
        state = self.state
        start = len(state.ids)
        vectors = np.stack([v for _, v in rows])
        state.index.add(vectors)
        if state.coarse is not None:
            state.coarse.add(vectors)
        new_ids = np.array([i for i, _ in rows], dtype=np.int64)
        state.ids = np.concatenate([state.ids, new_ids])
        state.alive = np.concatenate([state.alive, np.ones(len(rows), dtype=bool)])
        for offset, row_id in enumerate(new_ids.tolist()):
            state.positions[row_id] = start + offset

    def _build(self, generation: int) -> _State | None:
        """All searchable embeddings, read from SQLite in id order one batch at a time
        (memory: the codes plus one batch, never the whole float matrix)."""
        count = self.store.searchable_embeddings(self.model_id)
        if not count:
            return None
        removed_seq = self.store.removed_since(0)[1]
        faiss = _faiss()
        index, coarse, ids, newest = None, None, [], 0.0
        for rows in self.store.all_embeddings(self.model_id, batch=BUILD_BATCH):
            ids += [r[0] for r in rows]
            newest = max(newest, max(r[2] for r in rows))
            batch = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f2")
            batch = batch.astype(np.float32).reshape(len(rows), -1)
            if index is None:  # the value range is learnt from the first batch
                index = self._new_index(faiss, batch.shape[1], count)
                index.train(batch)
                coarse = _new_coarse(faiss, batch, count)
            index.add(batch)
            if coarse is not None:
                coarse.add(batch)
        if index is None:
            return None
        log.info(
            "search: %d embeddings cached as %d-bit codes%s",
            len(ids),
            self._bits(index.d, count),
            " and fast-scan codes" if coarse is not None else "",
        )
        return _State(
            index,
            np.array(ids, dtype=np.int64),
            np.ones(len(ids), dtype=bool),
            generation,
            newest,
            removed_seq,
            coarse=coarse,
        )

    @staticmethod
    def _bits(dim: int, count: int) -> int:
        return 8 if count * dim <= CODE_BUDGET else 4

    def _new_index(self, faiss, dim: int, count: int):
        kind = getattr(faiss.ScalarQuantizer, f"QT_{self._bits(dim, count)}bit_uniform")
        return faiss.IndexScalarQuantizer(dim, kind, faiss.METRIC_INNER_PRODUCT)

    # -- on disk ---------------------------------------------------------------
    def _load(self) -> _State | None:
        if self.folder is None:
            return None
        try:
            meta = json.loads((self.folder / "current.json").read_text(encoding="utf-8"))
            stem = self.folder / meta["stem"]
            index = _faiss().read_index(str(stem.with_suffix(".faiss")))
            coarse = None
            if meta.get("coarse"):
                coarse = _faiss().read_index(str(stem.with_suffix(".coarse")))
            arrays = np.load(stem.with_suffix(".npz"))
            if (coarse is None) != (len(arrays["ids"]) < COARSE_FROM):
                return None  # saved by a version with another choice: build afresh
            return _State(
                index,
                arrays["ids"],
                arrays["alive"],
                meta["generation"],
                meta["updated_at"],
                meta["removed_seq"],
                coarse=coarse,
            )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            log.debug("search: no usable embedding cache in %s: %s", self.folder, exc)
            return None

    def _save(self) -> None:
        """Each save under new names, then current.json swapped in: a reader never sees
        half a cache. Failing to save (a read-only cache_dir) only costs the next start."""
        if self.folder is None or self.state is None or not (self.rebuilt or self.applied):
            return
        state = self.state
        stem = f"g{state.generation}-{os.getpid()}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            _faiss().write_index(state.index, str(self.folder / f"{stem}.faiss"))
            if state.coarse is not None:
                _faiss().write_index(state.coarse, str(self.folder / f"{stem}.coarse"))
            with open(self.folder / f"{stem}.npz", "wb") as out:
                np.savez(out, ids=state.ids, alive=state.alive)
            meta = {
                "stem": stem,
                "generation": state.generation,
                "updated_at": state.updated_at,
                "removed_seq": state.removed_seq,
                "model": self.model_id,
                "coarse": state.coarse is not None,
            }
            tmp = self.folder / f"current.json.{os.getpid()}"
            tmp.write_text(json.dumps(meta), encoding="utf-8")
            os.replace(tmp, self.folder / "current.json")
            for old in self.folder.iterdir():
                if old.suffix in (".faiss", ".coarse", ".npz") and old.stem != stem:
                    old.unlink(missing_ok=True)
        except (OSError, RuntimeError) as exc:
            log.debug("search: embedding cache not saved in %s: %s", self.folder, exc)


def _new_coarse(faiss, sample: np.ndarray, count: int):
    """Fast-scan product-quantiser codes (two dimensions per 4-bit sub-quantiser) trained
    on ``sample``, for libraries of ``COARSE_FROM`` photos or more; else None."""
    dim = sample.shape[1]
    if count < COARSE_FROM or dim % 2:
        return None
    coarse = faiss.IndexPQFastScan(dim, dim // 2, 4, faiss.METRIC_INNER_PRODUCT)
    coarse.train(sample)
    return coarse
