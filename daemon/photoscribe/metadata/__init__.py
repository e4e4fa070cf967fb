"""Metadata adapter: the only place photoscribe talks to pyexiv2.

- ``fields``: the table of logical fields → per-schema tags (XMP, IPTC, EXIF).
- ``text``, ``keywords``, ``merge``: what a photo holds and what to change (pure functions).
- ``backend``: pyexiv2 in memory, its errors turned into MetadataError.
- ``photoshop``: keeps a Photoshop IPTCDigest current (pure byte patching).
- ``webp``: a WebP's container after exiv2 (XMP chunk, simple layout; pure byte patching).
- ``writer``: the hash checks and the atomic replacement.
- ``sidecar``: XMP sidecars (RAW, HEIF, read-only photos, or by choice) and the choice.
"""

from __future__ import annotations

from photoscribe.metadata.merge import Existing
from photoscribe.metadata.sidecar import write_photo
from photoscribe.metadata.text import sanitize_keyword
from photoscribe.metadata.writer import read_existing, write_annotation

__all__ = [
    "Existing",
    "read_existing",
    "sanitize_keyword",
    "write_annotation",
    "write_photo",
]
