"""SQLite connection set-up and named, recorded migrations (the only sqlite3 importer)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from photoscribe.errors import DamagedIndexError, NoIndexError, StoreError
from photoscribe.fsutil import display

BUSY_TIMEOUT_MS = 10_000

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_photos",
        """
        CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            size INTEGER,
            mtime_ns INTEGER,
            content_hash TEXT,
            state TEXT NOT NULL,
            model TEXT,
            keywords TEXT NOT NULL DEFAULT '[]',   -- JSON [[label, score], ...]
            keywords_text TEXT NOT NULL DEFAULT '', -- labels joined for full-text search
            caption TEXT,
            embedding BLOB,                         -- L2-normalised float16
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX photos_hash ON photos(content_hash);
        CREATE INDEX photos_state ON photos(state, updated_at);
        CREATE VIRTUAL TABLE photos_fts USING fts5(
            caption, keywords_text, content='photos', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER photos_ai AFTER INSERT ON photos BEGIN
            INSERT INTO photos_fts(rowid, caption, keywords_text)
            VALUES (new.id, new.caption, new.keywords_text);
        END;
        CREATE TRIGGER photos_ad AFTER DELETE ON photos BEGIN
            INSERT INTO photos_fts(photos_fts, rowid, caption, keywords_text)
            VALUES ('delete', old.id, old.caption, old.keywords_text);
        END;
        CREATE TRIGGER photos_au AFTER UPDATE OF caption, keywords_text ON photos BEGIN
            INSERT INTO photos_fts(photos_fts, rowid, caption, keywords_text)
            VALUES ('delete', old.id, old.caption, old.keywords_text);
            INSERT INTO photos_fts(rowid, caption, keywords_text)
            VALUES (new.id, new.caption, new.keywords_text);
        END;
        """,
    ),
    (
        "0002_queue",
        """
        -- Work for the daemon, persisted so that a kill loses nothing: a row leaves the
        -- queue only after its photo is written and indexed (or recorded as failed).
        CREATE TABLE queue (
            path TEXT PRIMARY KEY,
            kind TEXT NOT NULL,          -- 'photo': (re)process; 'gone': drop from the index
            due REAL NOT NULL,           -- unix time when it may be taken
            size INTEGER,                -- the file when last seen, to tell a copy in progress
            mtime_ns INTEGER,
            seq INTEGER NOT NULL,        -- bumped by every event, so a late event is never lost
            added_at REAL NOT NULL
        );
        CREATE INDEX queue_due ON queue(due);
        -- What a running daemon publishes for `photoscribe status` (one row per key).
        CREATE TABLE daemon_state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,         -- JSON
            updated_at REAL NOT NULL
        );
        """,
    ),
    (
        "0003_journal",
        """
        -- Every metadata write photoscribe made, so that `photoscribe undo` can take back
        -- exactly that and restore what it replaced.
        CREATE TABLE journal (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,          -- the photo (follows moves)
            target TEXT NOT NULL,        -- the file written: the photo or its XMP sidecar
            changes TEXT NOT NULL,       -- JSON {exiv2 key: [value before, value after]}
            written_at REAL NOT NULL,
            undone_at REAL
        );
        CREATE INDEX journal_path ON journal(path, undone_at);
        """,
    ),
    (
        "0004_failure_kind",
        """
        -- Why a failed photo failed: 'transient' (disk full, permission denied, I/O error,
        -- a share gone: tried again by the next scan, and by the daemon after a wait that
        -- doubles with every attempt) or 'permanent' (not an image, damaged, unsupported:
        -- left alone until the file changes). NULL for photos that did not fail.
        ALTER TABLE photos ADD COLUMN failure TEXT;
        -- Failures recorded before this column existed: classified by their message.
        UPDATE photos SET failure = CASE
            WHEN error LIKE '%No space left on device%' OR error LIKE '%Disk quota exceeded%'
              OR error LIKE '%Permission denied%' OR error LIKE '%Operation not permitted%'
              OR error LIKE '%Input/output error%' OR error LIKE '%Device or resource busy%'
              OR error LIKE '%Text file busy%' OR error LIKE '%Read-only file system%'
              OR error LIKE '%Stale file handle%' OR error LIKE '%not connected%'
              OR error LIKE '%Resource temporarily unavailable%'
              OR error LIKE '%No such device%' OR error LIKE '%timed out%'
              OR error LIKE '%changed by another program%'
              OR error LIKE '%being changed by another program%'
            THEN 'transient' ELSE 'permanent' END
        WHERE state = 'failed';
        """,
    ),
    ("0005_search", "python:search_index"),
)


def _search_index(conn: sqlite3.Connection) -> None:
    """0005_search: date taken, camera and place columns (filters); a full-text table of
    Chinese-segmented captions, keywords, folder/file names, camera and place, rebuilt
    from the rows already indexed; and a counter bumped by every change that can move
    an embedding, so a search's embedding cache sees in one read whether it is current."""
    from photoscribe.store import fulltext

    for statement in _statements(
        """
        ALTER TABLE photos ADD COLUMN date_taken TEXT;  -- EXIF date taken, 'YYYY-MM-DDTHH:MM'
        ALTER TABLE photos ADD COLUMN camera TEXT;      -- EXIF make and model
        ALTER TABLE photos ADD COLUMN place TEXT;       -- place name from IPTC/XMP
        CREATE INDEX photos_taken ON photos(date_taken);
        CREATE INDEX photos_updated ON photos(updated_at);
        DROP TRIGGER photos_ai;
        DROP TRIGGER photos_ad;
        DROP TRIGGER photos_au;
        DROP TABLE photos_fts;
        CREATE VIRTUAL TABLE photos_fts USING fts5(
            caption, keywords, names, camera, place,
            tokenize='unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER photos_fts_ad AFTER DELETE ON photos BEGIN
            DELETE FROM photos_fts WHERE rowid = old.id;
        END;
        CREATE TABLE search_generation (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER);
        INSERT INTO search_generation VALUES (1, 0);
        CREATE TRIGGER photos_gen_ai AFTER INSERT ON photos BEGIN
            UPDATE search_generation SET n = n + 1;
        END;
        CREATE TRIGGER photos_gen_ad AFTER DELETE ON photos BEGIN
            UPDATE search_generation SET n = n + 1;
        END;
        CREATE TRIGGER photos_gen_au AFTER UPDATE OF embedding, model, state, path ON photos
        BEGIN
            UPDATE search_generation SET n = n + 1;
        END;
        -- Ids of deleted photos, so a copy of the embeddings can drop exactly those.
        CREATE TABLE search_removed (seq INTEGER PRIMARY KEY, id INTEGER NOT NULL);
        CREATE TRIGGER photos_removed_ad AFTER DELETE ON photos BEGIN
            INSERT INTO search_removed (id) VALUES (old.id);
        END;
        -- Counting the searchable embeddings of a model without reading every row.
        CREATE INDEX photos_embedded ON photos(model, id)
            WHERE embedding IS NOT NULL AND state IN ('done', 'needs_caption');
        """
    ):
        conn.execute(statement)
    fulltext.refresh(conn, "1")


PYTHON_MIGRATIONS = {"search_index": _search_index}


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the index. Writers migrate it; readers never block the writer (WAL)."""
    try:
        if readonly:
            conn = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
        else:
            _make_folder(path)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.row_factory = sqlite3.Row
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the header
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            migrate(conn)
        elif missing := pending(conn):
            conn.close()
            raise _not_current(path, fresh=len(missing) == len(MIGRATIONS))
    except sqlite3.Error as exc:
        raise open_error(path, exc) from exc
    return conn


def _not_current(path: Path, *, fresh: bool) -> StoreError:
    """A reader's error for an index without (all of) this version's tables."""
    if fresh:  # an empty file: a first scan is creating it this moment, or never did
        return NoIndexError(
            f"there is no index at {path} yet (the file holds no tables); run "
            "`photoscribe scan FOLDER` first, or wait for the scan that is creating it"
        )
    return StoreError(
        f"the index {path} was made by an older photoscribe; run `photoscribe scan` "
        "once (or restart `photoscribe run`) to bring it up to date"
    )


def open_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """What to tell the user when the index cannot be used, by what SQLite said."""
    text = str(exc)
    if is_damage(exc):
        return damaged(path, text)
    if "locked" in text or "busy" in text:
        return StoreError(
            f"the index {display(path)} is locked by another program ({text}); close it "
            "(e.g. an SQLite browser holding a transaction) and try again"
        )
    return StoreError(
        f"cannot open the index {display(path)}: {text}; check the path (index_path in the "
        "config) and its permissions"
    )


def damaged(path: Path, what: str) -> DamagedIndexError:
    return DamagedIndexError(
        f"the index {display(path)} is damaged ({what}); photoscribe leaves it as it is. "
        f"Your photos keep their tags: move the file aside (e.g. `mv {display(path)} "
        f"{display(path)}.damaged`) and run `photoscribe index rebuild FOLDER...` to "
        "rebuild the index from the photos' own metadata"
    )


def is_damage(exc: BaseException) -> bool:
    """SQLite's words for a file that is not (or no longer) a sound database."""
    text = str(exc)
    return isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "corrupt" in text
    )


def integrity_problems(conn: sqlite3.Connection, limit: int = 5) -> list[str]:
    """SQLite's own check of every page of the index: [] when it is sound."""
    try:
        rows = conn.execute(f"PRAGMA quick_check({int(limit)})").fetchall()
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    found = [str(r[0]) for r in rows]
    return [] if found == ["ok"] else found


def _make_folder(path: Path) -> None:
    """The index's folder, created if need be; StoreError saying what to do if it can't be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the folder {display(path.parent)} for the index: "
            f"{exc.strerror or exc}; set index_path in the config to a file in a folder you "
            "can write to, or create that folder"
        ) from exc


def migrate(conn: sqlite3.Connection) -> None:
    """Apply every pending migration in one transaction: a reader sees the index as it was
    or as it is now, never half-upgraded; a second writer starting at the same moment
    waits for the lock and then finds nothing left to do."""
    if not pending(conn):
        return  # current: no write lock taken
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS migrations "
            "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
        )
        applied = {row[0] for row in conn.execute("SELECT name FROM migrations")}
        for name, sql in MIGRATIONS:
            if name not in applied:
                _apply(conn, name, sql)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _apply(conn: sqlite3.Connection, name: str, sql: str) -> None:
    if sql.startswith("python:"):
        PYTHON_MIGRATIONS[sql.removeprefix("python:")](conn)
    else:
        for statement in _statements(sql):
            conn.execute(statement)
    conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))


def pending(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations not applied yet to the index behind ``conn``."""
    try:
        applied = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    except sqlite3.OperationalError:  # no migrations table: nothing applied
        applied = set()
    return [name for name, _ in MIGRATIONS if name not in applied]


def _statements(sql: str) -> list[str]:
    """Split a migration script into statements, keeping trigger bodies whole."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def set_aside(path: Path, when: float | None = None) -> Path:
    """Rename a damaged index (and its -wal/-shm files) to ``NAME.damaged-YYYYmmdd-HHMMSS``;
    nothing is deleted. Returns the new name of the index file."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            part.rename(target.with_name(target.name + suffix))
    return target
