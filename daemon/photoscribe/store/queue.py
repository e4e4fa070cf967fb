"""The daemon's tables: the persistent work queue and the state it publishes.

A queue row is taken with a lease (its ``due`` moved far ahead) and deleted only when
its photo is written and indexed, matching the row's ``seq``: an event that arrives
while the photo is being processed bumps ``seq``, so that completion keeps the row
and the photo is looked at again. At start every lease is released: a row taken by a
daemon that was killed is simply taken again.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photoscribe.records import FileStat
from photoscribe.store.paths import from_db, to_db
from photoscribe.store.photos import PhotoStore

LEASED = 1e18  # a due time that never comes: taken, in progress
PHOTO = "photo"
GONE = "gone"


@dataclass(frozen=True)
class QueueItem:
    path: Path
    kind: str
    size: int | None
    mtime_ns: int | None
    seq: int

    def same_file(self, stat: FileStat) -> bool:
        return self.size == stat.size and self.mtime_ns == stat.mtime_ns


class WorkQueue:
    def __init__(self, store: PhotoStore) -> None:
        self.store = store
        self._seq = itertools.count(time.time_ns())  # unique and rising across restarts

    def add(self, items: Iterable[tuple[Path, str, FileStat | None]], *, delay: float = 0.0) -> int:
        """Queue (or re-queue) paths in one transaction; returns how many."""
        due = time.time() + delay
        rows = [
            (to_db(path), kind, due, *_stat_cols(stat), next(self._seq), due)
            for path, kind, stat in items
        ]
        if rows:
            with self.store.transaction() as c:
                c.executemany(
                    """INSERT INTO queue (path, kind, due, size, mtime_ns, seq, added_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(path) DO UPDATE SET kind = excluded.kind,
                           due = excluded.due, size = excluded.size,
                           mtime_ns = excluded.mtime_ns, seq = excluded.seq""",
                    rows,
                )
        return len(rows)

    def take(self, limit: int, *, kind: str | None = None) -> list[QueueItem]:
        """Lease up to ``limit`` due rows, earliest first."""
        with self.store.transaction() as c:
            found = c.execute(
                "SELECT path, kind, size, mtime_ns, seq FROM queue "
                "WHERE due <= ? AND kind = coalesce(?, kind) ORDER BY due, path LIMIT ?",
                (time.time(), kind, limit),
            ).fetchall()
            c.executemany(
                "UPDATE queue SET due = ? WHERE path = ?", [(LEASED, r[0]) for r in found]
            )
        return [QueueItem(from_db(r[0]), r[1], r[2], r[3], r[4]) for r in found]

    def done(self, path: Path, seq: int | None = None) -> None:
        """Remove a finished row, unless a newer event re-queued it meanwhile."""
        with self.store.transaction() as c:
            c.execute(
                "DELETE FROM queue WHERE path = ? AND seq = coalesce(?, seq)", (to_db(path), seq)
            )

    def later(self, item: QueueItem, delay: float, stat: FileStat | None) -> None:
        """Give a leased row back, due after ``delay`` (e.g. a file still being copied)."""
        with self.store.transaction() as c:
            c.execute(
                "UPDATE queue SET due = ?, size = coalesce(?, size), "
                "mtime_ns = coalesce(?, mtime_ns) WHERE path = ? AND seq = ?",
                (time.time() + delay, *_stat_cols(stat), to_db(item.path), item.seq),
            )

    def add_due_failures(self, first_wait: float, max_wait: float) -> int:
        """Queue the photos whose transient failure is due for another try: ``first_wait``
        seconds after the first failure, doubling with each failure in a row up to
        ``max_wait``. Photos already queued are left as they are. Returns how many."""
        now = time.time()
        with self.store.transaction() as c:
            return c.execute(
                """INSERT INTO queue (path, kind, due, size, mtime_ns, seq, added_at)
                   SELECT path, ?, ?, size, mtime_ns, ?, ? FROM photos
                   WHERE state = 'failed' AND failure = 'transient'
                     AND updated_at + min(?, ? * (1 << min(max(attempts, 1) - 1, 40))) <= ?
                     AND path NOT IN (SELECT path FROM queue)
                   ON CONFLICT(path) DO NOTHING""",
                (PHOTO, now, next(self._seq), now, max_wait, first_wait, now),
            ).rowcount

    def release_leases(self) -> int:
        """At start: rows a previous (killed) daemon had taken become due again."""
        with self.store.transaction() as c:
            return c.execute(
                "UPDATE queue SET due = ? WHERE due >= ?", (time.time(), LEASED)
            ).rowcount

    def due_count(self, kind: str = PHOTO) -> int:
        """Rows of ``kind`` that may be taken now."""
        rows = self.store.query(
            "SELECT count(*) FROM queue WHERE due <= ? AND kind = ?", (time.time(), kind)
        )
        return rows[0][0]

    def next_arrival(self, within: float, kind: str = PHOTO) -> float | None:
        """Seconds until the next row of ``kind`` that is not due yet falls due, if that
        is within ``within`` seconds; None if none does. A row whose file is as the index
        already knows it (the event of photoscribe's own write) does not count."""
        now = time.time()
        (due,) = self.store.query(
            """SELECT min(q.due) FROM queue q
               LEFT JOIN photos p
                 ON p.path = q.path AND p.size = q.size AND p.mtime_ns = q.mtime_ns
               WHERE q.kind = ? AND q.due > ? AND q.due <= ? AND p.path IS NULL""",
            (kind, now, now + within),
        )[0]
        return None if due is None else max(0.0, due - now)

    def depth(self) -> int:
        return self.store.query("SELECT count(*) FROM queue")[0][0]

    def seconds_to_next(self) -> float | None:
        """Seconds until the next row falls due (0 if one is due), None if none waits."""
        (due,) = self.store.query("SELECT min(due) FROM queue WHERE due < ?", (LEASED,))[0]
        return None if due is None else max(0.0, due - time.time())


def publish_state(store: PhotoStore, key: str, value: dict[str, Any]) -> None:
    with store.transaction() as c:
        c.execute(
            "INSERT INTO daemon_state (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (key, json.dumps(value, ensure_ascii=False), time.time()),
        )


def read_state(store: PhotoStore, key: str) -> tuple[dict[str, Any], float] | None:
    """A published value and its age in seconds; None if never published."""
    try:
        rows = store.query("SELECT value, updated_at FROM daemon_state WHERE key = ?", (key,))
    except sqlite3.OperationalError:  # an index from before the daemon (read-only: old schema)
        return None
    if not rows:
        return None
    return json.loads(rows[0][0]), max(0.0, time.time() - rows[0][1])


def queue_depth(store: PhotoStore) -> int | None:
    try:
        return store.query("SELECT count(*) FROM queue")[0][0]
    except sqlite3.OperationalError:
        return None


def _stat_cols(stat: FileStat | None) -> tuple[int | None, int | None]:
    return (stat.size, stat.mtime_ns) if stat else (None, None)
