"""Metadata adapter: the only place photoscribe talks to pyexiv2.

- ``fields``: the table of logical fields → per-schema tags (XMP, IPTC, EXIF).
- ``merge``: what a photo holds and what to change (pure functions).
- ``backend``: pyexiv2 in memory, its errors turned into MetadataError.
- ``writer``: the hash checks and the atomic replacement.
"""

from __future__ import annotations

from photoscribe.metadata.merge import Existing, sanitize_keyword
from photoscribe.metadata.writer import read_existing, write_annotation

__all__ = ["Existing", "read_existing", "sanitize_keyword", "write_annotation"]
