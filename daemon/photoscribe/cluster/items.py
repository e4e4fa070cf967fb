"""One photo on its way through the cluster's stages, and how it travels between them."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from photoscribe.records import FileStat, Tagging

COLUMN = "item"  # the one column of every Ray Data batch: a pickled Item per row


@dataclass(frozen=True)
class Item:
    """What is known about one photo so far. ``kind`` says which stage it is ready for:
    ``path`` (to load), ``loaded`` (to tag), ``tagged`` (to caption, then write),
    ``known`` (same pixels as an indexed photo: the driver reuses its row),
    ``written`` (done: the driver indexes it) or ``failed``."""

    path: Path
    kind: str = "path"
    stat: FileStat | None = None  # as the node that loaded it saw the file
    content_hash: str | None = None
    pixels: Any = None  # uint8 model-sized pixels (worktasks.LoadResult.pixels)
    context: str | None = None  # the caption prompt's facts from the photo's metadata
    recorded: Any = None  # metadata.recorded.Recorded: the file holds this write already
    tagging: Tagging | None = None
    caption: str | None = None
    note: str | None = None  # why there is no caption
    reason: str | None = None  # failed: why
    transient: bool = False  # failed, but may pass by itself
    unseen: bool = False  # failed: the node found no such file (its mount may be missing)
    result: Any = None  # writing.FileResult of the metadata write
    facts: Any = None  # store.photos.PhotoFacts (date, camera, place) for search
    nodes: dict[str, str] = field(default_factory=dict)  # stage → node that ran it

    def failed(self, reason: str, transient: bool = False) -> Item:
        return replace(self, kind="failed", reason=reason, transient=transient, pixels=None)

    def at(self, stage: str, node: str) -> Item:
        return replace(self, nodes={**self.nodes, stage: node})


def pack(item: Item) -> bytes:
    return pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(blob: bytes) -> Item:
    return pickle.loads(blob)  # our own stages' rows, never bytes from a file


def unpack_batch(batch: dict[str, Any]) -> list[Item]:
    return [unpack(bytes(b)) for b in batch[COLUMN]]


def pack_batch(items: list[Item]) -> dict[str, Any]:
    import numpy as np

    blobs = np.empty(len(items), dtype=object)
    blobs[:] = [pack(item) for item in items]
    return {COLUMN: blobs}
