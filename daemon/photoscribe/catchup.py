"""Catch-up: compare folders with the index and queue what changed while nobody watched.

Cheap: one walk, one stat per file and one index query per batch of files; no file is
read. Memory stays flat however big the tree: files are compared and handed on in
batches (``BATCH``), the indexed rows are paged through, never all loaded.
Photos that are new, changed, or tagged by another model are queued; indexed photos
whose files are gone are queued as "gone" (after the new ones, so that a photo that
was moved is found at its new place by its content hash, not deleted and re-tagged).
A watched folder that is not there (an unmounted drive or share: see volumes.py) is
skipped: its photos' rows are kept, not taken for deleted.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from photoscribe.config import ScanConfig
from photoscribe.errors import ConfigError
from photoscribe.fsutil import display, file_stat
from photoscribe.records import FileStat, State
from photoscribe.scanner import walk_photos
from photoscribe.store import PhotoStore
from photoscribe.store.paths import from_db, to_db
from photoscribe.store.queue import GONE, PHOTO
from photoscribe.volumes import Volumes

log = logging.getLogger(__name__)

Item = tuple[Path, str, FileStat | None]
Sink = Callable[[list[Item]], None]
BATCH = 500  # files compared per index query; rows read per page


class Indexed(NamedTuple):
    """What the catch-up needs of an index row."""

    size: int | None
    mtime_ns: int | None
    state: State
    model: str | None


@dataclass
class Result:
    todo: int = 0
    gone: int = 0
    unavailable: dict[Path, str] = field(default_factory=dict)  # skipped folder → why


def changes(
    roots: Iterable[Path],
    store: PhotoStore,
    scan: ScanConfig,
    model_id: str,
    stop: threading.Event | None = None,
    *,
    within: Iterable[Path] | None = None,
    volumes: Volumes | None = None,
) -> tuple[list[Item], list[Item]]:
    """(photos to process, photos gone) under ``roots`` as lists; see ``catch_up``."""
    todo: list[Item] = []
    gone: list[Item] = []
    catch_up(
        roots, store, scan, model_id, todo.extend, gone.extend, stop,
        within=within, volumes=volumes,
    )  # fmt: skip
    return todo, gone


def catch_up(
    roots: Iterable[Path],
    store: PhotoStore,
    scan: ScanConfig,
    model_id: str,
    on_todo: Sink,
    on_gone: Sink,
    stop: threading.Event | None = None,
    *,
    within: Iterable[Path] | None = None,
    volumes: Volumes | None = None,
) -> Result:
    """Hand the photos to process under ``roots`` to ``on_todo`` and the indexed photos
    gone to ``on_gone``, a batch at a time. ``stop`` ends it early (SIGTERM), with what
    was found so far (the next start scans again). ``within``: the watched folders, which
    a followed symbolic link may point into (default: ``roots``). ``volumes``: what the
    index remembers of the folders' file systems (default: read from ``store``)."""
    roots = list(roots)
    within = roots if within is None else list(within)
    volumes = volumes or Volumes(store)
    result = Result()
    for root in roots:
        if _stopped(stop):
            break
        # A rescan of a subfolder (after a folder move) is judged by its watched folder:
        # a subfolder that is gone was moved or deleted, not unmounted.
        watched = next((w for w in within if w == root or w in root.parents), root)
        why = volumes.absent(watched)
        if why is not None:
            log.info("not scanning %s: %s; its photos stay in the index", display(root), why)
            result.unavailable[watched] = why
            continue
        if os.path.isdir(root):
            result.todo += _new_or_changed(root, store, scan, model_id, stop, within, on_todo)
        if _stopped(stop):  # stopping: the rest waits for the next start
            break
        result.gone += _gone(root, store, volumes, on_gone, stop, within)
        if not _stopped(stop) and root == watched:  # only watched folders are remembered
            volumes.record(root)
    return result


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _new_or_changed(
    root: Path,
    store: PhotoStore,
    scan: ScanConfig,
    model_id: str,
    stop: threading.Event | None,
    within: list[Path],
    sink: Sink,
) -> int:
    count = 0
    try:
        for batch in _batches(walk_photos(root, scan, stop, within=within)):
            rows = _indexed(store, batch)
            found: list[Item] = []
            for path in batch:
                try:
                    stat = file_stat(path)
                except OSError:
                    continue
                if _needs_work(rows.get(to_db(path)), stat, model_id):
                    found.append((path, PHOTO, stat))
            if found:
                sink(found)
                count += len(found)
    except ConfigError as exc:  # the folder went away
        log.warning("cannot scan %s: %s", display(root), exc)
    return count


def _batches(paths: Iterator[Path]) -> Iterator[list[Path]]:
    while batch := list(itertools.islice(paths, BATCH)):
        yield batch


def _indexed(store: PhotoStore, paths: list[Path]) -> dict[str, Indexed]:
    marks = ",".join("?" * len(paths))
    rows = store.query(
        f"SELECT path, size, mtime_ns, state, model FROM photos WHERE path IN ({marks})",
        tuple(to_db(p) for p in paths),
    )
    return {r[0]: Indexed(r[1], r[2], State(r[3]), r[4]) for r in rows}


def _gone(
    root: Path,
    store: PhotoStore,
    volumes: Volumes,
    sink: Sink,
    stop: threading.Event | None,
    within: list[Path],
) -> int:
    """The indexed photos below ``root`` whose files are gone (paged through by path)."""
    prefix = to_db(root).rstrip("/") + "/"
    upper = prefix[:-1] + chr(ord("/") + 1)  # every text that starts with prefix is below
    last, count = prefix, 0
    while not _stopped(stop):
        page = store.query(
            "SELECT path FROM photos WHERE path > ? AND path < ? ORDER BY path LIMIT ?",
            (last, upper, BATCH),
        )
        if not page:
            break
        last = page[-1][0]
        missing = [from_db(t) for (t,) in page if not os.path.lexists(_fs_path(t))]
        gone = [(p, GONE, None) for p in missing if volumes.gone(p, within or [root])]
        if len(gone) < len(missing):
            log.info(
                "kept %d photos of %s in the index: their file system is not mounted",
                len(missing) - len(gone),
                display(root),
            )
        if gone:
            sink(gone)
            count += len(gone)
    return count


def _fs_path(text: str) -> str | Path:
    """The file system path of an index path text (the text itself for ASCII)."""
    return text if text.isascii() else from_db(text)


def _needs_work(row: Indexed | None, stat: FileStat, model_id: str) -> bool:
    if row is None or row.size != stat.size or row.mtime_ns != stat.mtime_ns:
        return True
    return row.state not in (State.FAILED, State.UNDONE) and row.model != model_id
