"""The journal of metadata writes: what each key held before photoscribe wrote it, and after."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photoscribe.store.paths import from_db, to_db
from photoscribe.store.photos import PhotoStore

Change = tuple[Any, Any]  # (value before, value after); None = the tag was absent


@dataclass(frozen=True)
class Entry:
    id: int
    path: Path
    target: Path
    changes: dict[str, Change]
    written_at: float


class Journal:
    def __init__(self, store: PhotoStore) -> None:
        self.store = store

    def record(self, path: Path, target: Path, changes: dict[str, Change]) -> None:
        """Record a write about to replace ``target``. It is recorded before the file is
        replaced, so a kill in between leaves an entry for a write that never landed; the
        next write of the same file finds the file still holding every value from before
        that entry and takes the entry's place (one entry per write that happened)."""
        if not changes:
            return
        text = json.dumps(changes, ensure_ascii=False)
        new = json.loads(text)  # the shapes stored entries come back in
        with self.store.transaction() as c:
            rows = c.execute(
                "SELECT id, changes FROM journal WHERE path = ? AND target = ? "
                "AND undone_at IS NULL",
                (to_db(path), to_db(target)),
            ).fetchall()
            stale = [(r[0],) for r in rows if _never_landed(json.loads(r[1]), new)]
            c.executemany("DELETE FROM journal WHERE id = ?", stale)
            c.execute(
                "INSERT INTO journal (path, target, changes, written_at) VALUES (?, ?, ?, ?)",
                (to_db(path), to_db(target), text, time.time()),
            )

    def follow(self, path: Path, content_hash: str) -> int:
        """The photo at ``path`` was adopted from the record in its file: it is a photo
        photoscribe wrote under another name whose index row was dropped before its new
        name was looked at (a folder's delete handled before its new place was scanned).
        Its writes, still under an old path that is neither indexed nor on disk, and with
        ``content_hash`` as what they wrote, move to ``path`` so that undo finds them.
        Returns how many entries moved."""
        new = to_db(path)
        with self.store.transaction() as c:
            rows = c.execute(
                "SELECT DISTINCT path FROM journal WHERE undone_at IS NULL AND path != ? "
                "AND instr(changes, ?) > 0 AND path NOT IN (SELECT path FROM photos)",
                (new, content_hash),
            ).fetchall()
            old = [r[0] for r in rows if not os.path.lexists(from_db(r[0]))]
            moved = 0
            for stale in old:
                moved += c.execute(
                    "UPDATE journal SET path = ?, target = replace(target, ?, ?) WHERE path = ?",
                    (new, stale, new, stale),
                ).rowcount
        return moved

    def pending(self, path: Path) -> list[Entry]:
        """Writes to ``path`` not undone yet, newest first."""
        rows = self.store.query(
            "SELECT id, path, target, changes, written_at FROM journal "
            "WHERE path = ? AND undone_at IS NULL ORDER BY id DESC",
            (to_db(path),),
        )
        return [_entry(r) for r in rows]

    def paths(self, under: Iterable[Path] = ()) -> list[Path]:
        """Photos with writes not undone yet (below the folders ``under``, or all)."""
        rows = self.store.query(
            "SELECT DISTINCT path FROM journal WHERE undone_at IS NULL ORDER BY path"
        )
        found = [from_db(r[0]) for r in rows]
        roots = [r.absolute() for r in under]
        if not roots:
            return found
        return [p for p in found if any(p == r or r in p.parents for r in roots)]

    def mark_undone(self, ids: Iterable[int]) -> None:
        now = time.time()
        with self.store.transaction() as c:
            c.executemany("UPDATE journal SET undone_at = ? WHERE id = ?", [(now, i) for i in ids])


def _never_landed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """An earlier entry whose every key still holds the value from before it: the file
    never got that write (or someone put every value back, which undo would do too)."""
    return bool(old) and all(key in new and new[key][0] == change[0] for key, change in old.items())


def _entry(r: Any) -> Entry:
    changes = {k: (v[0], v[1]) for k, v in json.loads(r[3]).items()}
    return Entry(r[0], from_db(r[1]), from_db(r[2]), changes, r[4])
