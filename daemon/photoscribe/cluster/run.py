"""The driver of a cluster scan: a ``Pipeline`` whose per-photo stages run on Ray.

Which photos need work, the reuse of indexed copies, failures, captions still waiting
and the summary are the local pipeline's own code; only ``_process`` differs: the
photos go out as a Ray Data stream (load → tag → caption → write) and come back as
results that the driver's writer thread puts into the index, the only one that does.
The index is the checkpoint: a killed driver or node loses nothing that was indexed,
and a rerun redoes only what is not (a photo written but not indexed is adopted).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from photoscribe.cluster.connect import Session
from photoscribe.cluster.items import COLUMN, Item, pack, unpack
from photoscribe.config import Config
from photoscribe.errors import ClusterError
from photoscribe.fsutil import stat_or_none
from photoscribe.pipeline import Known, Pipeline, prefer_same_path
from photoscribe.records import FileStat
from photoscribe.writing import FileResult, WrittenJob

log = logging.getLogger(__name__)

CHUNK = 100_000  # photos per Ray Data run: bounds the driver's memory on huge backfills
LOAD_BATCH = 4  # photos per load call: small, so that the work spreads over the nodes
CAPTION_BATCH = 16
WRITE_BATCH = 8
SPREAD = {"scheduling_strategy": "SPREAD"}  # actors over every node, not packed on one


@dataclass(frozen=True)
class Layout:
    """How many actors each stage gets, from what the cluster has. Logical CPUs only
    book the actors; the real work runs in their worker processes and torch threads."""

    cpus: int
    gpus: int
    nodes: int

    @classmethod
    def of(cls, ray: Any) -> Layout:
        total = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        return cls(int(total.get("CPU", 1)), int(total.get("GPU", 0)), max(1, nodes))

    # Fixed pools (an autoscaling one starts with one actor and grows late: 0.77 × a local
    # scan's photos/s on one node, against 0.99 fixed), spread over the nodes.
    def load(self) -> dict[str, Any]:  # one worker process each, one per core
        return {"size": (max(1, self.cpus),) * 2, "num_cpus": 0.25, **SPREAD}

    def tag(self) -> dict[str, Any]:  # one model per GPU, else one per node (all its cores)
        if self.gpus:
            return {"size": (self.gpus, self.gpus), "num_cpus": 0.5, "num_gpus": 1, **SPREAD}
        return {"size": (self.nodes, self.nodes), "num_cpus": 0.5, **SPREAD}

    def write(self) -> dict[str, Any]:
        return {"size": (self.nodes, 2 * self.nodes), "num_cpus": 0.25, **SPREAD}


class ClusterPipeline(Pipeline):
    def __init__(self, *args: Any, config: Config, session: Session, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = config
        self.session = session
        self.nodes: Counter[str] = Counter()  # photos each node loaded

    def _process(self, todo: Iterable[Path]) -> None:
        started = time.monotonic()
        left: list[Path] = []  # hinted as known but not in the index: tagged here
        chunk: list[Path] = []
        for path in todo:
            chunk.append(path)
            if len(chunk) >= CHUNK:
                left += self._run_chunk(chunk)
                chunk = []
        if chunk:
            left += self._run_chunk(chunk)
        self.summary.nodes = dict(self.nodes)
        self.summary.cluster_seconds = time.monotonic() - started
        if left:
            log.info(
                "%d photos tagged on this machine (their index rows went meanwhile)", len(left)
            )
            super()._process(left)

    def _run_chunk(self, paths: list[Path]) -> list[Path]:
        done: set[Path] = set()
        left: list[Path] = []
        for item in self._stream(paths):
            if item.path in done:  # a retried task's second answer: the first counts
                continue
            done.add(item.path)
            if not self._settle(item):
                left.append(item.path)
        for path in paths:
            if path not in done:  # never happens while Ray retries lost tasks
                self._fail(path, None, "the cluster lost this photo", transient=True)
        return left

    def _stream(self, paths: list[Path]) -> Iterator[Item]:
        from photoscribe.cluster.stages import CaptionStep, LoadStage, TagStage, WriteStage

        ray = self.session.ray
        layout = Layout.of(ray)
        keeper = self._keeper()
        rows = [{COLUMN: pack(Item(path))} for path in paths]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // LOAD_BATCH))
        # decoded on the nodes' CPUs; facts are read by the write stage there
        request = replace(self._request(), jpeg_bytes=False, facts=False)
        ds = _stage(ds, LoadStage, (self.config, request, self._known()), LOAD_BATCH, layout.load())
        ds = _stage(ds, TagStage, (self.config,), self.batch_size, layout.tag())
        ds = _stage(ds, CaptionStep, (self.config,), CAPTION_BATCH, {"size": (1, 1), "num_cpus": 0})
        ds = _stage(ds, WriteStage, (self.config, keeper), WRITE_BATCH, layout.write())
        try:
            for row in ds.iter_rows():
                item = unpack(bytes(row[COLUMN]))
                if "load" in item.nodes:
                    self.nodes[item.nodes["load"]] += 1
                yield item
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(
                f"the cluster scan stopped: {first}; the photos indexed so far are kept and "
                "a rerun goes on from there (check `ray status` and that photoscribe[cluster] "
                "is installed on every node)"
            ) from exc

    def _keeper(self) -> Any:
        """The journal keeper, on this (the driver's, the index's) node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from photoscribe.cluster.stages import JournalKeeper

        ray = self.session.ray
        here = ray.get_runtime_context().get_node_id()
        actor = ray.remote(JournalKeeper).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
        )
        return actor.remote(self.config.index_path)

    def _known(self) -> Any:
        from photoscribe.cluster.stages import KnownHashes

        if self.force:
            return None
        return KnownHashes(self.store.content_hashes(self.tagger.encoder.model_id))

    def _settle(self, item: Item) -> bool:
        """Hand one result to the writer (or reuse an indexed copy); False: the photo
        was hinted as known but is not indexed, so it must be tagged here."""
        stat = _here(item.path, item.stat)
        if item.kind == "failed" and item.unseen and item.path.exists():
            self._fail(item.path, None, unseen(item.nodes.get("load")), transient=True)
        elif item.kind == "failed":
            self._fail(item.path, stat, item.reason or "unknown error", transient=item.transient)
        elif item.kind == "known":
            assert item.content_hash is not None
            rows = self.store.by_hash(item.content_hash, self.tagger.encoder.model_id)
            if not rows or stat is None:
                return False
            row = prefer_same_path(rows, item.path)
            self._reuse(Known(item.path, stat, item.content_hash, row, item.context))
        elif item.kind == "written":
            self._writer.put(self._written(item))
        else:
            raise AssertionError(f"a cluster result in state {item.kind!r}")
        return True

    def _written(self, item: Item) -> WrittenJob:
        assert item.content_hash is not None and item.tagging is not None
        result: FileResult = item.result
        if result.reason is None:
            result = FileResult(_here(item.path, result.stat), result.note)
        elif result.gone and item.path.exists():  # gone for the node that wrote, not here
            result = FileResult(None, reason=unseen(item.nodes.get("write")), transient=True)
        return WrittenJob(
            item.path,
            item.content_hash,
            item.tagging,
            item.caption,
            result,
            item.facts,
            adopted=item.recorded is not None,
            note=item.note,
        )


def unseen(node: str | None) -> str:
    return (
        f"the cluster node {node or '?'} cannot see this file (mount its folder at the same "
        "path on every node)"
    )


def _stage(ds: Any, cls: type, args: tuple, batch_size: int, plan: dict[str, Any]) -> Any:
    from ray.data import ActorPoolStrategy

    low, high = plan.pop("size")
    return ds.map_batches(
        cls,
        fn_constructor_args=args,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(min_size=low, max_size=high),
        **plan,
    )


def _here(path: Path, stat: FileStat | None) -> FileStat | None:
    """The file's identity as this machine sees it (device and inode numbers differ
    between NFS clients), when it is the same version a node saw; else None (unknown:
    the next scan looks at the photo again)."""
    if stat is None:
        return None
    now = stat_or_none(path)
    if now is None or (now.size, now.mtime_ns) != (stat.size, stat.mtime_ns):
        return None
    return now
