"""The SQLite index: photos, their state, keywords, captions and embeddings."""

from __future__ import annotations

from pathlib import Path

from photoscribe.errors import NoIndexError
from photoscribe.store.db import connect
from photoscribe.store.photos import PhotoRow, PhotoStore

__all__ = ["PhotoRow", "PhotoStore", "open_store"]


def open_store(path: Path, *, readonly: bool = False) -> PhotoStore:
    if readonly and not path.exists():
        raise NoIndexError(f"there is no index at {path} yet; run `photoscribe scan FOLDER` first")
    return PhotoStore(connect(path, readonly=readonly), path)
