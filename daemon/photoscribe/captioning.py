"""Captions with bounded concurrency, decoupled from tagging.

``offer`` never blocks. A tagged photo waits a short while (``wait``) for its caption,
so that a caption which arrives in time goes into the photo with the keywords, in one
write. When the wait is over first, ``on_late`` is called: the keywords go ahead alone.
A request not started by then is dropped (the backlog pass asks again later, at the
LLM's pace); one already running still delivers its caption to ``on_done``, a second
write. ``submit`` (the backlog pass) waits for one of its bounded slots instead. A
``Captioner`` whose circuit is open makes every offer decline at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Protocol

from photoscribe.errors import CaptionError, CaptionRejected
from photoscribe.records import REJECTED, Keyword

log = logging.getLogger(__name__)

# on_done(caption or None, reason or None)
Done = Callable[[str | None, str | None], None]
Late = Callable[[], None]
DEFAULT_WAIT_S = 5.0


class CaptionSource(Protocol):
    @property
    def available(self) -> bool: ...

    def caption(self, keywords: Sequence[Keyword], context: str | None = None) -> str: ...


class _Offer:
    """One photo waiting for its caption: the caption or the deadline, whichever is first.

    Both callbacks run under the offer's lock, so ``on_late`` always happens before a
    late ``on_done`` and never after an in-time one."""

    def __init__(self, on_done: Done, on_late: Late, deadline: float, settled: Late) -> None:
        self.on_done, self.on_late = on_done, on_late
        self.deadline = deadline
        self.future: Future[None] | None = None
        self._settled = settled  # tells the stage this offer needs nothing more
        self._lock = threading.Lock()
        self._state = "waiting"  # → "done" | "late" → "done"

    def deliver(self, caption: str | None, reason: str | None) -> None:
        with self._lock:
            self._state = "done"
            try:
                self.on_done(caption, reason)
            finally:
                self._settled()

    def expire(self) -> None:
        with self._lock:
            if self._state != "waiting":
                return
            self._state = "late"
            not_started = self.future is not None and self.future.cancel()
            try:
                self.on_late()
            finally:
                if not_started:
                    self._state = "done"
                    self._settled()


class _Deadlines:
    """One thread that expires offers when their wait is over (oldest first: all offers
    wait equally long, so deadlines come in the order the offers were made)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._offers: deque[_Offer] = deque()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def add(self, offer: _Offer) -> None:
        with self._cond:
            self._offers.append(offer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="caption-wait", daemon=True)
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while (offer := self._next()) is not None:
            offer.expire()

    def _next(self) -> _Offer | None:
        with self._cond:
            while not self._stopped:
                if not self._offers:
                    self._cond.wait()
                    continue
                left = self._offers[0].deadline - time.monotonic()
                if left <= 0:
                    return self._offers.popleft()
                self._cond.wait(left)
            return None


class CaptionStage:
    def __init__(
        self,
        source: CaptionSource | None,
        concurrency: int,
        backlog: int,
        wait: float = DEFAULT_WAIT_S,
    ) -> None:
        self.source = source
        self.wait = wait  # seconds a tagged photo waits for its caption (``offer``)
        self._slots = threading.BoundedSemaphore(concurrency + backlog)  # for ``submit``
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="caption")
        self._futures: set[Future[None]] = set()
        self._deadlines = _Deadlines()
        self._idle = threading.Condition()
        self._open = 0  # offers that may still call back
        self.observe: Callable[[str, float], None] = lambda stage, seconds: None  # a reply

    @property
    def available(self) -> bool:
        return self.source is not None and self.source.available

    @property
    def idle(self) -> bool:
        """No offer is waiting for its caption (nor has a late one still coming)."""
        with self._idle:
            return self._open == 0

    def offer(
        self,
        keywords: Sequence[Keyword],
        on_done: Done,
        context: str | None = None,
        *,
        on_late: Late,
    ) -> bool:
        """Ask for a caption without waiting; False means 'go ahead without one'.

        ``on_done`` gets the caption if it comes within ``wait``; otherwise ``on_late``
        is called then, and ``on_done`` later only if the request had already started.
        A ``wait`` of 0 declines every offer: keywords first, captions in the backlog."""
        if not self.available or not keywords or self.wait <= 0:
            return False
        with self._idle:
            self._open += 1
        offer = _Offer(on_done, on_late, time.monotonic() + self.wait, self._settled)
        try:
            offer.future = self._pool.submit(self._answer, offer, keywords, context)
        except RuntimeError:  # closed: nothing will call back
            self._settled()
            return False
        self._deadlines.add(offer)
        return True

    def submit(
        self,
        keywords: Sequence[Keyword],
        on_done: Done,
        stop: threading.Event | None = None,
        context: str | None = None,
    ) -> bool:
        """Start a caption, waiting for a slot; False when the LLM is unavailable (or
        ``stop`` is set while waiting)."""
        if not self.available or not keywords:
            return False
        while not self._slots.acquire(timeout=0.5):
            if (stop is not None and stop.is_set()) or not self.available:
                return False
        future = self._pool.submit(self._run, keywords, on_done, context)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return True

    def drain(self) -> None:
        """Wait until every caption asked for so far has been handed to its callback
        (or its photo went ahead without it)."""
        wait(list(self._futures))
        with self._idle:
            self._idle.wait_for(lambda: self._open == 0)

    def _settled(self) -> None:
        with self._idle:
            self._open -= 1
            self._idle.notify_all()

    def _answer(self, offer: _Offer, keywords: Sequence[Keyword], context: str | None) -> None:
        try:
            offer.deliver(*self.ask(keywords, context))
        except Exception:  # a bug in a callback must not kill the pool silently
            log.exception("caption callback failed")

    def _run(self, keywords: Sequence[Keyword], on_done: Done, context: str | None) -> None:
        try:
            caption, reason = self.ask(keywords, context)
            on_done(caption, reason)
        except Exception:  # a bug in on_done must not kill the pool silently
            log.exception("caption callback failed")
        finally:
            self._slots.release()

    def ask(
        self, keywords: Sequence[Keyword], context: str | None
    ) -> tuple[str | None, str | None]:
        assert self.source is not None
        started = time.monotonic()
        try:
            caption = self.source.caption(keywords, context)
            self.observe("caption", time.monotonic() - started)
            return caption, None
        except CaptionRejected as exc:
            return None, f"{REJECTED} {exc}"
        except CaptionError as exc:
            return None, f"caption unavailable: {exc}"
        except Exception as exc:  # a bug must not make the photo vanish from the run
            log.exception("asking for a caption failed")
            return None, f"caption failed: {exc}"

    def close(self, *, cancel: bool = False, wait: bool = True) -> None:
        """Stop; ``cancel`` drops captions not started yet (their photos stay queued:
        neither callback is called for them); ``wait=False`` returns without waiting for
        the requests under way (Ctrl-C)."""
        if cancel:
            self._deadlines.stop()
        self._pool.shutdown(wait=wait, cancel_futures=cancel)
        self._deadlines.stop()
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
