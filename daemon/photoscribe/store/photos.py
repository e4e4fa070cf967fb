"""The photos table: one row per photo path, its state, tags, caption and embedding."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from photoscribe.records import FileStat, Keyword, PhotoFacts, State, Tagging
from photoscribe.store import fulltext
from photoscribe.store.db import open_error
from photoscribe.store.paths import from_db, to_db

COLUMNS = (
    "id, path, size, mtime_ns, content_hash, state, model, keywords, caption, error, "
    "attempts, updated_at, failure, date_taken, camera, place"
)
TRANSIENT = "transient"  # photos.failure: may pass by itself; tried again
PERMANENT = "permanent"  # photos.failure: stays until the file changes
SEARCHABLE = "'done', 'needs_caption'"  # states search lists
BM25_WEIGHTS = "1.0, 2.0, 1.0, 1.0, 1.0"  # caption, keywords, names, camera, place
TEXT_RANKED = 1_000  # matches of one text query ranked at most (the newest indexed)


@dataclass(frozen=True)
class PhotoRow:
    id: int
    path: Path
    size: int | None
    mtime_ns: int | None
    content_hash: str | None
    state: State
    model: str | None
    keywords: tuple[Keyword, ...]
    caption: str | None
    error: str | None
    attempts: int
    updated_at: float
    failure: str | None = None  # TRANSIENT or PERMANENT when state is FAILED
    date_taken: str | None = None  # EXIF date taken, 'YYYY-MM-DDTHH:MM'
    camera: str | None = None
    place: str | None = None

    @property
    def transient(self) -> bool:
        """A failure that may pass by itself (disk full, permission denied, ...)."""
        return self.state is State.FAILED and self.failure == TRANSIENT

    def same_file(self, stat: FileStat) -> bool:
        return self.size == stat.size and self.mtime_ns == stat.mtime_ns


def _row(r: sqlite3.Row) -> PhotoRow:
    return PhotoRow(
        id=r["id"],
        path=from_db(r["path"]),
        size=r["size"],
        mtime_ns=r["mtime_ns"],
        content_hash=r["content_hash"],
        state=State(r["state"]),
        model=r["model"],
        keywords=tuple(Keyword(k, s) for k, s in json.loads(r["keywords"])),
        caption=r["caption"],
        error=r["error"],
        attempts=r["attempts"],
        updated_at=r["updated_at"],
        failure=r["failure"],
        date_taken=r["date_taken"],
        camera=r["camera"],
        place=r["place"],
    )


def keywords_json(keywords: Iterable[Keyword]) -> str:
    return json.dumps([[k.label, round(k.score, 4)] for k in keywords], ensure_ascii=False)


class PhotoStore:
    """Queries and updates on the index. Writes serialise on one lock (one writer)."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None = None) -> None:
        self._conn = conn
        self._path = path or Path("index")  # for messages
        self._lock = threading.RLock()

    def reader(self) -> PhotoStore:
        """Another read-only store on the same index file, with its own connection (and
        lock): a thread reading through it runs beside this one's queries, not after them.
        This store itself where there is no file (an in-memory index)."""
        if not self._path.is_file():
            return self
        from photoscribe.store.db import connect

        return PhotoStore(connect(self._path, readonly=True), self._path)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:  # locked past busy_timeout, damaged, ...
                raise open_error(self._path, exc) from exc
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _one(self, sql: str, params: tuple) -> PhotoRow | None:
        with self._lock:
            r = self._conn.execute(sql, params).fetchone()
        return _row(r) if r else None

    def _many(self, sql: str, params: tuple = ()) -> list[PhotoRow]:
        with self._lock:
            return [_row(r) for r in self._conn.execute(sql, params).fetchall()]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def integrity_problems(self) -> list[str]:
        """SQLite's check of every page (reads the whole file): [] when the index is sound."""
        from photoscribe.store.db import integrity_problems

        with self._lock:
            return integrity_problems(self._conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the index, for the other tables of the same file."""
        with self._write() as conn:
            yield conn

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def delete(self, path: Path) -> bool:
        """Forget a photo that no longer exists; True if it was indexed."""
        with self._write() as c:
            return c.execute("DELETE FROM photos WHERE path = ?", (to_db(path),)).rowcount > 0

    def rows_under(self, root: Path) -> list[PhotoRow]:
        """Indexed photos below the folder ``root``."""
        prefix = to_db(root).rstrip("/") + "/"
        return self._many(
            f"SELECT {COLUMNS} FROM photos WHERE substr(path, 1, ?) = ?", (len(prefix), prefix)
        )

    # -- reads ---------------------------------------------------------------
    def by_path(self, path: Path) -> PhotoRow | None:
        return self._one(f"SELECT {COLUMNS} FROM photos WHERE path = ?", (to_db(path),))

    def by_hash(self, content_hash: str, model: str) -> list[PhotoRow]:
        return self._many(
            f"SELECT {COLUMNS} FROM photos WHERE content_hash = ? AND model = ? "
            "AND state NOT IN ('failed', 'undone') ORDER BY id",
            (content_hash, model),
        )

    def content_hashes(self, model: str) -> Iterator[str]:
        """The content hash of every photo ``by_hash`` could find for ``model``."""
        rows = self.query(
            "SELECT DISTINCT content_hash FROM photos WHERE model = ? AND content_hash "
            "IS NOT NULL AND state NOT IN ('failed', 'undone')",
            (model,),
        )
        return (r[0] for r in rows)

    def by_ids(self, ids: Iterable[int]) -> dict[int, PhotoRow]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._many(f"SELECT {COLUMNS} FROM photos WHERE id IN ({marks})", tuple(ids))
        return {r.id: r for r in rows}

    def embedding_of(self, row_id: int) -> bytes:
        with self._lock:
            sql = "SELECT embedding FROM photos WHERE id = ?"
            r = self._conn.execute(sql, (row_id,)).fetchone()
        return bytes(r[0]) if r and r[0] is not None else b""

    def save_embedding(self, row_id: int, embedding: bytes) -> None:
        with self._write() as c:
            c.execute(
                "UPDATE photos SET embedding = ?, updated_at = ? WHERE id = ?",
                (embedding, time.time(), row_id),
            )

    def needing_caption(self, model: str | None = None) -> list[PhotoRow]:
        """Photos with keywords but no caption yet (of ``model``, or of any model)."""
        return self._many(
            f"SELECT {COLUMNS} FROM photos WHERE state = ? AND model = coalesce(?, model) "
            "ORDER BY id",
            (State.NEEDS_CAPTION.value, model),
        )

    def counts(self) -> dict[State, int]:
        with self._lock:
            rows = self._conn.execute("SELECT state, count(*) FROM photos GROUP BY state")
            found = {State(s): n for s, n in rows}
        return {s: found.get(s, 0) for s in State}

    def failure_counts(self) -> dict[str, int]:
        """Failed photos by kind: {TRANSIENT: n, PERMANENT: m}."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT coalesce(failure, ?), count(*) FROM photos WHERE state = 'failed' "
                "GROUP BY 1",
                (PERMANENT,),
            ).fetchall()
        found = dict(rows)
        return {TRANSIENT: found.get(TRANSIENT, 0), PERMANENT: found.get(PERMANENT, 0)}

    def last_failures(self, limit: int = 10) -> list[PhotoRow]:
        return self._many(
            f"SELECT {COLUMNS} FROM photos WHERE state = 'failed' ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )

    def embeddings_count(self, model: str) -> int:
        with self._lock:
            return self._conn.execute(
                "SELECT count(*) FROM photos WHERE model = ? AND embedding IS NOT NULL",
                (model,),
            ).fetchone()[0]

    def embeddings(self, model: str) -> tuple[list[int], bytes, int]:
        """All stored embeddings of ``model``: (ids, concatenated fp16 bytes, row count)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, embedding FROM photos WHERE model = ? AND embedding IS NOT NULL "
                "AND state != 'failed' ORDER BY id",
                (model,),
            ).fetchall()
        return [r[0] for r in rows], b"".join(r[1] for r in rows), len(rows)

    def full_text(
        self,
        match: str,
        limit: int,
        *,
        exclude: str | None = None,
        where: str = "1",
        params: tuple = (),
        ranked: int | None = None,  # default TEXT_RANKED
    ) -> list[int]:
        """Described photos whose text matches an FTS5 expression and not ``exclude``,
        within the photos condition ``where``, best first (bm25; keywords weigh most).

        Only the ``ranked`` most recently indexed matches are ranked: finding the newest
        2,000 matches of a word in a million photos takes ~2 ms, but bm25 reads each
        match's column sizes (~10 µs a match on a busy 2-core box: a word in a tenth of a
        million photos took ~1 s); with fewer matches than that the ranking is exact."""
        sql = f"SELECT photos_fts.rowid AS id, bm25(photos_fts, {BM25_WEIGHTS}) AS score "
        sql += "FROM photos_fts "
        if where != "1":  # only filters need the photos table
            sql += "JOIN photos ON photos.id = photos_fts.rowid "
        sql += f"WHERE photos_fts MATCH ? AND ({where})"
        args: tuple = (match, *params)
        if exclude:
            sql += (
                " AND photos_fts.rowid NOT IN "
                "(SELECT rowid FROM photos_fts WHERE photos_fts MATCH ?)"
            )
            args += (exclude,)
        sql += " ORDER BY photos_fts.rowid DESC LIMIT ?"
        sql = f"SELECT id FROM ({sql}) ORDER BY score, id DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*args, ranked or TEXT_RANKED, limit)).fetchall()
        return [r[0] for r in rows]

    def text_exists(self, match: str) -> bool:
        """Whether any photo's text matches an FTS5 expression."""
        sql = "SELECT 1 FROM photos_fts WHERE photos_fts MATCH ? LIMIT 1"
        with self._lock:
            return self._conn.execute(sql, (match,)).fetchone() is not None

    def matching(self, match: str, ids: Iterable[int]) -> set[int]:
        """Those of ``ids`` whose text matches an FTS5 expression."""
        ids = list(ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        sql = f"SELECT rowid FROM photos_fts WHERE photos_fts MATCH ? AND rowid IN ({marks})"
        with self._lock:
            return {r[0] for r in self._conn.execute(sql, (match, *ids)).fetchall()}

    def filtered_ids(self, where: str, params: tuple = ()) -> list[int]:
        """Ids of the described photos meeting the photos condition ``where``."""
        sql = f"SELECT id FROM photos WHERE state IN ({SEARCHABLE}) AND ({where}) ORDER BY id"
        with self._lock:
            return [r[0] for r in self._conn.execute(sql, params).fetchall()]

    def newest(
        self, limit: int, *, exclude: str | None = None, where: str = "1", params: tuple = ()
    ) -> list[int]:
        """Described photos meeting ``where`` (and not matching ``exclude``), newest taken
        first: what a search of filters alone lists."""
        sql = f"SELECT id FROM photos WHERE state IN ({SEARCHABLE}) AND ({where})"
        args: tuple = params
        if exclude:
            sql += " AND id NOT IN (SELECT rowid FROM photos_fts WHERE photos_fts MATCH ?)"
            args += (exclude,)
        sql += " ORDER BY date_taken IS NULL, date_taken DESC, id DESC LIMIT ?"
        with self._lock:
            return [r[0] for r in self._conn.execute(sql, (*args, limit)).fetchall()]

    def search_generation(self) -> int:
        """Bumped by every change that can add, drop or change a photo's embedding."""
        with self._lock:
            return self._conn.execute("SELECT n FROM search_generation").fetchone()[0]

    def changed_since(self, updated_at: float) -> list[sqlite3.Row]:
        """(id, model, embedding, state, updated_at) of the photos changed after
        ``updated_at``, for keeping a copy of the embeddings in step."""
        with self._lock:
            return self._conn.execute(
                "SELECT id, model, embedding, state, updated_at FROM photos "
                "WHERE updated_at > ? ORDER BY id",
                (updated_at,),
            ).fetchall()

    def removed_since(self, seq: int) -> tuple[list[int], int]:
        """Ids of the photos deleted after ``seq`` in the removal log, and the last seq."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, id FROM search_removed WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        return [r[1] for r in rows], (rows[-1][0] if rows else seq)

    def searchable_embeddings(self, model: str) -> int:
        """How many photos search can find by ``model``'s embeddings (an index count)."""
        with self._lock:
            return self._conn.execute(
                f"SELECT count(*) FROM photos WHERE model = ? AND embedding IS NOT NULL "
                f"AND state IN ({SEARCHABLE})",
                (model,),
            ).fetchone()[0]

    def embeddings_by_id(self, ids: Iterable[int]) -> dict[int, bytes]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        sql = f"SELECT id, embedding FROM photos WHERE id IN ({marks}) AND embedding IS NOT NULL"
        with self._lock:
            return {r[0]: bytes(r[1]) for r in self._conn.execute(sql, tuple(ids)).fetchall()}

    def all_embeddings(self, model: str, batch: int = 50_000) -> Iterator[list[sqlite3.Row]]:
        """Every searchable (id, embedding, updated_at) of ``model``, in id order, in batches."""
        after = 0
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT id, embedding, updated_at FROM photos WHERE model = ? "
                    f"AND embedding IS NOT NULL AND state IN ({SEARCHABLE}) AND id > ? "
                    "ORDER BY id LIMIT ?",
                    (model, after, batch),
                ).fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    # -- writes --------------------------------------------------------------
    def save_tagged(
        self,
        path: Path,
        stat: FileStat | None,
        content_hash: str,
        tagging: Tagging,
        caption: str | None,
        facts: PhotoFacts | None = None,
        keywords_text: str | None = None,
    ) -> None:
        """``keywords_text``: what full-text search finds the keywords by (their names in
        every language, from keywording.Wording.search_text); default: the labels."""
        state = State.DONE if caption else State.NEEDS_CAPTION
        labels = keywords_text or " ".join(k.label for k in tagging.keywords)
        now = time.time()
        with self._write() as c:
            c.execute(
                """INSERT INTO photos (path, size, mtime_ns, content_hash, state, model,
                       keywords, keywords_text, caption, embedding, error, attempts,
                       created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, ?, ?)
                   ON CONFLICT(path) DO UPDATE SET size=excluded.size,
                       mtime_ns=excluded.mtime_ns, content_hash=excluded.content_hash,
                       state=excluded.state, model=excluded.model, keywords=excluded.keywords,
                       keywords_text=excluded.keywords_text, caption=excluded.caption,
                       embedding=excluded.embedding, error=NULL, attempts=0,
                       failure=NULL, updated_at=excluded.updated_at""",
                (
                    to_db(path),
                    *_stat_cols(stat),
                    content_hash,
                    state.value,
                    tagging.model,
                    keywords_json(tagging.keywords),
                    labels,
                    caption,
                    tagging.embedding or None,  # b"" or None: no embedding (yet)
                    now,
                    now,
                ),
            )
            if facts is not None:
                c.execute(
                    "UPDATE photos SET date_taken = ?, camera = ?, place = ? WHERE path = ?",
                    (facts.date_taken, facts.camera, facts.place, to_db(path)),
                )
            fulltext.refresh(c, "path = ?", (to_db(path),))

    def save_caption(self, row_id: int, caption: str, stat: FileStat | None) -> None:
        with self._write() as c:
            c.execute(
                "UPDATE photos SET caption = ?, state = 'done', error = NULL, "
                "size = coalesce(?, size), mtime_ns = coalesce(?, mtime_ns), updated_at = ? "
                "WHERE id = ?",
                (caption, *_stat_cols(stat), time.time(), row_id),
            )
            fulltext.refresh(c, "id = ?", (row_id,))

    def note_caption_problem(self, row_id: int, reason: str) -> None:
        with self._write() as c:
            c.execute(
                "UPDATE photos SET error = ?, attempts = attempts + 1, updated_at = ? WHERE id = ?",
                (reason, time.time(), row_id),
            )

    def save_failure(
        self, path: Path, stat: FileStat | None, reason: str, *, transient: bool = False
    ) -> None:
        """Record that ``path`` failed; ``attempts`` counts the failures in a row (the
        daemon's wait before trying a transient failure again doubles with it)."""
        now = time.time()
        kind = TRANSIENT if transient else PERMANENT
        with self._write() as c:
            c.execute(
                """INSERT INTO photos (path, size, mtime_ns, state, error, attempts,
                       created_at, updated_at, failure)
                   VALUES (?, ?, ?, 'failed', ?, 1, ?, ?, ?)
                   ON CONFLICT(path) DO UPDATE SET size=excluded.size,
                       mtime_ns=excluded.mtime_ns, state='failed', error=excluded.error,
                       attempts=CASE WHEN photos.state = 'failed' THEN photos.attempts + 1
                                ELSE 1 END,
                       updated_at=excluded.updated_at, failure=excluded.failure""",
                (to_db(path), *_stat_cols(stat), reason, now, now, kind),
            )
            fulltext.refresh(c, "path = ?", (to_db(path),))

    def mark_undone(self, path: Path, stat: FileStat | None) -> None:
        """photoscribe's metadata was taken out of the photo: forget keywords and caption,
        keep the row so that the photo is not tagged again unless it changes (or --force)."""
        with self._write() as c:
            c.execute(
                "UPDATE photos SET state = 'undone', keywords = '[]', keywords_text = '', "
                "caption = NULL, embedding = NULL, error = NULL, failure = NULL, "
                "size = coalesce(?, size), "
                "mtime_ns = coalesce(?, mtime_ns), updated_at = ? WHERE path = ?",
                (*_stat_cols(stat), time.time(), to_db(path)),
            )
            fulltext.refresh(c, "path = ?", (to_db(path),))

    def touch(self, row_id: int, stat: FileStat) -> None:
        """The file's bytes changed but not its pixels (e.g. another tool edited tags)."""
        with self._write() as c:
            c.execute(
                "UPDATE photos SET size = ?, mtime_ns = ?, updated_at = ? WHERE id = ?",
                (*_stat_cols(stat), time.time(), row_id),
            )

    def move(self, row_id: int, new_path: Path, stat: FileStat) -> None:
        with self._write() as c:
            old = c.execute("SELECT path FROM photos WHERE id = ?", (row_id,)).fetchone()
            if old is not None:
                c.execute(
                    "UPDATE journal SET path = ?, target = replace(target, ?, ?) WHERE path = ?",
                    (to_db(new_path), old[0], to_db(new_path), old[0]),
                )
            c.execute("DELETE FROM photos WHERE path = ? AND id != ?", (to_db(new_path), row_id))
            c.execute(
                "UPDATE photos SET path = ?, size = ?, mtime_ns = ?, updated_at = ? WHERE id = ?",
                (to_db(new_path), *_stat_cols(stat), time.time(), row_id),
            )
            fulltext.refresh(c, "id = ?", (row_id,))

    def save_facts(self, row_id: int, facts: PhotoFacts) -> None:
        """Date taken, camera and place of an indexed photo (e.g. a backfill)."""
        with self._write() as c:
            c.execute(
                "UPDATE photos SET date_taken = ?, camera = ?, place = ? WHERE id = ?",
                (facts.date_taken, facts.camera, facts.place, row_id),
            )
            fulltext.refresh(c, "id = ?", (row_id,))

    def missing_facts(self, after_id: int = 0, limit: int = 1000) -> list[PhotoRow]:
        """Described photos after ``after_id`` with no date taken, camera or place (for a
        backfill; page on by the last id)."""
        return self._many(
            f"SELECT {COLUMNS} FROM photos WHERE id > ? AND state IN ({SEARCHABLE}) "
            "AND date_taken IS NULL AND camera IS NULL AND place IS NULL ORDER BY id LIMIT ?",
            (after_id, limit),
        )


def _stat_cols(stat: FileStat | None) -> tuple[int | None, int | None]:
    return (stat.size, stat.mtime_ns) if stat else (None, None)
