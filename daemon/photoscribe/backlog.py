"""Captions for photos whose keywords are written but whose caption is still missing."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from photoscribe.captioning import CaptionStage, Done
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
) -> None:
    """Ask for each row's caption (bounded concurrency); the writer puts it into the photo.

    Stops asking as soon as the LLM is unavailable; those rows wait for a later run.
    """
    if not rows or not captions.available:
        return
    log.info("writing captions for %d photos that have keywords only", len(rows))
    progress.start(len(rows), "captions")
    for row in rows:
        if not captions.submit(row.keywords, _on_caption(row, writer, store, progress)):
            log.warning("the LLM is unavailable; the remaining captions wait for the next run")
            return


def _on_caption(row: PhotoRow, writer: Writer, store: PhotoStore, progress: Progress) -> Done:
    def done(caption: str | None, reason: str | None) -> None:
        if caption is None:
            store.note_caption_problem(row.id, reason or "no caption")
            progress.advance("waiting", row.path)
            return
        tagging = Tagging(row.keywords, b"", row.model or "")
        writer.put(CaptionJob(row.id, row.path, row.content_hash or "", tagging, caption))

    return done
