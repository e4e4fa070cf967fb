"""What photoscribe recorded in a photo (or its sidecar) that it wrote there.

A write is recorded in photoscribe's own XMP namespace: the model, the content hash of
the pixels, the keywords and the description it added. A photo whose record names the
same pixels and model was already tagged by photoscribe, e.g. by a run killed after the
file was replaced but before the index learned it: the index adopts what the file says
instead of tagging and writing the photo a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from photoscribe.errors import MetadataError
from photoscribe.formats import sidecar_path
from photoscribe.fsutil import display
from photoscribe.metadata import backend
from photoscribe.metadata.fields import NS_URI, tag
from photoscribe.metadata.merge import existing_from

_MARK = NS_URI.encode()  # present in the bytes of any packet photoscribe wrote into


@dataclass(frozen=True)
class Recorded:
    model: str
    content_hash: str
    keywords: tuple[str, ...]  # every flat keyword the file holds (the user's and ours)
    added_keywords: tuple[str, ...]  # those photoscribe recorded that it added
    description: str | None  # the description photoscribe recorded that it wrote
    concepts: tuple[str, ...] = ()  # the concept ids behind added_keywords (any language)


def read_recorded(path: Path, data: bytes) -> Recorded | None:
    """photoscribe's record in the photo ``data`` (read from ``path``), else in its
    sidecar ``NAME.EXT.xmp``; None when neither holds one. Never raises for an
    unreadable file: no record is then the answer (the photo is processed as usual)."""
    if _MARK in data:
        found = _from_bytes(data, display(path), sidecar=False)
        if found is not None:
            return found
    side = sidecar_path(path)
    try:
        side_data = side.read_bytes()
    except OSError:
        return None
    if _MARK not in side_data:
        return None
    return _from_bytes(side_data, display(side), sidecar=True)


def _from_bytes(data: bytes, where: str, *, sidecar: bool) -> Recorded | None:
    try:
        with backend.opened(data, where, sidecar=sidecar) as doc:
            values = doc.snapshot().values
    except MetadataError:
        return None
    model = values.get(tag("model").key)
    digest = values.get(tag("content_hash").key)
    if not isinstance(model, str) or not isinstance(digest, str) or not model or not digest:
        return None
    existing = existing_from(values)
    return Recorded(
        model=model,
        content_hash=digest,
        keywords=existing.keywords,
        added_keywords=existing.ours,
        description=existing.our_description,
        concepts=existing.concepts,
    )
