"""Chinese full-text search, the query syntax, and the 0005 migration on an old index."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from photoscribe.errors import ConfigError
from photoscribe.records import FileStat, Keyword, Tagging
from photoscribe.search import SearchQuery, search
from photoscribe.search.query import parse_terms
from photoscribe.segment import index_text
from photoscribe.store import open_store
from photoscribe.store.db import MIGRATIONS, _statements

STAT = FileStat(1, 1, 1, 1)
PHOTOS = {
    "beach.jpg": ("今天去海边玩了，天气很好。", ("海滩", "beach")),
    "cat.jpg": ("一只猫坐在沙发上。", ("猫", "cat")),
    "kitten.jpg": ("小猫在地板上睡觉。", ("kitten",)),
    "sofa.jpg": ("客厅里有一张灰色的沙发。", ("sofa",)),
    "dog.jpg": ("A dog runs along the seaside.", ("dog", "海边")),
    "city.jpg": ("上海的高楼大厦。", ("city",)),
}


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(tmp_path / "i.db")
    for name, (caption, labels) in PHOTOS.items():
        kws = tuple(Keyword(x, 0.9) for x in labels)
        s.save_tagged(Path(f"/p/{name}"), STAT, name, Tagging(kws, b"", "m"), caption)
    yield s
    s.close()


def names(store, text: str, **filters) -> list[str]:
    return [h.path.name for h in search(store, SearchQuery(text, 20, **filters))]


def test_chinese_words_match_inside_captions_and_keywords(store) -> None:
    assert sorted(names(store, "海边")) == ["beach.jpg", "dog.jpg"]  # caption; keyword
    assert sorted(names(store, "猫")) == ["cat.jpg", "kitten.jpg"]  # inside 小猫 too
    assert sorted(names(store, "沙发")) == ["cat.jpg", "sofa.jpg"]
    assert names(store, "海边玩") == ["beach.jpg"]  # three characters: that exact run
    assert names(store, "汽车") == []
    assert names(store, "边上") == []  # both characters occur, not next to each other


def test_two_chinese_words_need_both_then_either(store) -> None:
    assert names(store, "猫 沙发") == ["cat.jpg"]  # the issue: this found nothing
    assert names(store, "猫沙发") == ["cat.jpg"]  # no space: split as the index knows it
    # no photo has both: its words of two or more characters, any of them
    assert sorted(names(store, "海边猫")) == ["beach.jpg", "dog.jpg"]
    assert sorted(names(store, "猫 汽车")) == ["cat.jpg", "kitten.jpg"]  # no photo has both


def test_star_and_unclosed_quote_work_in_chinese_and_english(store) -> None:
    assert sorted(names(store, "猫*")) == ["cat.jpg", "kitten.jpg"]
    assert sorted(names(store, '"猫')) == ["cat.jpg", "kitten.jpg"]
    assert names(store, "kitt*") == ["kitten.jpg"]
    assert names(store, '"seaside') == ["dog.jpg"]
    assert names(store, '"runs along"') == ["dog.jpg"]
    assert names(store, '"along runs"') == []  # a phrase keeps its order


def test_mixed_chinese_and_english_query(store) -> None:
    assert names(store, "dog 海边") == ["dog.jpg"]
    assert names(store, "cat 沙发") == ["cat.jpg"]


def test_minus_leaves_photos_out(store) -> None:
    assert names(store, "猫 -小猫") == ["cat.jpg"]
    assert sorted(names(store, "沙发 -cat")) == ["sofa.jpg"]
    assert sorted(names(store, "-猫")) == ["beach.jpg", "city.jpg", "dog.jpg", "sofa.jpg"]


def test_folder_and_file_names_are_searched(tmp_path: Path) -> None:
    s = open_store(tmp_path / "i.db")
    s.save_tagged(Path("/p/2024 三亚海边/IMG_0001.jpg"), STAT, "h", Tagging((), b"", "m"), "x")
    assert names(s, "三亚") == ["IMG_0001.jpg"]
    assert names(s, "img_0001") == ["IMG_0001.jpg"]


def test_chinese_ranking_prefers_the_more_relevant_caption(tmp_path: Path) -> None:
    s = open_store(tmp_path / "i.db")
    captions = {
        "once.jpg": "海边的一座房子，房子前面有花园和一条很长的小路。",
        "many.jpg": "海边，海边。",
    }
    for name, caption in captions.items():
        s.save_tagged(Path(f"/p/{name}"), STAT, name, Tagging((), b"", "m"), caption)
    assert names(s, "海边") == ["many.jpg", "once.jpg"]


def test_query_syntax_never_reaches_fts_unquoted(store) -> None:
    for text in ["AND", 'a" OR "b', "NEAR(a b)", "猫:", "^猫", "col:猫", "猫 OR", "a -"]:
        search(store, SearchQuery(text, 5))  # no sqlite3.OperationalError
    for text in ['"', "*", "-", '""', "-*"]:
        with pytest.raises(ConfigError, match="words to search for"):
            search(store, SearchQuery(text, 5))
    assert [t.text for t in parse_terms('-"red car" 猫* "x')] == ["red car", "猫", "x"]
    with pytest.raises(ConfigError, match="words to search for"):
        search(store, SearchQuery("", 5))


def test_segmentation_keeps_latin_text_as_it_is() -> None:
    assert index_text("A cat on a sofa") == "A cat on a sofa"
    assert index_text("猫") == "猫"
    assert index_text("海边 cat") == "海边 海 边 cat"


def old_index(path: Path) -> None:
    """An index as photoscribe made it before 0005 (migrations 0001-0004, old triggers)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, sql in MIGRATIONS[:4]:
        for statement in _statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))
    for i, (name, (caption, labels)) in enumerate(PHOTOS.items()):
        conn.execute(
            "INSERT INTO photos (path, state, model, keywords, keywords_text, caption, "
            "created_at, updated_at) VALUES (?, 'done', 'm', '[]', ?, ?, 0, ?)",
            (f"/p/{name}", " ".join(labels), caption, i),
        )
    conn.close()


def test_migration_rebuilds_the_full_text_of_an_old_index(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_index(path)
    with pytest.raises(Exception, match="older photoscribe"):
        open_store(path, readonly=True)
    s = open_store(path)  # a writer migrates
    assert sorted(names(s, "海边")) == ["beach.jpg", "dog.jpg"]
    assert names(s, "猫 沙发") == ["cat.jpg"]
    applied = [r[0] for r in s.query("SELECT name FROM migrations ORDER BY name")]
    assert applied[-1] == "0005_search"
    s.delete(Path("/p/cat.jpg"))  # the full-text row goes with the photo
    assert names(s, "猫") == ["kitten.jpg"]
    assert s.query("SELECT count(*) FROM photos_fts")[0][0] == len(PHOTOS) - 1
    s.close()
