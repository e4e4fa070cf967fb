"""The scan pipeline: decide → load (pool) → tag (batches) → caption (pool) → write.

One photo's failure is recorded and the rest go on. The main thread owns the
model; reading, hashing, metadata and decoding of each file run in worker processes
(``workers``: a native crash or a file past its memory or time cap costs only that
photo), driven by a small thread pool; captions run in another, and the writer
does every file and index write.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from photoscribe.backlog import fill_captions
from photoscribe.captioning import CaptionStage
from photoscribe.errors import DecodeError, PhotoError, is_transient
from photoscribe.fsutil import display, file_stat
from photoscribe.progress import Progress
from photoscribe.records import FileStat, Keyword, State, Summary, Tagging
from photoscribe.store import PhotoRow, PhotoStore
from photoscribe.vision.gpudecode import CpuImages
from photoscribe.vision.jpeghead import JpegBytes
from photoscribe.workers import PHASE, InProcess
from photoscribe.worktasks import (
    ContextSpec,
    LoadRequest,
    decode_pixels,
    image_source,
    load_photo,
)
from photoscribe.writing import AdoptedJob, LateCaptionJob, TaggedJob, Writer

__all__ = ["Pipeline", "image_source"]

log = logging.getLogger(__name__)


LOADING_AHEAD = 256  # photos decoded ahead of a model still loading (~150 KB each)


@dataclass(frozen=True)
class Pixels:
    """A photo decoded before the model had loaded: its tensor is made when it has."""

    array: Any  # uint8 numpy pixels from a worker (worktasks.LoadResult.pixels)


@dataclass(frozen=True)
class Loaded:
    path: Path
    content_hash: str
    tensor: Any  # the model's input, a JpegBytes still to decode (GPU) or Pixels (see _load)
    context: str | None = None  # facts from the photo's metadata for the caption prompt
    recorded: Any = None  # metadata.recorded.Recorded: photoscribe already wrote these pixels
    stat: FileStat | None = None
    facts: Any = None  # date taken, camera, place (PhotoFacts) when the load read them


@dataclass(frozen=True)
class Known:
    """Same pixels as a photo already in the index: reuse its tags, no inference."""

    path: Path
    stat: FileStat
    content_hash: str
    row: PhotoRow
    context: str | None = None
    facts: Any = None  # as Loaded.facts


@dataclass(frozen=True)
class Failed:
    path: Path
    stat: FileStat | None
    reason: str
    transient: bool = False  # may pass by itself (disk full, permission denied, ...)


class Pipeline:
    def __init__(
        self,
        store: PhotoStore,
        tagger: Any,  # vision.Tagger (lazy model inside)
        captions: CaptionStage,
        writer_factory: Callable[[Callable[[Path, str, str | None], None]], Writer],
        progress: Progress,
        *,
        batch_size: int,
        decode_workers: int,
        force: bool = False,
        dry_run: bool = False,
        on_outcome: Callable[[Path, str], None] | None = None,
        context_of: ContextSpec | None = None,
        workers: Any = None,  # workers.WorkerPool; None: everything in this process
        decode: Callable[..., Any] | None = None,  # vision.loader.decode, or a test's
        observe: Callable[[str, float], None] | None = None,  # (stage, seconds per photo)
        images: Any = None,  # vision.gpudecode strategy (None: CpuImages, all on the CPU)
        facts_at_load: bool = False,  # the load reads the search facts (no write will)
    ) -> None:
        self.store = store
        self.tagger = tagger
        self.captions = captions
        self.progress = progress
        self.batch_size = batch_size
        self.decode_workers = decode_workers
        self.force = force
        self.dry_run = dry_run  # the index is not changed either
        self.on_outcome = on_outcome  # told each photo's final outcome (the daemon's queue)
        self.context = context_of  # None: only keywords go to the LLM (the default)
        self.workers = workers or InProcess()
        self.decode = decode
        self.images = images or CpuImages()
        self.facts_at_load = facts_at_load
        self.observe = observe or (lambda stage, seconds: None)  # e.g. Metrics.observe
        self.summary = Summary()
        self._lock = threading.Lock()
        # While the model loads (one core's work) the other cores decode ahead of it.
        self._loading_gate = threading.BoundedSemaphore(max(1, decode_workers - 1))
        self._writer = writer_factory(self._report)
        self._writer.observe = self.observe  # stage times of the parts it owns
        self.captions.observe = self.observe

    # -- outcomes ------------------------------------------------------------
    def _report(
        self, path: Path, outcome: str, reason: str | None, *, transient: bool = False
    ) -> None:
        if outcome == "failed":
            again = " (will be tried again)" if transient else ""
            log.warning("failed: %s: %s%s", display(path), reason, again)
        with self._lock:
            self.summary.record(path, outcome, reason, transient=transient)
            self.progress.advance(outcome, path)
        if self.on_outcome is not None:
            self.on_outcome(path, outcome)

    def _fail(
        self, path: Path, stat: FileStat | None, reason: str, *, transient: bool = False
    ) -> None:
        if not self.dry_run:
            self.store.save_failure(path, stat, reason, transient=transient)
        self._report(path, "failed", reason, transient=transient)

    # -- the run ---------------------------------------------------------------
    def run(self, paths: Sequence[Path]) -> Summary:
        """Process ``paths``; returns counts. Every photo ends written, skipped or failed."""
        self.progress.start(len(paths), "photos")
        interrupted = False
        try:
            self.process(paths)
            self.captions.drain()
            self._writer.flush()
            self._fill_captions(paths)
            self.captions.drain()
            self._writer.flush()
        except KeyboardInterrupt:  # Ctrl-C: finish the writes queued, wait for no caption
            interrupted = True
            raise
        finally:
            self.captions.close(cancel=interrupted, wait=not interrupted)
            self._writer.close()
            self.progress.finish()
        waiting = self._waiting(paths)
        self.summary.waiting = len(waiting)
        self.summary.waiting_reasons = [r.error for r in waiting]
        return self.summary

    def process(self, paths: Iterable[Path]) -> None:
        """Tag the photos among ``paths`` that need it and hand them to the caption stage
        and the writer; returns before every write is done (see ``flush``)."""
        todo = (p for p in paths if self._needs_work(p))  # ``paths`` may be a stream
        first = next(todo, None)
        if first is not None:  # nothing to do: the model is not even loaded
            self._process(itertools.chain((first,), todo))

    def flush(self) -> None:
        """Wait for every caption started so far and every write queued so far."""
        self.captions.drain()
        self._writer.flush()

    @property
    def writer(self) -> Writer:
        return self._writer

    @property
    def context_of(self) -> Callable[[bytes], str | None] | None:
        """The context reader for photos read outside ``_load`` (the caption backlog),
        run in a worker too."""
        spec = self.context
        if spec is None:
            return None
        return lambda data: self.workers.call("metadata reader", spec, data)

    def _waiting(self, paths: Sequence[Path]) -> list[PhotoRow]:
        """Photos among ``paths`` whose keywords are written but caption is not."""
        wanted = set(paths)
        rows = self.store.needing_caption(self.tagger.encoder.model_id)
        return [r for r in rows if r.path in wanted]

    def _needs_work(self, path: Path) -> bool:
        """Cheap decision from the file's stat and the index; no file read."""
        try:
            stat = file_stat(path)
        except OSError as exc:
            self._fail(
                path, None, f"cannot read the file: {exc.strerror}", transient=is_transient(exc)
            )
            return False
        row = self.store.by_path(path)
        if self.force or row is None or not row.same_file(stat):
            return True
        if row.transient:  # disk full, permission denied, ...: it may work now
            return True
        if row.state in (State.FAILED, State.UNDONE) or row.model == self.tagger.encoder.model_id:
            self._report(path, "skipped", None)
            return False
        return True

    def _process(self, todo: Iterable[Path]) -> None:
        batch_size = self.images.start(self.tagger.encoder, self.batch_size)
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode") as pool:
            batch: list[Loaded] = []
            for item in self._loaded(pool, todo, batch_size):
                if isinstance(item, Loaded):
                    batch.append(item)
                    if len(batch) >= batch_size:
                        self._tag(batch)
                        batch = []
                elif isinstance(item, Known):
                    self._reuse(item)
                else:
                    self._fail(item.path, item.stat, item.reason, transient=item.transient)
            if batch:
                self._tag(batch)

    def _loaded(
        self, pool: ThreadPoolExecutor, todo: Iterable[Path], batch_size: int
    ) -> Iterator[Any]:
        """Load results in order, keeping two batches of reads in flight; while the model
        is still loading, up to ``LOADING_AHEAD`` photos are decoded ahead of it."""
        window: deque[Future[Any]] = deque()
        ahead = max(2 * batch_size, self.decode_workers)
        model = self.tagger.encoder.model
        for path in todo:
            window.append(pool.submit(self._load, path))
            while len(window) >= (ahead if model.loaded else max(ahead, LOADING_AHEAD)):
                yield window.popleft().result()
        while window:
            yield window.popleft().result()

    def _load(self, path: Path) -> Loaded | Known | Failed:
        stat: FileStat | None = None
        try:
            stat = file_stat(path)
            started = time.monotonic()
            got = self._decode_photo(path)
            self.observe("decode", time.monotonic() - started)  # read, hash, decode
            if not self.force:
                known = self.store.by_hash(got.content_hash, self.tagger.encoder.model_id)
                if known:
                    row = prefer_same_path(known, path)
                    return Known(path, stat, got.content_hash, row, got.context, got.facts)
            tensor: Any = got.jpeg
            if tensor is None:  # made now, or once the model has loaded (see _decoded)
                loaded = self.tagger.encoder.model.loaded
                tensor = self._tensor(got.pixels) if loaded else Pixels(got.pixels)
            return Loaded(
                path, got.content_hash, tensor, got.context, got.recorded, stat, got.facts
            )
        except (PhotoError, OSError) as exc:
            return Failed(path, stat, *load_failure(exc))

    def _decode_photo(self, path: Path) -> Any:
        """A worker's LoadResult for ``path``; one core fewer decodes while the model loads."""
        request = self._request()
        loading = not self.tagger.encoder.model.loaded
        with self._loading_gate if loading else contextlib.nullcontext():
            return self.workers.call("image decoder", load_photo, path, request, phase=PHASE)

    def _request(self) -> LoadRequest:
        from photoscribe.vision.loader import decode

        encoder = self.tagger.encoder
        plan = encoder.input_plan()  # known before the model is loaded, once it was kept
        return LoadRequest(
            min_side=plan.min_side,
            plan=plan.pixels,
            model_id=None if self.force else encoder.model_id,
            context=self.context,
            decode=self.decode or decode,
            jpeg_bytes=self.images.wants_jpeg,
            facts=self.facts_at_load,
        )

    def _tensor(self, pixels: Any) -> Any:
        return model_input(pixels, self.tagger.encoder.preprocess())  # waits for the model

    # -- tagging and reuse ---------------------------------------------------------
    def _tag(self, batch: list[Loaded]) -> None:
        started = time.monotonic()
        batch = self._decoded(batch)
        if not batch:
            return
        taggings = self.tagger.tag([item.tensor for item in batch])
        for _ in batch:  # each photo waited for its whole batch
            self.observe("tag", time.monotonic() - started)
        for item, tagging in zip(batch, taggings, strict=True):
            if item.recorded is not None:
                adopted = adopted_tagging(tagging, item.recorded)
                caption = item.recorded.description
                self._writer.put(AdoptedJob(item.path, item.content_hash, adopted, caption))
            else:
                self._caption_then_write(
                    item.path, item.content_hash, tagging, item.context, item.facts
                )

    def _decoded(self, batch: list[Loaded]) -> list[Loaded]:
        """``batch`` with its JPEGs decoded on the GPU; one the GPU cannot decode is decoded
        on the CPU (in a worker), and one neither can is recorded as failed. Pixels decoded
        before the model had loaded become its input now."""
        batch = self._prepared(batch)
        pending = [i for i, item in enumerate(batch) if isinstance(item.tensor, JpegBytes)]
        if not pending:
            return batch
        done = self.images.decode([batch[i].tensor for i in pending])  # timed as "tag"
        ready: dict[int, Loaded | None] = {}
        for i, result in zip(pending, done, strict=True):
            item = batch[i]
            if isinstance(result, Exception):
                log.info("GPU decode failed for %s (%s): CPU decode", display(item.path), result)
                result = self._cpu_fallback(item)
            ready[i] = None if result is None else replace(item, tensor=result)
        out = [ready.get(i, item) for i, item in enumerate(batch)]
        return [item for item in out if item is not None]

    def _prepared(self, batch: list[Loaded]) -> list[Loaded]:
        out = []
        for item in batch:
            if not isinstance(item.tensor, Pixels):
                out.append(item)
                continue
            try:
                out.append(replace(item, tensor=self._tensor(item.tensor.array)))
            except PhotoError as exc:
                self._fail(item.path, item.stat, str(exc), transient=is_transient(exc))
        return out

    def _cpu_fallback(self, item: Loaded) -> Any:
        try:
            pixels = self.workers.call(
                "image decoder", decode_pixels, item.tensor.data, self._request()
            )
            return self._tensor(pixels)
        except (PhotoError, OSError) as exc:
            reason, transient = load_failure(exc)
            self._fail(item.path, item.stat, reason, transient=transient)
        return None

    def _caption_then_write(
        self,
        path: Path,
        digest: str,
        tagging: Tagging,
        context: str | None = None,
        facts: Any = None,
    ) -> None:
        """One write when the caption comes within the caption stage's wait; else the
        keywords go ahead alone and a caption that still comes is a second write."""
        late = threading.Event()

        def done(caption: str | None, reason: str | None) -> None:
            if not late.is_set():
                self._writer.put(TaggedJob(path, digest, tagging, caption, reason, facts))
            elif caption is not None:
                self._writer.put(LateCaptionJob(path, digest, tagging, caption))

        def keywords_first() -> None:
            late.set()
            self._writer.put(TaggedJob(path, digest, tagging, None, facts=facts))

        if not self.captions.offer(tagging.keywords, done, context, on_late=keywords_first):
            self._writer.put(TaggedJob(path, digest, tagging, None, facts=facts))

    def _reuse(self, item: Known) -> None:
        row = item.row
        if self.dry_run and (row.path == item.path or not row.path.exists()):
            self._report(item.path, "skipped", None)  # would only update the index
            return
        if row.path == item.path:
            self.store.touch(row.id, item.stat)  # only metadata changed, e.g. another tool
            self._report(item.path, "skipped", None)
            return
        if not row.path.exists():
            self.store.move(row.id, item.path, item.stat)  # the photo was moved or renamed
            self._report(item.path, "skipped", None)
            return
        tagging = Tagging(row.keywords, self.store.embedding_of(row.id), row.model or "")
        if row.caption:
            job = TaggedJob(item.path, item.content_hash, tagging, row.caption, facts=item.facts)
            self._writer.put(job)
        else:
            self._caption_then_write(
                item.path, item.content_hash, tagging, item.context, item.facts
            )

    # -- captions for photos that have keywords but no caption yet -------------------
    def _fill_captions(self, paths: Sequence[Path]) -> None:
        fill_captions(
            self._waiting(paths),
            self.captions,
            self._writer,
            self.store,
            self.progress,
            context_of=self.context_of,
        )


def load_failure(exc: PhotoError | OSError) -> tuple[str, bool]:
    """Why a photo could not be loaded, and whether that may pass by itself."""
    if isinstance(exc, PhotoError):
        return str(exc), is_transient(exc)
    return f"cannot read the file: {exc.strerror or exc}", is_transient(exc)


def model_input(pixels: Any, preprocess: Any) -> Any:
    """The model's input tensor for a worker's decoded pixels; DecodeError if none."""
    from photoscribe.vision.loader import tensor_from

    try:
        return tensor_from(pixels, preprocess)
    except (OSError, ValueError, RuntimeError, TypeError) as exc:
        raise DecodeError(f"the image cannot be prepared for the model ({exc})") from exc


def adopted_tagging(tagging: Tagging, recorded: Any) -> Tagging:
    """The index's keywords for a photo whose file already holds photoscribe's write: the
    model's keywords that the file holds (with their scores), then the other words that
    photoscribe recorded adding. The embedding is the model's (for search)."""
    from photoscribe.metadata.text import keyword_key, sanitize_keyword

    if recorded.concepts:  # the write recorded its concept ids: compare those
        ids = set(recorded.concepts)
        keep = [k for k in tagging.keywords if k.label in ids]
        extra = [Keyword(c, 0.0) for c in recorded.concepts if c not in {k.label for k in keep}]
        return Tagging(tuple(keep + extra), tagging.embedding, tagging.model)

    in_file = {keyword_key(word) for word in recorded.keywords}
    keep = [
        k for k in tagging.keywords if keyword_key(sanitize_keyword(k.label) or k.label) in in_file
    ]
    kept = {keyword_key(sanitize_keyword(k.label) or k.label) for k in keep}
    extra = [Keyword(w, 0.0) for w in recorded.added_keywords if keyword_key(w) not in kept]
    return Tagging(tuple(keep + extra), tagging.embedding, tagging.model)


def prefer_same_path(rows: list[PhotoRow], path: Path) -> PhotoRow:
    return next((r for r in rows if r.path == path), rows[0])
