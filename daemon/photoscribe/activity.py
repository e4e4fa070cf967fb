"""What the daemon has been doing: throughput, progress and whether it is stuck."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

from photoscribe.fsutil import display

log = logging.getLogger("photoscribe.daemon")
RATE_WINDOW_S = 60.0
DONE = ("tagged", "tagged+caption", "captioned", "skipped", "failed")


class Activity:
    """Counts outcomes (thread-safe) and keeps the timestamps of recent writes."""

    def __init__(self, clock=time.monotonic, on_record=None) -> None:
        self.clock = clock
        self.on_record = on_record  # e.g. Metrics.record: called with each outcome
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self.totals = {name: 0 for name in DONE}
        self.last_progress = clock()

    def record(self, outcome: str) -> None:
        now = self.clock()
        with self._lock:
            self.totals[outcome] = self.totals.get(outcome, 0) + 1
            self.last_progress = now
            if outcome in ("tagged", "tagged+caption"):
                self._recent.append(now)
                self._trim(now)
        if self.on_record is not None:
            self.on_record(outcome)

    def rate(self) -> float:
        """Photos written per second over the last minute."""
        now = self.clock()
        with self._lock:
            self._trim(now)
            if not self._recent:
                return 0.0
            return len(self._recent) / max(now - self._recent[0], 1.0)

    def stuck(self, busy: bool, limit_s: float) -> bool:
        """Work is in flight but nothing finished for ``limit_s`` seconds."""
        return busy and self.clock() - self.last_progress > limit_s

    def mark_progress(self) -> None:
        self.last_progress = self.clock()

    def _trim(self, now: float) -> None:
        while self._recent and now - self._recent[0] > RATE_WINDOW_S:
            self._recent.popleft()


class LogProgress:
    """The pipeline's progress sink in the daemon: one journal line per photo."""

    def __init__(self, activity: Activity) -> None:
        self.activity = activity

    def start(self, total: int, what: str) -> None:
        if what == "captions":
            log.info("asking the LLM for %d waiting captions", total)

    def advance(self, outcome: str, path: Path | None = None) -> None:
        self.activity.record(outcome)
        if path is None or outcome == "failed":  # failures are logged where they happen
            return
        level = logging.DEBUG if outcome == "skipped" else logging.INFO
        log.log(level, "%s: %s", outcome, display(path))

    def finish(self) -> None:
        pass


def status_line(folders: int, queued: int, rate: float, llm: str) -> str:
    """The systemd STATUS= text, e.g. 'watching 3 folders · 1,204 queued · 40.1 photos/s'."""
    noun = "folder" if folders == 1 else "folders"
    return f"watching {folders} {noun} · {queued:,} queued · {rate:.1f} photos/s · LLM {llm}"
