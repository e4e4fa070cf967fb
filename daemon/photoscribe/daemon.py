"""`photoscribe run`: watch folders and process photos as they arrive, for years.

Threads: watchdog's observers append file changes to an inbox; the main loop (this
module) moves them into the persistent queue, takes due rows, runs them through the
same pipeline as `scan` (which owns the model, the caption stage and the
writer), and does the housekeeping: catch-up scans, waiting captions, model unload,
status and the liveness mark behind the watchdog pings (sent by liveness.Pinger's
own thread). A queue row is deleted only once its photo is
written and indexed, so a kill at any moment loses nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photoscribe import catchup
from photoscribe.activity import Activity, LogProgress, status_line
from photoscribe.backlog import fill_captions
from photoscribe.builders import (
    build_captions,
    build_context_reader,
    build_images,
    build_tagger,
    build_workers,
    build_writer_factory,
)
from photoscribe.config import Config, decode_workers
from photoscribe.errors import ConfigError, PhotoscribeError
from photoscribe.fsutil import display, file_stat, stat_or_none
from photoscribe.liveness import Pinger
from photoscribe.metrics import MetricsServer, Snapshot, build_metrics
from photoscribe.pipeline import Pipeline
from photoscribe.records import State, Summary
from photoscribe.store import PhotoStore
from photoscribe.store.queue import GONE, PHOTO, QueueItem, WorkQueue, publish_state
from photoscribe.volumes import Presence, Volumes
from photoscribe.watcher import Change, FolderWatcher, Inbox

log = logging.getLogger("photoscribe.daemon")

TICK_S = 1.0
STATE_EVERY_S = 2.0
GONE_DELAY_S = 5.0  # on top of settle: a move's new name is processed before the old is dropped
CLOSED_DELAY_S = 0.5  # a file its writer closed still gets a short stability check
MAX_CAPTION_WAIT_S = 600.0
RETRY_BATCH_S = 60.0
MAX_FAILURE_WAIT_S = 3600.0  # a transient failure is tried again at least hourly
FAILURE_CHECK_S = 5.0  # how often the index is asked for failures due for another try
FOLDER_CHECK_S = 2.0  # how often the watched folders are checked for being mounted
FINAL = frozenset({"tagged", "tagged+caption", "adopted", "skipped", "failed"})


@dataclass
class Controls:
    """Set from signal handlers; the main loop reacts at its next tick."""

    stop: threading.Event = field(default_factory=threading.Event)
    reload: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)

    def request_stop(self) -> None:
        self.stop.set()
        self.wake.set()

    def request_reload(self) -> None:
        self.reload.set()
        self.wake.set()


class Daemon:
    def __init__(
        self,
        config: Config,
        store: PhotoStore,
        notifier: Any,  # sdnotify.Notifier
        controls: Controls,
        *,
        reload_config: Callable[[], Config] | None = None,
        tagger: Any = None,
        file_tasks: dict[str, Any] | None = None,  # {"decode":, "write":} for tests
    ) -> None:
        self.config = config
        self.file_tasks = file_tasks or {}
        self.workers: Any = None  # workers.WorkerPool of the current pipeline
        self.store = store
        self.notifier = notifier
        self.controls = controls
        self.reload_config = reload_config
        self.queue = WorkQueue(store)
        self.tagger = tagger or build_tagger(config)
        self.metrics = build_metrics(
            config.metrics.enabled,
            self.tagger.encoder.model_id,
            config.llm.base_url if config.llm.enabled else None,
        )
        self._metrics_server: MetricsServer | None = None
        self.activity = Activity(on_record=self.metrics.record)
        self.pinger = Pinger(notifier, self.activity, config.watch.stuck_minutes * 60)
        self.inbox = Inbox(controls.wake)
        self._taken: dict[Path, int] = {}  # leased queue rows: path → seq
        self._taken_lock = threading.Lock()
        self._rescans: set[Path] = set()
        self._scanner: threading.Thread | None = None
        self._backlog: threading.Thread | None = None
        self._backlog_stop = threading.Event()
        self._caption_wait = config.watch.caption_retry_seconds
        self._next_captions = 0.0
        self._last_event = 0.0
        self._hold: float | None = None  # seconds the due photos wait for a fuller batch
        self._last_work = time.monotonic()
        self._last_full_scan = time.monotonic()
        self._last_state = 0.0
        self._next_failure_check = 0.0
        self._status = ""
        self.started_at = time.time()
        self.pipeline = self._new_pipeline()
        self.watcher = self._new_watcher()
        self.volumes = Volumes(store)
        self.presence = Presence(self.volumes, self.watcher.roots)
        self._next_folder_check = 0.0

    # -- life cycle ------------------------------------------------------------------
    def run(self) -> None:
        self.tagger.start()  # missing weights: fail now, with the how-to
        self._warm_up()
        self._last_work = time.monotonic()
        released = self.queue.release_leases()
        if released:
            log.info(
                "%d photos were in progress when photoscribe last stopped; redoing them", released
            )
        if self.metrics.enabled:  # a taken port stops the start, with the key to change
            cfg = self.config.metrics
            self._metrics_server = MetricsServer(self.metrics, cfg.address, cfg.port)
        self.watcher.start()
        self._request_scan(self.watcher.roots)
        self.notifier.ready(self._publish(force=True))
        self.pinger.start()
        log.info("photoscribe is running (pid %d)", os.getpid())
        try:
            while not self.controls.stop.is_set():
                self._tick()
        finally:
            self._shutdown()

    def _warm_up(self) -> None:
        """Before READY: start the worker processes and run the image tower once, so the
        first photo after a start is as quick as the ones after it."""
        import torch  # loaded with the model already

        self.workers.warm()
        size = self.tagger.encoder.input_size()
        self.tagger.encoder.encode_images([torch.zeros(3, size, size)])

    def _shutdown(self) -> None:
        self.pinger.stop()
        self.notifier.stopping("stopping: finishing the writes in progress")
        log.info("stopping: finishing the writes in progress")
        self.watcher.stop()
        self._stop_threads()
        self.pipeline.captions.close(cancel=True)
        self.pipeline.writer.close()
        self.workers.close()
        self._publish(force=True, state="stopped")
        if self._metrics_server is not None:
            self._metrics_server.stop()
        log.info("stopped; %d queued for the next start", self.queue.depth())

    def _stop_threads(self) -> None:
        self._backlog_stop.set()
        for thread in (self._scanner, self._backlog):
            if thread is not None:
                thread.join()

    # -- the loop --------------------------------------------------------------------
    def _tick(self) -> None:
        self.controls.wake.clear()
        self._ingest(self.inbox.drain())
        if self.controls.reload.is_set():
            self._reload()
        self._start_scan_if_requested()
        worked = self._work()
        self._housekeeping()
        if not worked and not self.controls.stop.is_set():
            self.controls.wake.wait(self._sleep_time())

    def _sleep_time(self) -> float:
        wait = self._hold if self._hold is not None else self.queue.seconds_to_next()
        interval = getattr(self.notifier, "watchdog_interval", None) or TICK_S
        return min(TICK_S, interval, wait if wait is not None else TICK_S)

    def _ingest(self, changes: list[Change]) -> None:
        """File events → queue rows (one transaction), coalesced per path."""
        if not changes:
            return
        self._last_event = time.monotonic()
        settle = self.config.watch.settle_seconds
        photos: dict[Path, tuple[str, Any]] = {}
        gone: list[tuple[Path, str, None]] = []
        for change in changes:
            if change.kind == "rescan":
                self._rescans.add(change.path)
            elif change.kind == "deleted":
                photos.pop(change.path, None)
                gone.append((change.path, GONE, None))
            else:
                photos[change.path] = (change.kind, stat_or_none(change.path))
        closed = [(p, PHOTO, s) for p, (k, s) in photos.items() if k == "closed"]
        other = [(p, PHOTO, s) for p, (k, s) in photos.items() if k != "closed"]
        self.queue.add(gone, delay=settle + GONE_DELAY_S)
        self.queue.add(other, delay=settle)
        self.queue.add(closed, delay=min(settle, CLOSED_DELAY_S))

    def _work(self) -> bool:
        """Process due rows; False when there was nothing to do."""
        self._hold = self._batch_hold()
        if self._hold is not None:
            return False
        items = self.queue.take(self._batch_hint() * 4)
        if not items:
            return False
        items = self._not_in_flight(items)
        ready = [i for i in items if i.kind == PHOTO and self._settled(i)]
        gone = [i for i in items if i.kind == GONE]
        if ready:  # first: a photo moved here is found by its hash under its old path
            gone += self._process(ready)
        for item in gone:
            self._forget(item)
        return True

    def _not_in_flight(self, items: list[QueueItem]) -> list[QueueItem]:
        """A photo still being processed waits (its new event is looked at afterwards)."""
        with self._taken_lock:
            busy = [i for i in items if i.path in self._taken]
        for item in busy:
            self.queue.later(item, max(self.config.watch.settle_seconds, TICK_S), None)
        return [i for i in items if i not in busy]

    def _batch_hold(self) -> float | None:
        """Seconds to wait for more photos before the due ones are taken: while a batch is
        not full and another photo comes due within the batch wait (counted from the last
        event). None: take them now — a lone photo never waits for a batch."""
        left = self.config.watch.batch_wait - (time.monotonic() - self._last_event)
        if left <= 0 or self.queue.due_count() >= self._batch_hint():
            return None
        return self.queue.next_arrival(left)

    def _batch_hint(self) -> int:
        """model.batch_size, or for 0 (auto) the CPU's default (the pipeline picks the GPU's)."""
        from photoscribe.vision.gpudecode import CPU_BATCH

        return self.config.model.batch_size or CPU_BATCH

    def _settled(self, item: QueueItem) -> bool:
        """Unchanged since its last event: complete. Otherwise it goes back to wait."""
        try:
            stat = file_stat(item.path)
        except FileNotFoundError:
            self.queue.done(item.path, item.seq)  # gone again: its delete event handles it
            return False
        except OSError:  # unreadable (permission, a share gone): the pipeline records why
            return True
        if item.same_file(stat):
            return True
        self.queue.later(item, self.config.watch.settle_seconds, stat)
        return False

    def _process(self, items: Sequence[QueueItem]) -> list[QueueItem]:
        """Run ``items`` through the pipeline, and with them the photos that come due
        meanwhile while full batches of them do (a card import is one run, as in a scan,
        not one run per take). Returns the deleted-photo rows taken on the way, for after."""
        taken: list[Path] = []
        gone: list[QueueItem] = []

        def stream() -> Iterator[Path]:
            batch = list(items)
            while batch:
                with self._taken_lock:
                    self._taken.update((i.path, i.seq) for i in batch)
                taken.extend(i.path for i in batch)
                yield from (i.path for i in batch)
                batch = self._take_more(gone)

        self._last_work = time.monotonic()
        self.pipeline.summary = Summary()  # the daemon counts in Activity; don't grow forever
        try:
            self.pipeline.process(stream())
        except PhotoscribeError as exc:  # e.g. the model cannot load: keep the rows queued
            log.error("%s", exc)
            self._release(taken, delay=RETRY_BATCH_S)
        except Exception:  # a bug or a torch error must not end a service that runs for years
            log.exception("processing a batch failed; its photos are retried in a minute")
            self._release(taken, delay=RETRY_BATCH_S)
        self._last_work = time.monotonic()
        return gone

    def _take_more(self, gone: list[QueueItem]) -> list[QueueItem]:
        """The next due photos for the run in progress, while a full batch of them is due;
        meanwhile new events are queued and the housekeeping is done (status, folders)."""
        self._last_work = time.monotonic()
        self._ingest(self.inbox.drain())
        self._housekeeping()
        stopping = self.controls.stop.is_set() or self.controls.reload.is_set()
        if stopping or self.queue.due_count() < self._batch_hint():
            return []
        items = self._not_in_flight(self.queue.take(self._batch_hint() * 4))
        gone.extend(i for i in items if i.kind == GONE)
        return [i for i in items if i.kind == PHOTO and self._settled(i)]

    def _release(self, paths: Iterable[Path], *, delay: float) -> None:
        for path in paths:
            with self._taken_lock:
                seq = self._taken.pop(path, None)
            if seq is not None:
                self.queue.later(QueueItem(path, PHOTO, None, None, seq), delay, None)

    def _on_outcome(self, path: Path, outcome: str) -> None:
        """Called by the pipeline (any thread) when a photo is written, skipped or failed."""
        if outcome not in FINAL:
            return
        with self._taken_lock:
            seq = self._taken.pop(path, None)
        if seq is not None:
            self.queue.done(path, seq)

    def _forget(self, item: QueueItem) -> None:
        """A photo (or a folder of them) was deleted or moved away."""
        roots = self.watcher.roots
        if self.volumes.gone(item.path, roots):  # not when its drive is just unmounted
            if self.store.delete(item.path):
                log.info("removed from the index (deleted): %s", display(item.path))
            for row in self.store.rows_under(item.path):
                if self.volumes.gone(row.path, roots) and self.store.delete(row.path):
                    log.info("removed from the index (deleted): %s", display(row.path))
        self.queue.done(item.path, item.seq)

    # -- catch-up scans (in a thread: a big library must not block watchdog pings) ------
    @property
    def catching_up(self) -> bool:
        """A catch-up scan is requested or running."""
        return bool(self._rescans) or (self._scanner is not None and self._scanner.is_alive())

    def _request_scan(self, roots: Iterable[Path]) -> None:
        self._rescans.update(roots)

    def _start_scan_if_requested(self) -> None:
        if not self._rescans or (self._scanner is not None and self._scanner.is_alive()):
            return
        roots, self._rescans = sorted(self._rescans), set()
        self._scanner = threading.Thread(
            target=self._scan, args=(roots,), name="catch-up", daemon=True
        )
        self._scanner.start()

    def _scan(self, roots: list[Path]) -> None:
        started = time.monotonic()
        settle = self.config.watch.settle_seconds
        try:
            found = catchup.catch_up(
                roots,
                self.store,
                self.config.scan,
                self.tagger.encoder.model_id,
                lambda items: self.queue.add(items, delay=settle),
                lambda items: self.queue.add(items, delay=settle + GONE_DELAY_S),
                self.controls.stop,
                within=self.watcher.roots,
                volumes=self.volumes,
            )
        except Exception:
            log.exception("catch-up scan of %s failed", ", ".join(map(display, roots)))
            return
        log.info(
            "catch-up scan of %s: %d new or changed, %d gone (%.1f s)",
            ", ".join(map(display, roots)),
            found.todo,
            found.gone,
            time.monotonic() - started,
        )
        self.controls.wake.set()

    # -- housekeeping ------------------------------------------------------------------
    def _housekeeping(self) -> None:
        now = time.monotonic()
        hours = self.config.watch.rescan_hours
        if hours and now - self._last_full_scan > hours * 3600:
            self._last_full_scan = now
            self._request_scan(self.watcher.roots)
        self._captions_if_due(now)
        self._retry_failures_if_due(now)
        self._check_folders_if_due(now)
        self._unload_if_idle(now)
        self._publish()
        self._mark_alive()

    def _captions_if_due(self, now: float) -> None:
        """Fill waiting captions in the background, backing off while the LLM is down."""
        if now < self._next_captions or (self._backlog and self._backlog.is_alive()):
            return
        captions = self.pipeline.captions
        if captions.source is None or not captions.idle:
            return  # a photo still waiting for its caption may get it yet: no second request
        with self._taken_lock:
            busy = set(self._taken)
        rows = [
            r
            for r in self.store.needing_caption(self.tagger.encoder.model_id)
            if r.path not in busy
        ]
        if not rows:
            self._next_captions = now + self.config.watch.caption_retry_seconds
            return
        if not captions.available:
            self._back_off(now, len(rows))
            return
        self._caption_wait = self.config.watch.caption_retry_seconds
        self._next_captions = now + self._caption_wait
        self._backlog = threading.Thread(
            target=self._fill, args=(rows,), name="caption-backlog", daemon=True
        )
        self._backlog.start()

    def _retry_failures_if_due(self, now: float) -> None:
        """Queue the photos whose transient failure (disk full, permission denied, ...)
        is due for another try; the wait doubles with each failure in a row."""
        if now < self._next_failure_check:
            return
        self._next_failure_check = now + FAILURE_CHECK_S
        queued = self.queue.add_due_failures(
            self.config.watch.failure_retry_seconds, MAX_FAILURE_WAIT_S
        )
        if queued:
            log.info("trying %d photos again that failed for a passing reason", queued)
            self.controls.wake.set()

    def _check_folders_if_due(self, now: float) -> None:
        """A watched folder that was unmounted and is back: watch it anew, catch up."""
        if now < self._next_folder_check:
            return
        self._next_folder_check = now + FOLDER_CHECK_S
        for root in self.presence.check():
            self.watcher.rewatch(root)
            self._request_scan([root])

    def _back_off(self, now: float, waiting: int) -> None:
        log.info(
            "the LLM is unavailable; %d captions wait (next try in %.0f s)",
            waiting,
            self._caption_wait,
        )
        self._next_captions = now + self._caption_wait
        self._caption_wait = min(self._caption_wait * 2, MAX_CAPTION_WAIT_S)

    def _fill(self, rows: list) -> None:
        try:
            fill_captions(
                rows,
                self.pipeline.captions,
                self.pipeline.writer,
                self.store,
                self.pipeline.progress,
                self._backlog_stop,
                self.pipeline.context_of,
            )
        except Exception:
            log.exception("filling waiting captions failed")

    def _unload_if_idle(self, now: float) -> None:
        minutes = self.config.watch.idle_unload_minutes
        model = self.tagger.encoder.model
        if minutes and model.loaded and now - self._last_work > minutes * 60:
            model.unload()
            log.info(
                "CLIP model unloaded after %.0f idle minutes (loaded again on demand)", minutes
            )

    def _busy(self) -> bool:
        with self._taken_lock:
            return bool(self._taken)

    def _mark_alive(self) -> None:
        """The loop runs and no photo is in progress: alive for the watchdog (the pinger
        thread pings; with photos in progress, only finished ones count)."""
        if not self._busy():
            self.activity.mark_progress()

    # -- status ------------------------------------------------------------------------
    def llm_state(self) -> str:
        captions = self.pipeline.captions
        if captions.source is None:
            return "off"
        return "ok" if captions.available else "down"

    def _publish(self, *, force: bool = False, state: str = "running") -> str:
        now = time.monotonic()
        if not force and now - self._last_state < STATE_EVERY_S:
            return self._status
        self._last_state = now
        queued = self.queue.depth()
        line = status_line(len(self.watcher.roots), queued, self.activity.rate(), self.llm_state())
        publish_state(self.store, "daemon", self._state(state, queued, line))
        if self.metrics.enabled:
            self.metrics.update(self._snapshot(queued))
        if line != self._status:
            self._status = line
            self.notifier.status(line)
        return line

    def _state(self, state: str, queued: int, line: str) -> dict[str, Any]:
        return {
            "state": state,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "folders": [display(p) for p in self.watcher.folders],
            "poll_folders": [display(p) for p in self.watcher.poll_folders],
            "queued": queued,
            "in_progress": len(self._taken),
            "photos_per_s": round(self.activity.rate(), 2),
            "totals": dict(self.activity.totals),
            "llm": self.llm_state(),
            "model": "loaded" if self.tagger.encoder.model.loaded else "unloaded",
            "status": line,
            "unavailable": {display(p): why for p, why in self.presence.unavailable.items()},
        }

    def _snapshot(self, queued: int) -> Snapshot:
        return Snapshot(
            queued=queued,
            in_progress=len(self._taken),
            captions_waiting=self.store.counts()[State.NEEDS_CAPTION],
            llm=self.llm_state(),
            model_loaded=self.tagger.encoder.model.loaded,
            photos_per_s=self.activity.rate(),
        )

    # -- building and reloading --------------------------------------------------------
    def _new_pipeline(self) -> Pipeline:
        self.workers = build_workers(self.config)
        write = self.file_tasks.get("write")
        return Pipeline(
            self.store,
            self.tagger,
            build_captions(self.config),
            build_writer_factory(self.config, self.store, workers=self.workers, write=write),
            LogProgress(self.activity),
            batch_size=self.config.model.batch_size,
            decode_workers=decode_workers(self.config),
            on_outcome=self._on_outcome,
            context_of=build_context_reader(self.config),
            workers=self.workers,
            decode=self.file_tasks.get("decode"),
            observe=self.metrics.observe,
            images=build_images(self.config),
            facts_at_load=not self.config.metadata.write,
        )

    def _new_watcher(self) -> FolderWatcher:
        watch = self.config.watch
        if not watch.folders and not watch.poll_folders:
            raise ConfigError(
                "nothing to watch: list your photo folders under watch.folders (or "
                "watch.poll_folders for network mounts) in the config"
            )
        return FolderWatcher(
            watch.folders,
            watch.poll_folders,
            self.config.scan,
            self.inbox,
            poll_interval=watch.poll_interval,
        )

    def _reload(self) -> None:
        """SIGHUP: re-read the config; keep running on the old one if the new one is bad."""
        self.controls.reload.clear()
        if self.reload_config is None:
            return
        self.notifier.reloading()
        try:
            new = self.reload_config()
            _check_folders(new)
        except PhotoscribeError as exc:
            log.error("config not reloaded, keeping the running one: %s", exc)
            self.notifier.ready_after_reload(self._publish(force=True))
            return
        self._apply(new)
        self.notifier.ready_after_reload(self._publish(force=True))

    def _apply(self, new: Config) -> None:
        if new.index_path != self.config.index_path:
            log.warning("index_path changes take effect after a restart")
            new = dataclasses.replace(new, index_path=self.config.index_path)
        self.watcher.stop()
        self._stop_threads()
        self._backlog_stop = threading.Event()
        self.pipeline.flush()
        self.pipeline.captions.close()
        self.pipeline.writer.close()
        self.workers.close()
        keep_model = (new.model, new.tagging, new.cache_dir) == (
            self.config.model,
            self.config.tagging,
            self.config.cache_dir,
        )
        self.config = new
        self.pinger.limit_s = new.watch.stuck_minutes * 60
        if not keep_model:
            self.tagger = build_tagger(new)
        self._caption_wait = new.watch.caption_retry_seconds
        self._next_captions = 0.0
        self.pipeline = self._new_pipeline()
        self.watcher = self._new_watcher()
        self.presence = Presence(self.volumes, self.watcher.roots)
        self.workers.warm()
        self.watcher.start()
        self._request_scan(self.watcher.roots)
        logging.getLogger().setLevel(new.log_level)
        log.info("config reloaded")


def _check_folders(config: Config) -> None:
    for folder in (*config.watch.folders, *config.watch.poll_folders):
        if not folder.is_dir():
            raise ConfigError(f"the watched folder {display(folder)} does not exist")
