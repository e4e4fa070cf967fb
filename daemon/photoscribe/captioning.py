"""Captions with bounded concurrency, decoupled from tagging.

``offer`` never blocks: when the LLM lags behind (all slots busy), the photo goes
ahead with keywords only and its caption is filled in by the backlog pass. A
``Captioner`` whose circuit is open makes every offer defer at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Protocol

from photoscribe.errors import CaptionError, CaptionRejected
from photoscribe.records import REJECTED, Keyword

log = logging.getLogger(__name__)

# on_done(caption or None, reason or None)
Done = Callable[[str | None, str | None], None]


class CaptionSource(Protocol):
    @property
    def available(self) -> bool: ...

    def caption(self, keywords: Sequence[Keyword], context: str | None = None) -> str: ...


class CaptionStage:
    def __init__(self, source: CaptionSource | None, concurrency: int, backlog: int) -> None:
        self.source = source
        self._slots = threading.BoundedSemaphore(concurrency + backlog)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="caption")
        self._futures: set[Future[None]] = set()

    @property
    def available(self) -> bool:
        return self.source is not None and self.source.available

    def offer(self, keywords: Sequence[Keyword], on_done: Done, context: str | None = None) -> bool:
        """Start a caption if a slot is free; False means 'go ahead without one'."""
        if not self.available or not keywords or not self._slots.acquire(blocking=False):
            return False
        self._start(keywords, on_done, context)
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
        self._start(keywords, on_done, context)
        return True

    def _start(self, keywords: Sequence[Keyword], on_done: Done, context: str | None) -> None:
        future = self._pool.submit(self._run, keywords, on_done, context)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    def drain(self) -> None:
        """Wait until every caption started so far has been handed to its callback."""
        wait(list(self._futures))

    def _run(self, keywords: Sequence[Keyword], on_done: Done, context: str | None) -> None:
        try:
            caption, reason = self._ask(keywords, context)
            on_done(caption, reason)
        except Exception:  # a bug in on_done must not kill the pool silently
            log.exception("caption callback failed")
        finally:
            self._slots.release()

    def _ask(
        self, keywords: Sequence[Keyword], context: str | None
    ) -> tuple[str | None, str | None]:
        assert self.source is not None
        try:
            return self.source.caption(keywords, context), None
        except CaptionRejected as exc:
            return None, f"{REJECTED} {exc}"
        except CaptionError as exc:
            return None, f"caption unavailable: {exc}"
        except Exception as exc:  # a bug must not make the photo vanish from the run
            log.exception("asking for a caption failed")
            return None, f"caption failed: {exc}"

    def close(self, *, cancel: bool = False, wait: bool = True) -> None:
        """Stop; ``cancel`` drops captions not started yet (their photos stay queued);
        ``wait=False`` returns without waiting for the requests under way (Ctrl-C)."""
        self._pool.shutdown(wait=wait, cancel_futures=cancel)
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
