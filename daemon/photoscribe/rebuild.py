"""`photoscribe index rebuild`: the index, rebuilt from what photoscribe wrote into the photos.

Every write records, in photoscribe's own XMP namespace (in the photo or its sidecar), the
model, the hash of the pixels, the keywords it added and the description it wrote. A lost
or damaged index therefore loses no work: each photo whose record still matches its pixels
comes back done (or waiting for its caption) without running CLIP or the LLM. Keyword
scores and image embeddings are not stored in photos: scores come back as 0 and
embeddings are computed again only on request (``--embeddings``), for CLIP search.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photoscribe.contenthash import photo_hash
from photoscribe.errors import PhotoError
from photoscribe.fsutil import display, file_stat, read_photo
from photoscribe.records import FileStat, Keyword, State, Tagging
from photoscribe.store import PhotoStore

log = logging.getLogger(__name__)

RESTORED, NO_RECORD, CHANGED, KEPT, FAILED = "restored", "no record", "changed", "kept", "failed"


@dataclass
class RebuildSummary:
    counts: dict[str, int] = field(default_factory=dict)
    captions: int = 0  # restored photos that came back with their caption
    embeddings: int = 0  # embeddings computed (--embeddings)
    failures: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def line(self) -> str:
        n = self.counts.get
        return (
            f"{sum(self.counts.values())} photos: {n(RESTORED, 0)} restored from their metadata "
            f"({self.captions} with a caption), {n(KEPT, 0)} already in the index, "
            f"{n(NO_RECORD, 0)} never tagged by photoscribe, {n(CHANGED, 0)} changed since "
            f"(the next scan tags them), {n(FAILED, 0)} unreadable"
        )


@dataclass(frozen=True)
class Found:
    """What one photo's own metadata says photoscribe wrote there."""

    stat: FileStat
    content_hash: str
    model: str
    keywords: tuple[str, ...]  # concept ids (older writes: the words photoscribe added)
    caption: str | None


def rebuild(
    store: PhotoStore,
    paths: Iterable[Path],
    advance: Callable[[str], None],
    search_text: Callable[[Sequence[str]], str] | None = None,
) -> RebuildSummary:
    """Index every photo among ``paths`` that carries photoscribe's record of its pixels.
    ``search_text``: keyword labels → their searchable names (keywording.Wording)."""
    summary = RebuildSummary()
    for path in paths:
        outcome = _restore(store, path, summary, search_text)
        summary.add(outcome)
        advance(outcome)
    return summary


def _restore(
    store: PhotoStore,
    path: Path,
    summary: RebuildSummary,
    search_text: Callable[[Sequence[str]], str] | None = None,
) -> str:
    try:
        found = read_record(path)
    except (PhotoError, OSError) as exc:
        reason = str(exc) if isinstance(exc, PhotoError) else (exc.strerror or str(exc))
        summary.failures.append((path, reason))
        return FAILED
    if isinstance(found, str):
        return found
    row = store.by_path(path)
    if row is not None and row.state is not State.FAILED and row.content_hash == found.content_hash:
        return KEPT  # the index already knows this photo as it is
    keywords = tuple(Keyword(word, 0.0) for word in found.keywords)
    tagging = Tagging(keywords, None, found.model)  # type: ignore[arg-type]  # no embedding
    text = search_text(found.keywords) if search_text else None
    store.save_tagged(
        path, found.stat, found.content_hash, tagging, found.caption, keywords_text=text
    )
    summary.captions += found.caption is not None
    return RESTORED


def read_record(path: Path) -> Found | str:
    """photoscribe's record in ``path`` if it matches its pixels; else NO_RECORD/CHANGED."""
    from photoscribe.metadata.recorded import read_recorded

    stat = file_stat(path)
    data = read_photo(path)
    digest = photo_hash(path, data)
    recorded = read_recorded(path, data)
    if recorded is None or (not recorded.added_keywords and not recorded.description):
        return NO_RECORD
    if recorded.content_hash != digest:
        return CHANGED
    # the concept ids when the photo records them (the index keeps ids), else the words
    keywords = recorded.concepts or recorded.added_keywords
    return Found(stat, digest, recorded.model, keywords, recorded.description)


def fill_embeddings(store: PhotoStore, tagger: Any, paths: Sequence[Path], batch: int) -> int:
    """Compute the CLIP embedding of every indexed photo among ``paths`` that lacks one and
    was tagged by ``tagger``'s model (keywords and captions are left as they are)."""
    from photoscribe.pipeline import image_source
    from photoscribe.vision import prepare

    encoder = tagger.encoder
    wanted = [r for r in map(store.by_path, paths) if _lacks_embedding(store, r, encoder)]
    done = 0
    for start in range(0, len(wanted), batch):
        rows = wanted[start : start + batch]
        tensors, kept = [], []
        for row in rows:
            try:
                data, raw = image_source(row.path, read_photo(row.path))
                tensors.append(prepare(data, encoder.preprocess(), encoder.input_size(), raw=raw))
                kept.append(row)
            except (PhotoError, OSError, ValueError) as exc:
                log.warning("no embedding for %s: %s", display(row.path), exc)
        for row, tagging in zip(kept, tagger.tag(tensors) if tensors else [], strict=True):
            store.save_embedding(row.id, tagging.embedding)
            done += 1
    return done


def _lacks_embedding(store: PhotoStore, row: Any, encoder: Any) -> bool:
    return (
        row is not None
        and row.state is not State.FAILED
        and row.model == encoder.model_id
        and not store.embedding_of(row.id)
    )
