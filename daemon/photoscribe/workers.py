"""Worker processes for the native parsers that read untrusted files (decoders, exiv2).

A crash inside libjpeg, libtiff, libheif or exiv2 (SIGSEGV, SIGABRT), the kernel's OOM
killer, a file that needs more memory than ``scan.file_memory_mb`` or more time than
``scan.file_timeout_seconds``: each ends one worker, never the daemon or the scan. The
call that was running raises a ``WorkerError`` (a PhotoError: that photo is recorded as
failed with the reason) and the next call gets a fresh worker.

Workers are forked by a template process (``zygote``): a fresh interpreter that has
imported what tasks need; never a fork of the caller (whose threads and torch must not
be copied), and never a re-run of the caller's ``__main__`` as multiprocessing's spawn
and forkserver do (``python -m photoscribe`` would start a scan in every worker). torch
never loads in them. A task is a module-level function (sent by
reference) and its arguments; results come back pickled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from photoscribe.errors import (
    PhotoError,
    WorkerCrashed,
    WorkerOutOfMemory,
    WorkerTimeout,
    WorkerUnavailable,
    is_transient,
)
from photoscribe.zygote import Zygote

log = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0  # a worker that is not ready by then (a machine far too busy)
SKIPPED = "it was skipped and will not be retried until it changes"


@dataclass(frozen=True)
class Limits:
    """Per-call caps of one worker (``scan.file_memory_mb``, ``scan.file_timeout_seconds``)."""

    memory_mb: int = 1024
    timeout_s: float = 60.0


class Phase:
    """Marks the keyword argument a task is given to say what it is doing now (for the
    failure reason when it dies: "the image decoder", "the metadata reader")."""


PHASE = Phase()


@dataclass
class Relay:
    """A keyword argument for a task: a callable of the caller's, run in the caller's
    process when the task calls it (e.g. the undo journal, before a file is replaced)."""

    callback: Callable[..., Any]


class _RelayMark:
    pass


# -- the worker's side ---------------------------------------------------------------------
def preload() -> None:
    """Import everything a task may need (in the template process, before any fork)."""
    import photoscribe.caption.context
    import photoscribe.metadata.recorded
    import photoscribe.metadata.sidecar
    import photoscribe.worktasks  # noqa: F401


def serve(fd: int, memory_mb: int) -> None:
    """A forked worker's life: serve tasks on the socket ``fd``."""
    _serve(Connection(fd), memory_mb)


def _serve(conn: Any, memory_mb: int) -> None:
    """One worker: run tasks until told to stop or the caller goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the caller to handle
    _limit_memory(memory_mb)
    conn.send(("ready", os.getpid()))  # the time cap starts with each task, not before
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        fn, args, kwargs = task
        kwargs = {name: _worker_side(conn, value) for name, value in kwargs.items()}
        try:
            conn.send(("ok", fn(*args, **kwargs)))
        except MemoryError:
            conn.send(("oom", None))
            return  # a fresh worker for the next file: the heap may be fragmented
        except BaseException as exc:  # everything goes back to the caller
            conn.send(("err", _picklable(exc)))


def _worker_side(conn: Any, value: Any) -> Any:
    if isinstance(value, Phase):
        return lambda name: conn.send(("phase", name))
    if isinstance(value, _RelayMark):

        def relayed(*args: Any) -> Any:
            conn.send(("call", args))
            kind, result = conn.recv()
            if kind == "raise":
                raise result
            return result

        return relayed
    return value


def _limit_memory(memory_mb: int) -> None:
    """Cap the address space at what the worker uses now plus ``memory_mb``: a file
    that needs more gets MemoryError (or a failed allocation in C), not the machine."""
    if memory_mb <= 0:
        return
    limit = _address_space() + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _address_space() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` as it can cross the pipe; whether it may pass by itself is kept (the
    cause that says so, e.g. an OSError ENOSPC, does not travel)."""
    import pickle

    if isinstance(exc, PhotoError) and is_transient(exc):
        exc.transient = True
    try:
        pickle.dumps(exc)
    except Exception:  # not picklable
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


# -- the caller's side -----------------------------------------------------------------------
class _Worker:
    """One worker process (forked by the pool's template process) and our socket to it."""

    def __init__(self, zygote: Zygote, memory_mb: int) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.pid = zygote.fork(theirs.fileno(), memory_mb)
        self.conn = Connection(ours.detach())
        self._zygote = zygote
        self.exitcode: int | None = None

    @property
    def alive(self) -> bool:
        """Not known to have ended; an idle worker with something to read has (EOF)."""
        return self.exitcode is None and not self.conn.poll(0)

    def reap(self, *, kill: bool = False) -> None:
        if self.exitcode is not None:
            return
        if kill:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
        try:
            self.exitcode = self._zygote.wait(self.pid)
        except OSError:  # its parent, the template, was killed too: so was it
            self.exitcode = -signal.SIGKILL

    def stop(self, *, kill: bool = False) -> None:
        if not kill:
            with contextlib.suppress(OSError):
                self.conn.send(None)
            with contextlib.suppress(OSError, EOFError):
                kill = not self.conn.poll(5)  # readable: it exited (EOF)
        self.reap(kill=kill)
        self.conn.close()


class WorkerPool:
    """Up to ``size`` worker processes, started on first use and restarted after a death.

    ``call`` may be used from several threads at once; each call has a worker to itself."""

    def __init__(self, size: int, limits: Limits | None = None) -> None:
        self.size = size
        self.limits = limits or Limits()
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(size):
            self._idle.put(None)  # a slot whose worker is started when first needed
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._zygote: Zygote | None = None
        self._closed = False
        self.restarts = 0  # workers lost to a crash, a limit or a timeout

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a worker. ``what`` names the work in a failure reason
        ("image decoder"); a task given ``PHASE`` may rename it as it goes."""
        worker = self._checkout()
        try:
            return self._run(worker, what, fn, args, kwargs)
        finally:
            self._checkin(worker)

    def warm(self) -> None:
        """Start every worker now, so that the first files do not wait for them."""
        started = [self._checkout() for _ in range(self.size)]
        for worker in started:
            self._checkin(worker)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
        for worker in workers:
            worker.stop()
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------
    def _checkout(self) -> _Worker:
        worker = self._idle.get()
        if worker is not None and worker.alive and not worker.conn.poll(0):
            return worker  # (an idle worker that has something to read has gone: EOF)
        if worker is not None:  # died while idle (e.g. killed from outside)
            self._forget(worker)
        try:
            return self._start()
        except BaseException:
            self._idle.put(None)
            raise

    def _checkin(self, worker: _Worker) -> None:
        if worker.alive:
            self._idle.put(worker)
            return
        self._forget(worker)
        self._idle.put(None)

    def _start(self) -> _Worker:
        started = time.perf_counter()
        try:
            worker = _Worker(self._template(), self.limits.memory_mb)
        except OSError as exc:
            raise WorkerUnavailable(f"no worker process could be started ({exc})") from exc
        try:
            ready = worker.conn.poll(START_TIMEOUT_S) and worker.conn.recv()[0] == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            worker.stop(kill=True)
            raise WorkerUnavailable(
                f"no worker process could be started (exit code {worker.exitcode}); "
                "see the log above, then try again"
            )
        log.debug("worker %d started in %.0f ms", worker.pid, _ms(started))
        with self._lock:
            self._workers.add(worker)
        return worker

    def _template(self) -> Zygote:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            if self._zygote is None or self._zygote.process.poll() is not None:
                self._zygote = Zygote()
            return self._zygote

    def _forget(self, worker: _Worker) -> None:
        with self._lock:
            self._workers.discard(worker)
        worker.stop(kill=True)

    def _run(self, worker: _Worker, what: str, fn: Callable, args: tuple, kwargs: dict) -> Any:
        relays = {k: v.callback for k, v in kwargs.items() if isinstance(v, Relay)}
        sent = {k: (_RelayMark() if k in relays else v) for k, v in kwargs.items()}
        try:
            worker.conn.send((fn, args, sent))
        except (BrokenPipeError, ConnectionResetError):
            raise self._died(worker, what) from None
        deadline = time.monotonic() + self.limits.timeout_s
        while True:
            if not worker.conn.poll(max(0.0, deadline - time.monotonic())):
                self._lost(worker, kill=True)
                raise WorkerTimeout(
                    f"the {what} took longer than {self.limits.timeout_s:g} s on this file "
                    f"(scan.file_timeout_seconds) and was stopped; {SKIPPED}"
                )
            try:
                kind, value = worker.conn.recv()
            except (EOFError, OSError):
                raise self._died(worker, what) from None
            if kind == "ok":
                return value
            if kind == "err":
                raise value
            if kind == "oom":
                self._lost(worker)
                raise WorkerOutOfMemory(
                    f"the {what} needed more than {self.limits.memory_mb} MB for this file "
                    f"(scan.file_memory_mb); {SKIPPED}"
                )
            if kind == "phase":
                what = value
            elif kind == "call":
                worker.conn.send(_relay(relays, value))

    def _lost(self, worker: _Worker, *, kill: bool = False) -> None:
        self.restarts += 1
        worker.reap(kill=kill)

    def _died(self, worker: _Worker, what: str) -> WorkerCrashed:
        self._lost(worker)
        code = worker.exitcode
        log.warning("a worker died (exit code %s); starting another", code)
        return WorkerCrashed(crash_reason(what, code))


def _relay(relays: dict[str, Callable], args: tuple) -> tuple[str, Any]:
    (callback,) = relays.values()  # one relayed callable per task
    try:
        return ("ok", callback(*args))
    except Exception as exc:  # the task decides; it re-raises it
        return ("raise", _picklable(exc))


def crash_reason(what: str, exitcode: int | None) -> str:
    """The failure reason for a worker that died with ``exitcode`` (-N: signal N)."""
    if exitcode is not None and exitcode < 0:
        name = _signal_name(-exitcode)
        if -exitcode == signal.SIGKILL:
            return (
                f"the {what} was killed ({name}, most likely by the system running out of "
                f"memory) while working on this file; {SKIPPED}"
            )
        return f"the {what} crashed ({name}) on this file; {SKIPPED}"
    return f"the {what} exited unexpectedly (exit code {exitcode}) on this file; {SKIPPED}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class InProcess:
    """The ``WorkerPool`` interface without processes (tests of other parts, tools that
    read only trusted files): no isolation, no limits."""

    restarts = 0

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs = {k: _in_process(v) for k, v in kwargs.items()}
        return fn(*args, **kwargs)

    def warm(self) -> None:
        pass

    def close(self) -> None:
        pass


def _in_process(value: Any) -> Any:
    if isinstance(value, Phase):
        return lambda name: None
    if isinstance(value, Relay):
        return value.callback
    return value
