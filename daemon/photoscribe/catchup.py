"""Catch-up: compare folders with the index and queue what changed while nobody watched.

Cheap: one walk, one stat per file and one index query per folder; no file is read.
Photos that are new, changed, or tagged by another model are queued; indexed photos
whose files are gone are queued as "gone" (after the new ones, so that a photo that
was moved is found at its new place by its content hash, not deleted and re-tagged).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from photoscribe.config import ScanConfig
from photoscribe.errors import ConfigError
from photoscribe.fsutil import display, file_stat
from photoscribe.records import FileStat, State
from photoscribe.scanner import find_photos
from photoscribe.store import PhotoRow, PhotoStore
from photoscribe.store.queue import GONE, PHOTO

log = logging.getLogger(__name__)

Item = tuple[Path, str, FileStat | None]


def changes(
    roots: Iterable[Path],
    store: PhotoStore,
    scan: ScanConfig,
    model_id: str,
    stop: threading.Event | None = None,
    *,
    within: Iterable[Path] | None = None,
) -> tuple[list[Item], list[Item]]:
    """(photos to process, photos gone) under ``roots``; ``stop`` ends it early (SIGTERM),
    with what was found so far (the next start scans again). ``within``: the watched
    folders, which a followed symbolic link may point into (default: ``roots``)."""
    roots = list(roots)
    within = roots if within is None else list(within)
    todo: list[Item] = []
    gone: list[Item] = []
    for root in roots:
        if stop is not None and stop.is_set():
            break
        rows = {r.path: r for r in store.rows_under(root)} if root.is_dir() else {}
        found = _new_or_changed(root, rows, scan, model_id, stop, within)
        todo.extend(found)
        if stop is None or not stop.is_set():  # stopping: the rest waits for the next start
            gone.extend((p, GONE, None) for p in rows if not os.path.lexists(p))
    return todo, gone


def _new_or_changed(
    root: Path,
    rows: dict[Path, PhotoRow],
    scan: ScanConfig,
    model_id: str,
    stop: threading.Event | None,
    within: list[Path],
) -> list[Item]:
    try:
        paths = find_photos([root], scan, stop, within=within)
    except ConfigError as exc:  # the folder went away
        log.warning("cannot scan %s: %s", display(root), exc)
        return []
    out: list[Item] = []
    for path in paths:
        try:
            stat = file_stat(path)
        except OSError:
            continue
        if _needs_work(rows.get(path), stat, model_id):
            out.append((path, PHOTO, stat))
    return out


def _needs_work(row: PhotoRow | None, stat: FileStat, model_id: str) -> bool:
    if row is None or not row.same_file(stat):
        return True
    return row.state not in (State.FAILED, State.UNDONE) and row.model != model_id
