"""The writer: metadata into the photo (atomically), then the index row.

Several files are written at once (``threads``: each write runs in its own worker
process), but never two jobs of one photo, nor of two photos that may share a sidecar
(``a.jpg`` and ``a.cr2`` → ``a.xmp``): those run one after another, in the order put."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photoscribe.config import MetadataConfig
from photoscribe.errors import (
    NotWritableError,
    PhotoChangedError,
    PhotoError,
    StoreError,
    WorkerError,
    is_transient,
)
from photoscribe.fsutil import display, is_temp_name, remove_leftover_temp, stat_or_none
from photoscribe.records import Annotation, FileStat, PhotoFacts, State, Tagging, WriteOutcome
from photoscribe.search.facts import facts_from, read_facts
from photoscribe.store import PhotoStore
from photoscribe.store.journal import Journal

if TYPE_CHECKING:
    from photoscribe.keywording import Wording

log = logging.getLogger(__name__)

WriteFn = Callable[..., WriteOutcome]  # metadata.write_annotation


@dataclass(frozen=True)
class IsolatedWrite:
    """A ``WriteFn`` that runs ``write`` (metadata.write_photo) in a worker process: a
    crash in exiv2 or a file past its caps fails that photo only. The photo is replaced
    atomically by the worker, so a worker that dies mid-write leaves it as it was; its
    temp file is removed here."""

    workers: Any  # workers.WorkerPool
    write: WriteFn

    def __call__(self, path: Path, annotation: Annotation, **options: Any) -> WriteOutcome:
        from photoscribe.workers import Relay

        journal = options.pop("journal", None)
        relay = Relay(journal) if journal is not None else None
        try:
            return self.workers.call(
                "metadata writer", self.write, path, annotation, journal=relay, **options
            )
        except WorkerError:
            remove_temps_of(path)
            raise


@dataclass(frozen=True)
class IsolatedFacts:
    """search.facts.read_facts in a worker process: exiv2 never parses a photo in the
    process that holds the index. None when the worker died on it (the write is done)."""

    workers: Any  # workers.WorkerPool

    def __call__(self, path: Path) -> PhotoFacts | None:
        try:
            return self.workers.call("metadata reader", read_facts, path)
        except WorkerError as exc:
            log.warning("no date/camera for search: %s: %s", display(path), exc)
            return None


def remove_temps_of(path: Path) -> int:
    """Remove the temp files a dead writer left for ``path`` or its sidecars (none that
    a live writer holds); how many were removed."""
    prefix = f".{path.stem}"
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and is_temp_name(n)]
    except OSError:
        return 0
    return sum(remove_leftover_temp(path.parent / name) for name in names)


@dataclass(frozen=True)
class TaggedJob:
    """A photo that was tagged (or reused another copy's tags); caption may be None."""

    path: Path
    content_hash: str
    tagging: Tagging
    caption: str | None
    note: str | None = None  # why there is no caption
    facts: PhotoFacts | None = None  # read by the load (metadata writes off); None: not read


@dataclass(frozen=True)
class CaptionJob:
    """A caption that arrived later for a photo whose keywords are already written."""

    row_id: int
    path: Path
    content_hash: str
    tagging: Tagging
    caption: str
    in_file: bool = False  # the photo already holds it (a write whose index update was lost)


@dataclass(frozen=True)
class AdoptedJob:
    """A photo whose file already holds photoscribe's write of these pixels by this model
    (its index update was lost, e.g. to a kill): the index learns it, the file is not
    written again."""

    path: Path
    content_hash: str
    tagging: Tagging
    caption: str | None


@dataclass(frozen=True)
class LateCaptionJob:
    """A caption that came after its photo's wait was over: its keywords were queued
    alone just before, so the row is found by path when the job's turn comes."""

    path: Path
    content_hash: str
    tagging: Tagging
    caption: str


def annotation_of(
    tagging: Tagging, caption: str | None, content_hash: str, wording: Wording | None
) -> Annotation:
    """What to write for ``tagging``: its concepts as words and paths in the configured
    language(s), or (no wording) its labels as they are."""
    if wording is None:
        words, paths, concepts = tuple(k.label for k in tagging.keywords), None, ()
    else:
        (words, paths), concepts = (
            wording.render(tagging.keywords),
            wording.concepts(tagging.keywords),
        )
    return Annotation(words, caption, tagging.model, content_hash, paths, concepts)


def write_tags(
    write_fn: WriteFn | None,
    path: Path,
    tagging: Tagging,
    caption: str | None,
    content_hash: str,
    *,
    wording: Wording | None,
    metadata: MetadataConfig,
    journal: Callable[[Path, dict], None],
    dry_run: bool = False,
) -> WriteOutcome | None:
    """Write ``tagging`` and ``caption`` into the photo at ``path`` (the one whose pixels
    hash to ``content_hash``) with ``write_fn``; None when photos are never written. The
    outcome carries the photo's facts for search when the write read them."""
    if write_fn is None:
        return None
    annotation = annotation_of(tagging, caption, content_hash, wording)
    return write_fn(
        path,
        annotation,
        expected_hash=content_hash,
        config=metadata,
        dry_run=dry_run,
        journal=journal,
        facts=facts_from,
    )


Written = tuple[FileStat | None, PhotoFacts | None]  # a written file's identity, its facts


def written(outcome: WriteOutcome | None, path: Path) -> Written:
    """What the index keeps of a write's ``outcome`` (None: no write was asked for)."""
    if outcome is None:
        return stat_or_none(path), None
    return outcome.stat or stat_or_none(path), outcome.facts


@dataclass(frozen=True)
class FileResult:
    """What writing one photo file came to: written (``stat``), or not (``reason``)."""

    stat: FileStat | None
    note: str | None = None  # written to the index only, e.g. a read-only folder
    reason: str | None = None  # not written: why
    transient: bool = False  # a failure that may pass by itself
    gone: bool = False  # the photo was deleted meanwhile: nothing to record
    facts: PhotoFacts | None = None  # read by the write (None: to be read for the index)


def write_safely(write: Callable[[], Written], path: Path) -> FileResult:
    """Run ``write`` (one photo file's metadata write) and say what it came to."""
    try:
        stat, facts = write()
        return FileResult(stat, facts=facts)
    except NotWritableError as exc:  # a read-only folder: the index still learns the tags
        return FileResult(stat_or_none(path), note=str(exc))
    except PhotoChangedError as exc:
        gone = not path.exists()  # stat unknown → tried again by the next scan
        return FileResult(None, reason=str(exc), transient=is_transient(exc), gone=gone)
    except PhotoError as exc:
        return FileResult(stat_or_none(path), reason=str(exc), transient=is_transient(exc))


@dataclass(frozen=True)
class WrittenJob:
    """A photo whose file a cluster node wrote (or found holding this write already,
    ``adopted``): the index learns the outcome here, the file is not touched."""

    path: Path
    content_hash: str
    tagging: Tagging
    caption: str | None
    result: FileResult
    facts: PhotoFacts | None = None
    adopted: bool = False
    note: str | None = None  # why there is no caption


def file_key(path: Path) -> tuple[Path, str]:
    """Photos whose writes must not overlap: the same photo, or two that may share a
    Lightroom-style sidecar (``a.jpg``/``a.CR2`` → ``a.xmp``; any case)."""
    return path.parent, path.stem.casefold()


def _thread_name(index: int) -> str:
    return "writer" if index == 0 else f"writer-{index + 1}"


Job = TaggedJob | CaptionJob | LateCaptionJob | AdoptedJob | WrittenJob
# report(path, outcome, reason, transient=False): outcome is "tagged", "tagged+caption",
# "captioned", "adopted" or "failed" (transient: a failure that may pass by itself)
Report = Callable[..., None]
Show = Callable[[Path, dict], None]  # (file, {key: (before, after)}) in a dry run


class Writer:
    """Owns all writes of a run: files and index rows, ``threads`` files at a time."""

    def __init__(
        self,
        store: PhotoStore,
        write_fn: WriteFn | None,
        report: Report,
        *,
        metadata: MetadataConfig | None = None,
        dry_run: bool = False,
        show: Show | None = None,
        wording: Wording | None = None,
        facts: Callable[[Path], PhotoFacts | None] = read_facts,
        threads: int = 1,
    ) -> None:
        self.store = store
        self.wording = wording  # concept ids → words; None: the labels are the words
        self.facts = facts  # date taken, camera, place for search (IsolatedFacts: a worker)
        self.observe: Callable[[str, float], None] = lambda stage, seconds: None
        self.write_fn = write_fn  # None: index only, photos are never touched
        self._report_lock = threading.Lock()
        self._report_to = report
        self.metadata = metadata or MetadataConfig()  # passed to write_fn as config=
        self.dry_run = dry_run  # nothing written, neither files nor the index
        self.show = show  # told each file's changes in a dry run
        self.journal = Journal(store)
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=256)
        self._take = threading.Lock()  # a job is taken and claimed in one step (order)
        self._claims: dict[tuple[Path, str], deque[Job]] = {}  # busy files → jobs after
        self._claims_lock = threading.Lock()
        count = 1 if dry_run else max(1, threads)  # a dry run shows its changes in order
        self._threads = [
            threading.Thread(target=self._loop, name=_thread_name(i), daemon=True)
            for i in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def report(self, path: Path, outcome: str, reason: str | None, **kw: Any) -> None:
        with self._report_lock:  # the callers' counters need not be thread-safe
            self._report_to(path, outcome, reason, **kw)

    def put(self, job: Job) -> None:
        self._queue.put(job)

    def flush(self) -> None:
        """Wait until every job queued so far is written."""
        self._queue.join()

    def close(self) -> None:
        """Finish every queued write, then stop."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _loop(self) -> None:
        while (job := self._claimed()) is not None:
            while job is not None:  # this file's jobs, in the order they were put
                self._run(job)
                job = self._next_of(job)

    def _claimed(self) -> Job | None:
        """The next job whose file no other thread is writing (None: stop); a job for a
        busy file is left to the thread writing it."""
        while True:
            with self._take:
                job = self._queue.get()
                if job is None:
                    self._queue.task_done()
                    return None
                with self._claims_lock:
                    later = self._claims.get(file_key(job.path))
                    if later is None:
                        self._claims[file_key(job.path)] = deque()
                        return job
                    later.append(job)

    def _next_of(self, job: Job) -> Job | None:
        key = file_key(job.path)
        with self._claims_lock:
            later = self._claims[key]
            if later:
                return later.popleft()
            del self._claims[key]
            return None

    def _run(self, job: Job) -> None:
        started = time.monotonic()
        try:
            self._handle(job)
            self.observe("write", time.monotonic() - started)
        except StoreError as exc:  # e.g. the index locked by another program
            log.error("not written: %s: %s", display(job.path), exc)
            self.report(job.path, "failed", str(exc))
        except Exception as exc:  # never lose the writer to one bad photo
            log.exception("unexpected error writing %s", display(job.path))
            self.report(job.path, "failed", f"internal error: {exc}")
        finally:
            self._queue.task_done()

    def _handle(self, job: Job) -> None:
        if isinstance(job, WrittenJob):
            self._written_elsewhere(job)
            return
        if isinstance(job, AdoptedJob):
            self._adopt(job)
            return
        if isinstance(job, CaptionJob) and job.in_file:
            if not self.dry_run:
                self.store.save_caption(job.row_id, job.caption, stat_or_none(job.path))
            log.info("indexed the caption the file already held: %s", display(job.path))
            self.report(job.path, "caption-adopted", None)
            return
        if isinstance(job, LateCaptionJob):
            job = self._resolve(job)
            if job is None:
                return
        if isinstance(job, CaptionJob) and not self._still_waiting(job):
            return  # captioned meanwhile: a late caption and the backlog both asked
        note = job.note if isinstance(job, TaggedJob) else None
        result = write_safely(lambda: self._write_file(job), job.path)
        if self._ended(job.path, result):
            return
        stat, note = result.stat, result.note or note
        if isinstance(job, CaptionJob):
            if not self.dry_run:
                self.store.save_caption(job.row_id, job.caption, stat)
            self.report(job.path, "captioned", None)
            return
        if not self.dry_run:
            self._index(job, stat, self._facts_of(job, result))
        self.report(job.path, "tagged+caption" if job.caption else "tagged", note)

    def _facts_of(self, job: TaggedJob, result: FileResult) -> PhotoFacts | None:
        """The photo's facts as the write or the load read them, else read now."""
        if result.facts is not None:
            return result.facts
        return job.facts if job.facts is not None else self.facts(job.path)

    def _index(
        self, job: TaggedJob | AdoptedJob | WrittenJob, stat: FileStat | None, facts: Any
    ) -> None:
        """The photo's row: its keywords, caption, embedding and ``facts`` (date taken,
        camera, place: for search filters)."""
        self.store.save_tagged(
            job.path,
            stat,
            job.content_hash,
            job.tagging,
            job.caption,
            facts,
            self._search_text(job.tagging),
        )

    def _search_text(self, tagging: Tagging) -> str | None:
        if self.wording is None:
            return None
        return self.wording.search_text([k.label for k in tagging.keywords])

    def _ended(self, path: Path, result: FileResult) -> bool:
        """Whether the file write failed: then that is recorded and reported here."""
        if result.reason is None:
            return False
        if result.gone:  # deleted meanwhile: nothing to record
            self.report(path, "failed", result.reason)
        else:
            if not self.dry_run:
                self.store.save_failure(
                    path, result.stat, result.reason, transient=result.transient
                )
            self.report(path, "failed", result.reason, transient=result.transient)
        return True

    def _written_elsewhere(self, job: WrittenJob) -> None:
        """Index what a cluster node wrote into the file (or found already there)."""
        if self._ended(job.path, job.result):
            return
        if not self.dry_run:
            self._index(job, job.result.stat, job.facts)
            if job.adopted:
                self.journal.follow(job.path, job.content_hash)
        if job.adopted:
            self.report(job.path, "adopted", None)
        else:
            outcome = "tagged+caption" if job.caption else "tagged"
            self.report(job.path, outcome, job.result.note or job.note)

    def _adopt(self, job: AdoptedJob) -> None:
        if not self.dry_run:
            self._index(job, stat_or_none(job.path), self.facts(job.path))
            self.journal.follow(job.path, job.content_hash)  # moved after its row was dropped
        log.info("indexed what the file already held: %s", display(job.path))
        self.report(job.path, "adopted", None)

    def _still_waiting(self, job: CaptionJob) -> bool:
        """The photo still waits for this caption (writes run one at a time, here)."""
        row = self.store.by_path(job.path)
        return row is not None and row.id == job.row_id and row.state is State.NEEDS_CAPTION

    def _resolve(self, job: LateCaptionJob) -> CaptionJob | None:
        """The row the keyword write made; None when the photo changed, failed or went
        meanwhile (or in a dry run): then the caption is not written."""
        row = self.store.by_path(job.path)
        if row is None or row.state is not State.NEEDS_CAPTION:
            return None
        if row.content_hash != job.content_hash:
            return None
        return CaptionJob(row.id, job.path, job.content_hash, job.tagging, job.caption)

    def _write_file(self, job: TaggedJob | CaptionJob) -> Written:
        def journal(target: Path, changes: dict) -> None:
            self.journal.record(job.path, target, changes)

        outcome = write_tags(
            self.write_fn,
            job.path,
            job.tagging,
            job.caption,
            job.content_hash,
            wording=self.wording,
            metadata=self.metadata,
            journal=journal,
            dry_run=self.dry_run,
        )
        if self.dry_run and self.show is not None and outcome is not None:
            for target, changes in outcome.changes:
                self.show(target, changes)
        return written(outcome, job.path)
