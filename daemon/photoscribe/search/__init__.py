"""Search over the index: full-text in any language, CLIP similarity and filters."""

from __future__ import annotations

from photoscribe.search.core import Hit, SearchQuery, Vectors, fuse, search
from photoscribe.search.query import fts_expression

__all__ = ["Hit", "SearchQuery", "Vectors", "fts_expression", "fuse", "search"]
