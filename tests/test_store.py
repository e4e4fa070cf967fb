from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from photoscribe.errors import NoIndexError, StoreError
from photoscribe.records import FileStat, Keyword, State, Tagging
from photoscribe.store import db as store_db
from photoscribe.store import open_store

STAT = FileStat(size=10, mtime_ns=20, dev=1, ino=2)


def tagging(*labels: str) -> Tagging:
    return Tagging(tuple(Keyword(x, 0.5) for x in labels), b"\x00<" * 4, "model-a")


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    open_store(db)
    open_store(db)
    rows = sqlite3.connect(db).execute("SELECT name FROM migrations").fetchall()
    assert rows == [
        ("0001_photos",),
        ("0002_queue",),
        ("0003_journal",),
        ("0004_failure_kind",),
        ("0005_search",),
    ]


def test_failures_recorded_before_0004_are_classified_by_their_message(tmp_path: Path) -> None:
    from photoscribe.store.db import MIGRATIONS, _statements

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for name, sql in MIGRATIONS[:3]:  # an index made by the version before failure kinds
        for statement in _statements(sql):
            conn.execute(statement)
        conn.execute("INSERT INTO migrations VALUES (?, 0)", (name,))
    old = [
        ("/p/full.jpg", "failed", "cannot write /p/full.jpg: No space left on device"),
        ("/p/denied.jpg", "failed", "cannot read the file: Permission denied"),
        ("/p/broken.jpg", "failed", "the file is not an image photoscribe can read"),
        ("/p/ok.jpg", "done", None),
    ]
    conn.executemany(
        "INSERT INTO photos (path, state, error, created_at, updated_at) VALUES (?, ?, ?, 0, 0)",
        old,
    )
    conn.close()
    with pytest.raises(StoreError, match="older photoscribe"):
        open_store(db, readonly=True)  # `status` before any writer upgraded it
    store = open_store(db)
    kinds = {str(r.path): (r.failure, r.transient) for r in store.rows_under(Path("/p"))}
    assert kinds == {
        "/p/full.jpg": ("transient", True),
        "/p/denied.jpg": ("transient", True),
        "/p/broken.jpg": ("permanent", False),
        "/p/ok.jpg": (None, False),
    }
    assert store.failure_counts() == {"transient": 2, "permanent": 1}


def test_a_failure_records_its_kind_and_counts_attempts_in_a_row(tmp_path: Path) -> None:
    store = open_store(tmp_path / "i.db")
    path = Path("/p/full.jpg")
    store.save_failure(path, STAT, "No space left on device", transient=True)
    store.save_failure(path, STAT, "No space left on device", transient=True)
    row = store.by_path(path)
    assert (row.failure, row.transient, row.attempts) == ("transient", True, 2)
    store.save_failure(path, STAT, "not an image")
    row = store.by_path(path)
    assert (row.failure, row.transient, row.attempts) == ("permanent", False, 3)
    store.save_tagged(path, STAT, "h", tagging("cat"), None)
    row = store.by_path(path)
    assert (row.failure, row.transient, row.attempts) == (None, False, 0)
    store.save_failure(path, STAT, "Permission denied", transient=True)
    assert store.by_path(path).attempts == 1  # counted afresh after a success


def test_tagged_then_captioned_is_searchable(tmp_path: Path) -> None:
    store = open_store(tmp_path / "i.db")
    store.save_tagged(Path("/p/a.jpg"), STAT, "h1", tagging("cat", "sofa"), None)
    row = store.by_path(Path("/p/a.jpg"))
    assert row is not None and row.state is State.NEEDS_CAPTION
    assert store.full_text('"sofa"', 10) == [row.id]
    store.save_caption(row.id, "A ginger cat asleep on a sofa.", None)
    assert store.by_path(Path("/p/a.jpg")).state is State.DONE
    assert store.full_text('"ginger"', 10) == [row.id]
    assert store.counts()[State.DONE] == 1


def test_retagging_updates_the_full_text_index(tmp_path: Path) -> None:
    store = open_store(tmp_path / "i.db")
    store.save_tagged(Path("/p/a.jpg"), STAT, "h1", tagging("cat"), "a cat")
    store.save_tagged(Path("/p/a.jpg"), STAT, "h1", tagging("dog"), "a dog")
    assert store.full_text('"cat"', 10) == []
    assert store.full_text('"dog"', 10) == [store.by_path(Path("/p/a.jpg")).id]


def test_failure_then_success_clears_the_error(tmp_path: Path) -> None:
    store = open_store(tmp_path / "i.db")
    store.save_failure(Path("/p/b.jpg"), STAT, "broken")
    store.save_failure(Path("/p/b.jpg"), STAT, "still broken")
    row = store.by_path(Path("/p/b.jpg"))
    assert (row.state, row.error, row.attempts) == (State.FAILED, "still broken", 2)
    store.save_tagged(Path("/p/b.jpg"), STAT, "h2", tagging("cat"), "a cat")
    row = store.by_path(Path("/p/b.jpg"))
    assert (row.state, row.error) == (State.DONE, None)


def test_move_keeps_the_row(tmp_path: Path) -> None:
    store = open_store(tmp_path / "i.db")
    store.save_tagged(Path("/p/a.jpg"), STAT, "h1", tagging("cat"), "a cat")
    row = store.by_path(Path("/p/a.jpg"))
    store.move(row.id, Path("/q/a.jpg"), STAT)
    assert store.by_path(Path("/p/a.jpg")) is None
    assert store.by_path(Path("/q/a.jpg")).id == row.id
    assert [r.id for r in store.by_hash("h1", "model-a")] == [row.id]


def test_readonly_reader_sees_writes_and_cannot_write(tmp_path: Path) -> None:
    writer = open_store(tmp_path / "i.db")
    reader = open_store(tmp_path / "i.db", readonly=True)
    writer.save_tagged(Path("/p/a.jpg"), STAT, "h1", tagging("cat"), "a cat")
    assert reader.counts()[State.DONE] == 1
    with pytest.raises(sqlite3.OperationalError):
        reader.save_failure(Path("/p/x.jpg"), None, "x")


def test_a_reader_never_sees_a_half_created_index(tmp_path: Path, monkeypatch) -> None:
    """A reader (`status`, a test's poll) opening while the first scan creates the index
    sees no index yet, never an index "made by an older photoscribe" (CI found a reader
    between the first four migrations and the fifth)."""
    db, seen = tmp_path / "i.db", []
    real = store_db.PYTHON_MIGRATIONS["search_index"]

    def last_migration_with_a_reader(conn: sqlite3.Connection) -> None:
        real(conn)
        try:
            open_store(db, readonly=True)
            seen.append("opened")
        except StoreError as exc:
            seen.append(exc)

    monkeypatch.setitem(store_db.PYTHON_MIGRATIONS, "search_index", last_migration_with_a_reader)
    open_store(db)
    assert len(seen) == 1 and isinstance(seen[0], NoIndexError), seen
    assert "no index" in str(seen[0]) and "older" not in str(seen[0])
    assert open_store(db, readonly=True).counts()[State.DONE] == 0  # whole once committed


def test_two_writers_creating_the_index_at_once_both_open_it(tmp_path: Path, monkeypatch) -> None:
    """The daemon and a scan started together on a fresh index: the second waits for the
    first one's migrations and applies none of them again."""
    db, errors = tmp_path / "i.db", []
    real = store_db.PYTHON_MIGRATIONS["search_index"]

    def second_writer() -> None:
        try:
            open_store(db).close()
        except Exception as exc:
            errors.append(exc)

    def slow_last_migration(conn: sqlite3.Connection) -> None:
        real(conn)
        other = threading.Thread(target=second_writer)
        other.start()
        time.sleep(0.5)  # the second writer reaches the lock while this one holds it
        threads.append(other)

    threads: list[threading.Thread] = []
    monkeypatch.setitem(store_db.PYTHON_MIGRATIONS, "search_index", slow_last_migration)
    open_store(db).close()
    threads[0].join(30)
    assert errors == []
    names = sqlite3.connect(db).execute("SELECT name FROM migrations").fetchall()
    assert len(names) == len(store_db.MIGRATIONS)


def test_readonly_on_an_empty_file_is_no_index_yet(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "i.db")
    conn.execute("PRAGMA journal_mode = WAL")  # what a writer's first moment leaves
    conn.close()
    with pytest.raises(NoIndexError, match="run `photoscribe scan FOLDER` first"):
        open_store(tmp_path / "i.db", readonly=True)


def test_readonly_without_an_index_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="run `photoscribe scan FOLDER` first"):
        open_store(tmp_path / "missing.db", readonly=True)


def test_unopenable_index_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match="cannot open the index"):
        open_store(tmp_path / "dir.db")
