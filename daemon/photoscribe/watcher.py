"""Folder watching with watchdog: file events in, a thread-safe inbox of changes out.

The observer threads only append to the inbox; the daemon's main loop drains it,
so a 2,000-photo card import costs a few list appends per file here and one SQLite
transaction per tick there. Events are not trusted for completeness: the daemon
also scans at start, after an inotify queue overflow and periodically.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from photoscribe.config import ScanConfig
from photoscribe.errors import ConfigError
from photoscribe.fsutil import display
from photoscribe.scanner import LinkPolicy, accepts

log = logging.getLogger(__name__)
WATCHDOG_LOGGERS = ("watchdog.observers.inotify", "watchdog.observers.inotify_c")


@dataclass(frozen=True)
class Change:
    """``kind``: "changed" (created or written), "closed" (a writer closed it, or it was
    renamed into place, as copy tools do with a finished temp file: complete),
    "deleted" (or moved away), or "rescan" (a folder whose contents must be listed:
    created, moved in, or events were lost)."""

    kind: str
    path: Path


class Inbox:
    """Changes from observer threads, drained by the main loop."""

    def __init__(self, wake: threading.Event | None = None) -> None:
        self._items: list[Change] = []
        self._lock = threading.Lock()
        self.wake = wake or threading.Event()

    def put(self, change: Change) -> None:
        with self._lock:
            self._items.append(change)
        self.wake.set()

    def drain(self) -> list[Change]:
        with self._lock:
            items, self._items = self._items, []
        return items


class _Handler:
    """watchdog event handler (duck-typed: watchdog only calls ``dispatch``)."""

    def __init__(self, root: Path, scan: ScanConfig, inbox: Inbox, links: LinkPolicy) -> None:
        self.root = root
        self.scan = scan
        self.inbox = inbox
        self.links = links  # a link to a file: skipped, or its target inside the roots

    def dispatch(self, event) -> None:
        kind = event.event_type
        src = Path(_text(event.src_path))
        if event.is_directory:
            self._directory(kind, src, event)
            return
        if kind == "moved":
            self._deleted(src)
            self._changed(Path(_text(event.dest_path)), "closed")  # a rename is atomic
        elif kind == "deleted":
            self._deleted(src)
        elif kind in ("created", "modified", "closed"):
            self._changed(src, kind if kind == "closed" else "changed")

    def _directory(self, kind: str, src: Path, event) -> None:
        if kind == "moved":
            self.inbox.put(Change("deleted", src))  # everything that was below it
            self.inbox.put(Change("rescan", Path(_text(event.dest_path))))
        elif kind == "created":
            self.inbox.put(Change("rescan", src))  # files copied in before the watch existed
        elif kind == "deleted":
            self.inbox.put(Change("deleted", src))

    def _changed(self, path: Path, kind: str) -> None:
        if accepts(path, self.root, self.scan) and (photo := self.links.photo(path)) is not None:
            self.inbox.put(Change(kind, photo))

    def _deleted(self, path: Path) -> None:
        if accepts(path, self.root, self.scan):
            self.inbox.put(Change("deleted", path))


class _OverflowAlarm(logging.Handler):
    """watchdog rebuilds its watches after an inotify queue overflow but tells event
    handlers nothing; it does log it. Lost events → a rescan of every watched folder."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_overflow()


class FolderWatcher:
    def __init__(
        self,
        folders: Sequence[Path],
        poll_folders: Sequence[Path],
        scan: ScanConfig,
        inbox: Inbox,
        *,
        poll_interval: float,
    ) -> None:
        self.folders = [f.absolute() for f in folders]
        self.poll_folders = [f.absolute() for f in poll_folders]
        self.scan = scan
        self.inbox = inbox
        self.poll_interval = poll_interval
        self._observers: list = []
        self._watches: dict[Path, tuple] = {}  # folder → (observer, handler, watch)
        self._alarm = _OverflowAlarm(self._overflowed)

    @property
    def roots(self) -> list[Path]:
        return self.folders + self.poll_folders

    def start(self) -> None:
        from watchdog.observers import Observer
        from watchdog.observers.polling import PollingObserver

        for name in WATCHDOG_LOGGERS:
            logging.getLogger(name).addHandler(self._alarm)
        try:
            if self.folders:
                self._start(Observer(), self.folders)
            if self.poll_folders:
                self._start(PollingObserver(timeout=self.poll_interval), self.poll_folders)
        except BaseException:
            self.stop()
            raise

    def _start(self, observer, folders: list[Path]) -> None:
        for folder in folders:
            _check_folder(folder)
        # Started first, the observer adds a folder's watches as it is scheduled, so a
        # failure (e.g. the inotify limit) is raised for the folder that hit it.
        observer.daemon = True
        observer.start()
        self._observers.append(observer)
        links = LinkPolicy(self.scan.follow_symlinks, self.roots)
        for folder in folders:
            self._schedule(observer, _Handler(folder, self.scan, self.inbox, links), folder)
        log.info("watching %s", ", ".join(display(f) for f in folders))

    def _schedule(self, observer, handler: _Handler, folder: Path) -> None:
        try:
            watch = observer.schedule(
                handler, str(folder), recursive=True, event_filter=_event_types()
            )
        except OSError as exc:
            raise _watch_error(folder, exc) from exc
        self._watches[folder] = (observer, handler, watch)

    def rewatch(self, folder: Path) -> bool:
        """Set the watch of ``folder`` up again: after its file system was unmounted and
        mounted again the old watch sees nothing. False (and a warning) if it cannot be."""
        found = self._watches.get(folder)
        if found is None:
            return False
        observer, handler, watch = found
        with contextlib.suppress(KeyError, OSError):
            observer.unschedule(watch)
        try:
            _check_folder(folder)
            self._schedule(observer, handler, folder)
        except ConfigError as exc:
            log.warning("%s", exc)
            return False
        log.info("watching %s again", display(folder))
        return True

    def _overflowed(self) -> None:
        log.warning("file events were lost (inotify queue overflow); rescanning the folders")
        for folder in self.roots:
            self.inbox.put(Change("rescan", folder))

    def stop(self) -> None:
        for name in WATCHDOG_LOGGERS:
            logging.getLogger(name).removeHandler(self._alarm)
        for observer in self._observers:
            observer.stop()
        for observer in self._observers:
            if observer.is_alive():
                observer.join(timeout=10)
        self._observers.clear()
        self._watches.clear()


def _event_types() -> list[type]:
    """The events photoscribe reacts to (no opened/attrib/closed-without-write noise)."""
    from watchdog import events as e

    return [
        e.FileCreatedEvent,
        e.FileModifiedEvent,
        e.FileClosedEvent,
        e.FileMovedEvent,
        e.FileDeletedEvent,
        e.DirCreatedEvent,
        e.DirMovedEvent,
        e.DirDeletedEvent,
    ]


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ConfigError(
            f"the watched folder {display(folder)} does not exist or is not a folder; "
            "fix watch.folders / watch.poll_folders in the config"
        )


def _watch_error(folder: Path, exc: OSError) -> ConfigError:
    if exc.errno == errno.ENOSPC:
        return ConfigError(
            f"cannot watch {display(folder)}: the inotify watch limit is reached "
            f"(fs.inotify.max_user_watches = {_sysctl('max_user_watches')}; one watch per "
            "folder). Raise it: echo fs.inotify.max_user_watches=524288 | sudo tee "
            "/etc/sysctl.d/90-photoscribe.conf && sudo sysctl --system — or list the "
            "folder under watch.poll_folders"
        )
    if exc.errno == errno.EMFILE:
        return ConfigError(
            f"cannot watch {display(folder)}: too many inotify instances "
            f"(fs.inotify.max_user_instances = {_sysctl('max_user_instances')}). Raise it: "
            "echo fs.inotify.max_user_instances=1024 | sudo tee "
            "/etc/sysctl.d/90-photoscribe.conf && sudo sysctl --system"
        )
    return ConfigError(f"cannot watch {display(folder)}: {exc.strerror or exc}")


def _sysctl(name: str) -> str:
    try:
        return Path(f"/proc/sys/fs/inotify/{name}").read_text().strip()
    except OSError:
        return "unknown"


def _text(path: str | bytes) -> str:
    return path if isinstance(path, str) else path.decode("utf-8", "surrogateescape")
