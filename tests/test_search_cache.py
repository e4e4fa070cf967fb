"""The embedding cache (faiss codes in cache_dir) ranks like an exact scan and stays in
step with the index: new, changed, failed and deleted photos, and a restart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from photoscribe.records import FileStat, Keyword, Tagging
from photoscribe.search import SearchQuery, search
from photoscribe.search.cache import VectorCache
from photoscribe.search.vectors import from_store
from photoscribe.store import open_store

STAT = FileStat(1, 1, 1, 1)
DIM = 32


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def add(store, name: str, vector: np.ndarray, caption: str = "x", model: str = "m") -> None:
    blob = vector.astype("<f2").tobytes()
    kws = (Keyword("thing", 0.9),)
    store.save_tagged(Path(f"/p/{name}"), STAT, name, Tagging(kws, blob, model), caption)


@pytest.fixture(autouse=True, params=["scalar codes", "fast-scan codes first"])
def scan_kind(request, monkeypatch) -> str:
    """Every test twice: the scalar codes scanned whole (smaller libraries), and the
    fast-scan codes picking 60 of the 300 photos first (as from 50,000 photos on)."""
    import photoscribe.search.cache as cache_module

    if request.param != "scalar codes":
        monkeypatch.setattr(cache_module, "COARSE_FROM", 0)
        monkeypatch.setattr(cache_module, "COARSE_MIN", 60)
        monkeypatch.setattr(cache_module, "COARSE_SHARE", 10**9)
    return request.param


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(tmp_path / "i.db")
    rng = np.random.default_rng(7)
    for i in range(300):
        add(s, f"{i}.jpg", unit(rng))
    yield s
    s.close()


def exact(store, query: np.ndarray, k: int) -> list[int]:
    return [i for i, _ in from_store(store, "m").nearest(query, k)]


def test_ranks_exactly_like_a_full_scan(store, tmp_path: Path) -> None:
    cache = VectorCache(store, "m", tmp_path / "cache")
    rng = np.random.default_rng(1)
    for _ in range(10):
        q = unit(rng)
        assert [i for i, _ in cache.nearest(q, 20)] == exact(store, q, 20)
    assert cache.rebuilt == 0  # built on the first query only


def test_follows_new_changed_failed_and_deleted_photos(store, tmp_path: Path) -> None:
    cache = VectorCache(store, "m", tmp_path / "cache")
    rng = np.random.default_rng(2)
    target = unit(rng)
    assert cache.nearest(target, 1)[0][1] < 0.99
    add(store, "new.jpg", target)
    new_id = store.by_path(Path("/p/new.jpg")).id
    assert cache.nearest(target, 1)[0][0] == new_id
    assert (cache.rebuilt, cache.applied) == (0, 1)  # appended, not rebuilt
    other = unit(rng)
    add(store, "new.jpg", other)  # re-tagged: another embedding
    assert cache.nearest(target, 1)[0][0] != new_id
    assert cache.nearest(other, 1)[0][0] == new_id
    store.save_failure(Path("/p/new.jpg"), STAT, "damaged")
    assert new_id not in [i for i, _ in cache.nearest(other, 50)]
    add(store, "new.jpg", other)
    assert cache.nearest(other, 1)[0][0] == new_id
    store.delete(Path("/p/new.jpg"))
    assert new_id not in [i for i, _ in cache.nearest(other, 50)]
    assert cache.rebuilt == 0 and len(cache) == 300
    q = unit(rng)
    assert [i for i, _ in cache.nearest(q, 20)] == exact(store, q, 20)


def test_a_restart_loads_the_saved_cache(store, tmp_path: Path) -> None:
    q = unit(np.random.default_rng(3))
    first = VectorCache(store, "m", tmp_path / "cache").nearest(q, 10)
    again = VectorCache(store, "m", tmp_path / "cache")
    assert again.nearest(q, 10) == first and again.rebuilt == 0
    assert len(list((tmp_path / "cache" / "search" / "m").glob("*.faiss"))) == 1
    coarse = list((tmp_path / "cache" / "search" / "m").glob("*.coarse"))
    assert len(coarse) == (again.state.coarse is not None)
    add(store, "late.jpg", q)  # changed while no search ran
    later = VectorCache(store, "m", tmp_path / "cache")
    assert later.nearest(q, 1)[0][0] == store.by_path(Path("/p/late.jpg")).id
    assert later.rebuilt == 0 and later.applied == 1


def test_other_models_are_not_mixed_in(store, tmp_path: Path) -> None:
    q = unit(np.random.default_rng(4))
    add(store, "other-model.jpg", q, model="other")
    cache = VectorCache(store, "m", tmp_path / "cache")
    assert store.by_path(Path("/p/other-model.jpg")).id not in [i for i, _ in cache.nearest(q, 5)]


def test_search_with_the_cache_and_a_filter(store, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    q = unit(rng)
    add(store, "beach.jpg", q, caption="今天去海边玩了")
    store.save_tagged(  # the same embedding in another folder
        Path("/q/beach.jpg"), STAT, "b2", Tagging((), q.astype("<f2").tobytes(), "m"), "y"
    )
    cache = VectorCache(store, "m", tmp_path / "cache")

    def encode(texts):
        return q[None]

    hits = search(store, SearchQuery("海边", 3), vectors=cache, encode_text=encode)
    assert str(hits[0].path) == "/p/beach.jpg" and hits[0].matched_by == ("text", "clip")
    only_q = SearchQuery("sea", 3, folder=Path("/q"))
    hits = search(store, only_q, vectors=cache, encode_text=encode, min_similarity=0.0)
    assert [str(h.path) for h in hits] == ["/q/beach.jpg"]


def test_four_bit_codes_still_rank_exactly(store, tmp_path: Path, monkeypatch) -> None:
    import photoscribe.search.cache as cache_module

    monkeypatch.setattr(cache_module, "CODE_BUDGET", 0)  # as for a library past the budget
    cache = VectorCache(store, "m", tmp_path / "cache")
    rng = np.random.default_rng(6)
    q = unit(rng)
    assert [i for i, _ in cache.nearest(q, 20)] == exact(store, q, 20)
    assert cache.state.index.code_size < DIM  # 4-bit codes were used


def test_the_fast_scan_codes_are_used_only_from_their_size_on(store, tmp_path, scan_kind) -> None:
    cache = VectorCache(store, "m", tmp_path / "cache")
    cache.refresh()
    assert (cache.state.coarse is not None) == (scan_kind != "scalar codes")


def test_a_cache_saved_with_another_choice_is_built_afresh(
    store, tmp_path, monkeypatch, scan_kind
) -> None:
    import photoscribe.search.cache as cache_module

    q = unit(np.random.default_rng(8))
    first = VectorCache(store, "m", tmp_path / "cache").nearest(q, 10)
    flipped = 0 if scan_kind == "scalar codes" else 10**9  # e.g. the library grew past it
    monkeypatch.setattr(cache_module, "COARSE_FROM", flipped)
    monkeypatch.setattr(cache_module, "COARSE_MIN", 60)
    again = VectorCache(store, "m", tmp_path / "cache")
    assert again.nearest(q, 10) == first and again.rebuilt == 1
