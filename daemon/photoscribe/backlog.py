"""Captions for photos whose keywords are written but whose caption is still missing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from photoscribe.captioning import CaptionStage, Done
from photoscribe.errors import PhotoError
from photoscribe.fsutil import read_photo
from photoscribe.progress import Progress
from photoscribe.records import Tagging
from photoscribe.store import PhotoRow, PhotoStore
from photoscribe.writing import CaptionJob, Writer

log = logging.getLogger(__name__)


def fill_captions(
    rows: Sequence[PhotoRow],
    captions: CaptionStage,
    writer: Writer,
    store: PhotoStore,
    progress: Progress,
    stop: threading.Event | None = None,
    context_of: Callable[[bytes], str | None] | None = None,
) -> int:
    """Ask for each row's caption (bounded concurrency); the writer puts it into the photo.

    Stops asking as soon as the LLM is unavailable (or ``stop`` is set); those rows wait
    for a later run. Returns how many captions were asked for.
    """
    if not rows or not captions.available:
        return 0
    log.info("writing captions for %d photos that have keywords only", len(rows))
    progress.start(len(rows), "captions")
    for asked, row in enumerate(rows):
        if stop is not None and stop.is_set():
            return asked
        written = _caption_in_file(row)
        if written is not None:  # written by a run killed before the index learned it
            tagging = Tagging(row.keywords, b"", row.model or "")
            job = CaptionJob(row.id, row.path, row.content_hash or "", tagging, written, True)
            writer.put(job)
            continue
        done = _on_caption(row, writer, store, progress)
        if not captions.submit(row.keywords, done, stop, _context(row, context_of)):
            log.warning("the LLM is unavailable; the remaining captions wait for the next run")
            return asked
    return len(rows)


def _caption_in_file(row: PhotoRow) -> str | None:
    """The caption photoscribe already wrote into this photo (same pixels, same model),
    if the index does not know it yet; None otherwise."""
    from photoscribe.metadata.recorded import read_recorded

    try:
        data = read_photo(row.path)
    except (OSError, PhotoError):
        return None
    recorded = read_recorded(row.path, data)
    if recorded is None or (recorded.content_hash, recorded.model) != (
        row.content_hash,
        row.model,
    ):
        return None
    return recorded.description


def _context(row: PhotoRow, context_of: Callable[[bytes], str | None] | None) -> str | None:
    if context_of is None:
        return None
    try:
        return context_of(read_photo(row.path))
    except (OSError, PhotoError):
        return None


def _on_caption(row: PhotoRow, writer: Writer, store: PhotoStore, progress: Progress) -> Done:
    def done(caption: str | None, reason: str | None) -> None:
        if caption is None:
            store.note_caption_problem(row.id, reason or "no caption")
            progress.advance("waiting", row.path)
            return
        tagging = Tagging(row.keywords, b"", row.model or "")
        writer.put(CaptionJob(row.id, row.path, row.content_hash or "", tagging, caption))

    return done
