from __future__ import annotations

from pathlib import Path

import numpy as np

from photoscribe.records import FileStat, Keyword, Tagging
from photoscribe.search import SearchQuery, fts_expression, fuse, search
from photoscribe.search.vectors import from_store
from photoscribe.store import open_store

STAT = FileStat(1, 1, 1, 1)


def test_user_text_is_quoted_for_fts() -> None:
    assert fts_expression('cat "OR" sofa*') == '("cat") AND ("OR") AND ("sofa"*)'
    assert fts_expression("cat sofa", any_term=True) == '("cat") OR ("sofa")'
    assert fts_expression("!!!") is None


def test_fusion_rewards_agreement() -> None:
    fused = fuse([1, 2], [(2, 0.3), (3, 0.25)])
    assert [row_id for row_id, _ in fused] == [2, 1, 3]


def _vec(*values: float) -> bytes:
    v = np.array(values, dtype=np.float32)
    return (v / np.linalg.norm(v)).astype("<f2").tobytes()


def test_search_merges_text_and_clip(tmp_path: Path) -> None:
    store = open_store(tmp_path / "i.db")
    rows = [
        ("/p/cat.jpg", "A cat on a sofa.", ("cat",), _vec(1, 0, 0)),
        ("/p/dog.jpg", "A dog in the park.", ("dog",), _vec(0, 1, 0)),
        ("/p/kitten.jpg", "Something small and fluffy.", ("pet",), _vec(0.9, 0.1, 0)),
    ]
    for path, caption, labels, emb in rows:
        kws = tuple(Keyword(x, 0.9) for x in labels)
        store.save_tagged(Path(path), STAT, path, Tagging(kws, emb, "m"), caption)

    def encode(texts):
        return np.array([[1.0, 0.0, 0.0]], dtype=np.float32)

    vectors = from_store(store, "m")
    hits = search(
        store, SearchQuery("cat", 5), vectors=vectors, encode_text=encode, min_similarity=0.5
    )
    assert [h.path.name for h in hits] == ["cat.jpg", "kitten.jpg"]
    assert hits[0].matched_by == ("text", "clip")
    assert hits[1].matched_by == ("clip",)
    text_only = search(store, SearchQuery("park dog", 5))
    assert [h.path.name for h in text_only] == ["dog.jpg"]


def test_cjk_text_matches_substrings(tmp_path: Path) -> None:
    store = open_store(tmp_path / "i.db")
    kws = (Keyword("cat", 0.9),)
    store.save_tagged(Path("/p/a.jpg"), STAT, "h", Tagging(kws, b"", "m"), "一只猫坐在沙发上。")
    assert [h.path.name for h in search(store, SearchQuery("沙发", 5))] == ["a.jpg"]
    assert search(store, SearchQuery("汽车", 5)) == []


def test_all_words_first_then_any_word_in_rank_order(tmp_path: Path) -> None:
    store = open_store(tmp_path / "i.db")
    captions = {
        "both.jpg": "A red barn at dusk.",
        "barn.jpg": "An old barn.",
        "red.jpg": "A red red red car.",
        "none.jpg": "A quiet lake.",
    }
    for name, caption in captions.items():
        store.save_tagged(Path(f"/p/{name}"), STAT, name, Tagging((), b"", "m"), caption)

    def names(text: str) -> list[str]:
        return [h.path.name for h in search(store, SearchQuery(text, 10))]

    assert names("red barn") == ["both.jpg"]  # every word: only the one with both
    # no photo has both words: any word, best bm25 first (three "red"s beat one "barn")
    assert names("red lighthouse") == ["red.jpg", "both.jpg"]
    assert names("barn lighthouse") == ["barn.jpg", "both.jpg"]  # the shorter caption first
    assert names("lighthouse") == []


def test_a_very_common_word_ranks_only_its_newest_matches(tmp_path: Path, monkeypatch) -> None:
    """Past photos.TEXT_RANKED matches, bm25 orders the most recently indexed ones (a word
    in a third of a million photos would cost ~0.7 s); below it, the ranking is exact."""
    import photoscribe.store.photos as photos_module

    store = open_store(tmp_path / "i.db")
    for i in range(12):  # the older six say little else (bm25 likes them best)
        words = "海边 猫" if i < 6 else "海边 猫 " + " ".join(f"词{n}" for n in range(i * 3))
        kws = (Keyword("thing", 0.9),)
        store.save_tagged(Path(f"/p/{i}.jpg"), STAT, str(i), Tagging(kws, None, "m"), words)
    ids = {store.by_path(Path(f"/p/{i}.jpg")).id: i for i in range(12)}

    def found() -> list[int]:
        hits = search(store, SearchQuery("猫", 3, use_clip=False))
        return [ids[h.id] for h in hits]

    assert sorted(found()) == [3, 4, 5]  # exact: three of the short ones, newest first
    monkeypatch.setattr(photos_module, "TEXT_RANKED", 6)
    assert found() == [6, 7, 8]  # the best of the newest six matches
