"""Thumbnails and previews of indexed photos: made once (EXIF-oriented WebP), kept on disk."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from photoscribe.errors import PhotoError
from photoscribe.formats import is_raw
from photoscribe.fsutil import read_photo
from photoscribe.store.photos import PhotoRow

SIZES = {"small": 256, "large": 1280}  # long side in pixels
QUALITY = {"small": 75, "large": 82}


class Thumbnails:
    """``cache/thumbs/ab/<content hash>-<px>.webp``: the same pixels share a thumbnail, and
    a photo whose pixels change gets a new one (its content hash changes)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_for(self, row: PhotoRow, size: str) -> Path:
        key = row.content_hash or hashlib.sha256(os.fsencode(row.path)).hexdigest()
        return self.folder / key[:2] / f"{key}-{SIZES[size]}.webp"

    def get(self, row: PhotoRow, size: str) -> Path:
        """The cached file, made now if missing. Raises PhotoError for an unreadable photo."""
        target = self.path_for(row, size)
        if not target.exists():
            self._make(row, size, target)
        return target

    def _make(self, row: PhotoRow, size: str, target: Path) -> None:
        from photoscribe.vision.loader import decode

        px = SIZES[size]
        try:
            data = read_photo(row.path)
        except OSError as exc:
            raise PhotoError(f"cannot read the photo: {exc.strerror or exc}") from exc
        image = decode(data, px, raw=is_raw(row.path))
        image.thumbnail((px, px))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".thumb-", suffix=".webp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                image.save(f, "WEBP", quality=QUALITY[size], method=4)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
