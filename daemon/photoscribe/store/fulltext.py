"""The full-text table's row for a photo: what each column holds, segmented for CJK.

photos_fts is a plain FTS5 table (rowid = photos.id) filled from Python, because this
Python cannot load a tokenizer extension into SQLite: the text is segmented here
(``photoscribe.segment``) and unicode61 then splits it on the spaces.

Columns: caption, keywords (every name the row holds for its keywords), names (folder and
file names), camera, place.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

from photoscribe.segment import index_text

FTS_COLUMNS = ("caption", "keywords", "names", "camera", "place")
SOURCE = "id, path, state, caption, keywords_text, camera, place"  # photos columns read here
_SEPARATORS = re.compile(r"[/\\_.\-]+")


def keywords_text(row: sqlite3.Row) -> str:
    """The keywords' searchable text. Hook: photos.keywords_text holds every display name
    of the photo's keywords (zh and en once keywords are vocabulary concepts); whatever
    is added there is indexed in every language with no change here."""
    return row["keywords_text"] or ""


def names_text(db_path: str) -> str:
    """Folder and file names, split on separators: ``/p/海边 2024/IMG_1.jpg`` → words."""
    return _SEPARATORS.sub(" ", db_path).strip()


def document(row: sqlite3.Row) -> tuple[str, ...]:
    """The segmented text of each FTS column for one photos row."""
    raw = (row["caption"], keywords_text(row), names_text(row["path"]), row["camera"], row["place"])
    return tuple(index_text(text) for text in raw)


SEARCHABLE = ("done", "needs_caption")  # only photos in these states are in photos_fts


def refresh(conn: sqlite3.Connection, where: str, params: Iterable = ()) -> int:
    """Replace the full-text rows of the photos selected by ``where`` (inside the caller's
    transaction); photos search does not list (failed, undone) get none, so a text
    search needs no look at the photos table. Returns how many were (re)indexed."""
    rows = conn.execute(f"SELECT {SOURCE} FROM photos WHERE {where}", tuple(params)).fetchall()
    marks = ", ".join("?" * (len(FTS_COLUMNS) + 1))
    for row in rows:
        conn.execute("DELETE FROM photos_fts WHERE rowid = ?", (row["id"],))
        if row["state"] not in SEARCHABLE:
            continue
        conn.execute(
            f"INSERT INTO photos_fts (rowid, {', '.join(FTS_COLUMNS)}) VALUES ({marks})",
            (row["id"], *document(row)),
        )
    return len(rows)
