"""Date taken, camera and place of a photo, read from its own metadata, for search filters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from photoscribe.fsutil import display, read_photo
from photoscribe.store import PhotoStore
from photoscribe.store.photos import PhotoFacts

log = logging.getLogger(__name__)


def facts_from(values) -> PhotoFacts:
    """exiv2 key → value mapping → the facts search keeps (the caption context's reading)."""
    from photoscribe.caption.context import context_from

    ctx = context_from(values)
    taken = ctx.taken.strftime("%Y-%m-%dT%H:%M") if ctx.taken else None
    return PhotoFacts(taken, ctx.camera, ctx.place)


def read_facts(path: Path) -> PhotoFacts | None:
    """The facts in the photo at ``path``; None when it cannot be read (never raises)."""
    from photoscribe.errors import PhotoscribeError

    try:
        data = read_photo(path)
    except (OSError, PhotoscribeError) as exc:  # e.g. no longer a regular file
        log.debug("no date/camera for search: %s: %s", display(path), exc)
        return None
    return facts_in(data, display(path))


def facts_in(data: bytes, where: str) -> PhotoFacts | None:
    """The facts in a photo's bytes ``data`` (read from ``where``); None when its
    metadata cannot be read (never raises)."""
    from photoscribe.errors import PhotoscribeError
    from photoscribe.metadata import backend

    try:
        with backend.opened(data, "the photo") as photo:
            return facts_from(photo.snapshot().values)
    except PhotoscribeError as exc:
        log.debug("no date/camera for search: %s: %s", where, exc)
        return None


def backfill(
    store: PhotoStore, read: Callable[[Path], PhotoFacts | None] = read_facts, batch: int = 500
) -> int:
    """Date taken, camera and place for indexed photos that have none recorded (photos
    indexed before 0005_search). Returns how many photos got facts."""
    done, after = 0, 0
    while rows := store.missing_facts(after, batch):
        for row in rows:
            facts = read(row.path)
            if facts is not None and (facts.date_taken or facts.camera or facts.place):
                store.save_facts(row.id, facts)
                done += 1
        after = rows[-1].id
    return done
