"""The per-photo stages of a cluster scan: Ray Data callables built from a ``Config``.

Each stage is a class Ray Data runs as a pool of actors (its ``__init__`` builds what it
needs once, on the node) over batches of pickled ``Item``s. They call the same functions
a local scan does: ``worktasks.load_photo`` in a worker process with the ``scan:`` caps,
the same tagger, the same caption stage, the same atomic metadata writer with its
identity check; an error is the photo's failure, with the local scan's reason, never the
batch's.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from photoscribe.cluster.items import Item, pack_batch, unpack_batch
from photoscribe.config import Config
from photoscribe.errors import PhotoError
from photoscribe.fsutil import file_stat, stat_or_none

log = logging.getLogger(__name__)


def node_name() -> str:
    return socket.gethostname()


def worker_pool(config: Config) -> Any:
    """One worker process for this actor's file work, with the per-file caps of ``scan:``."""
    from photoscribe.builders import build_workers

    return build_workers(config, size=1)


class KnownHashes:
    """The content hashes the index holds for this model, 8 bytes each (80 MB for ten
    million photos), shared by every load actor of a node. A match is only a hint: the
    driver looks the photo up in the index before reusing a row."""

    def __init__(self, hashes: Iterable[str]) -> None:
        keys = np.fromiter((_key(h) for h in hashes), dtype=np.uint64)
        keys.sort()
        self.keys = keys

    def __contains__(self, content_hash: str) -> bool:
        key = np.uint64(_key(content_hash))
        i = int(np.searchsorted(self.keys, key))
        return i < len(self.keys) and self.keys[i] == key

    def __len__(self) -> int:
        return len(self.keys)


def _key(content_hash: str) -> int:
    digest = hashlib.blake2b(content_hash.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class LoadStage:
    """Read, hash, read the metadata and decode to model size (worktasks.load_photo)."""

    def __init__(self, config: Config, request: Any, known: KnownHashes | None) -> None:
        self.workers = worker_pool(config)
        self.request = request  # worktasks.LoadRequest, as the driver's pipeline makes it
        self.known = known  # None: --force, every photo is tagged
        self.node = node_name()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return pack_batch([self.load(item) for item in unpack_batch(batch)])

    def load(self, item: Item) -> Item:
        from photoscribe.pipeline import load_failure
        from photoscribe.workers import PHASE
        from photoscribe.worktasks import load_photo

        item, stat = item.at("load", self.node), None
        try:
            stat = file_stat(item.path)
            got = self.workers.call(
                "image decoder", load_photo, item.path, self.request, phase=PHASE
            )
        except (PhotoError, OSError) as exc:
            unseen = isinstance(exc, FileNotFoundError)  # the driver sees it: a mount missing?
            return replace(item, stat=stat, unseen=unseen).failed(*load_failure(exc))
        found = replace(item, stat=stat, content_hash=got.content_hash, context=got.context)
        if self.known is not None and got.content_hash in self.known:
            return replace(found, kind="known")
        return replace(found, kind="loaded", pixels=got.pixels, recorded=got.recorded)


class TagStage:
    """CLIP: keywords and the embedding for a batch (one model per actor, GPU or CPU)."""

    def __init__(self, config: Config) -> None:
        from photoscribe.builders import build_tagger

        self.tagger = build_tagger(config)
        self.tagger.start()
        self.preprocess = self.tagger.encoder.preprocess()
        self.node = node_name()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return pack_batch(self.tag(unpack_batch(batch)))

    def tag(self, items: list[Item]) -> list[Item]:
        from photoscribe.pipeline import load_failure, model_input

        ready, tensors = [], []
        for i, item in enumerate(items):
            if item.kind != "loaded":
                continue
            try:
                tensors.append(model_input(item.pixels, self.preprocess))
                ready.append(i)
            except PhotoError as exc:
                items[i] = item.failed(*load_failure(exc))
        if not tensors:
            return items
        try:
            taggings = self.tagger.tag(tensors)
        except Exception as exc:  # torch out of memory, ...: these photos, not the run
            log.exception("tagging a batch failed")
            for i in ready:
                items[i] = items[i].failed(f"tagging failed: {exc}", transient=True)
            return items
        for i, tagging in zip(ready, taggings, strict=True):
            items[i] = self._tagged(items[i].at("tag", self.node), tagging)
        return items

    @staticmethod
    def _tagged(item: Item, tagging: Any) -> Item:
        from photoscribe.pipeline import adopted_tagging

        caption = None
        if item.recorded is not None:  # the file holds this write already: not captioned
            tagging, caption = adopted_tagging(tagging, item.recorded), item.recorded.description
        return replace(item, kind="tagged", tagging=tagging, caption=caption, pixels=None)


class CaptionStep:
    """Captions for a batch, ``llm.concurrency`` requests at a time (the caption stage of
    a local scan, spread over ``llm.base_url``'s servers)."""

    def __init__(self, config: Config) -> None:
        from photoscribe.builders import build_captions

        self.stage = build_captions(config)
        self.pool = ThreadPoolExecutor(max(1, config.llm.concurrency), "caption")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        items = unpack_batch(batch)
        wanted = [i for i, item in enumerate(items) if self._wants(item)]
        answers = self.pool.map(self._ask, [items[i] for i in wanted])
        for i, (caption, reason) in zip(wanted, answers, strict=True):
            items[i] = replace(items[i], caption=caption, note=reason)
        return pack_batch(items)

    def _wants(self, item: Item) -> bool:
        """As a local scan's offer: no caption asked while the LLM is known to be down,
        for a photo without keywords, or with ``llm.caption_wait: 0`` (the backlog)."""
        if item.kind != "tagged" or item.recorded is not None or item.tagging is None:
            return False
        return self.stage.available and bool(item.tagging.keywords) and self.stage.wait > 0

    def _ask(self, item: Item) -> tuple[str | None, str | None]:
        assert item.tagging is not None
        return self.stage.ask(item.tagging.keywords, item.context)


class WriteStage:
    """The metadata write into each tagged photo, on a node that mounts its folder: the
    atomic writer in a worker process, its journal entry kept by the driver's node first."""

    def __init__(self, config: Config, keeper: Any) -> None:
        from photoscribe.builders import build_wording
        from photoscribe.writing import IsolatedFacts, IsolatedWrite

        workers = worker_pool(config)
        self.write_fn = None
        if config.metadata.write:
            from photoscribe.metadata import write_photo

            self.write_fn = IsolatedWrite(workers, write_photo)
        self.facts = IsolatedFacts(workers)
        self.wording = build_wording(config)
        self.metadata = config.metadata
        self.keeper = keeper  # a JournalKeeper actor on the driver's node
        self.node = node_name()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return pack_batch([self.write(item) for item in unpack_batch(batch)])

    def write(self, item: Item) -> Item:
        from photoscribe.writing import FileResult, write_safely

        if item.kind != "tagged":
            return item
        item = item.at("write", self.node)
        if item.recorded is not None:  # adopted: the index learns it, the file stays
            result = FileResult(stat_or_none(item.path))
        else:
            result = write_safely(lambda: self._write_file(item), item.path)
        facts = result.facts
        if facts is None and result.reason is None:
            facts = self.facts(item.path)
        return replace(item, kind="written", result=result, facts=facts)

    def _write_file(self, item: Item) -> Any:
        import ray

        from photoscribe.writing import write_tags, written

        assert item.tagging is not None and item.content_hash is not None

        def journal(target: Path, changes: dict) -> None:  # before the file is replaced
            ray.get(self.keeper.record.remote(item.path, target, changes))

        outcome = write_tags(
            self.write_fn,
            item.path,
            item.tagging,
            item.caption,
            item.content_hash,
            wording=self.wording,
            metadata=self.metadata,
            journal=journal,
        )
        return written(outcome, item.path)


class JournalKeeper:
    """The undo journal's entries from every node's writes, kept in the index on the
    driver's node (its own connection; the index is in WAL mode)."""

    def __init__(self, index_path: Path) -> None:
        from photoscribe.store import open_store
        from photoscribe.store.journal import Journal

        self.journal = Journal(open_store(index_path))

    def record(self, path: Path, target: Path, changes: dict) -> None:
        self.journal.record(path, target, changes)
