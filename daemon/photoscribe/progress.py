"""Progress: a one-line bar on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)
LOG_EVERY_S = 10.0
DRAW_EVERY_S = 0.1


class Progress:
    def __init__(self, stream: TextIO | None = None, *, bar: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.total = 0
        self.what = "photos"
        self.count = 0
        self.failed = 0
        self._started = 0.0
        self._last_draw = 0.0

    def start(self, total: int, what: str) -> None:
        self.finish()
        self.total, self.what, self.count, self.failed = total, what, 0, 0
        self._started = self._last_draw = time.monotonic()

    def advance(self, outcome: str, path: Path | None = None) -> None:
        self.count += 1
        self.failed += outcome == "failed"
        now = time.monotonic()
        if self.bar and (now - self._last_draw >= DRAW_EVERY_S or self.count == self.total):
            self._draw(now)
        elif not self.bar and now - self._last_draw >= LOG_EVERY_S:
            log.info("%s", self.line(now))
            self._last_draw = now

    def rate(self, now: float | None = None) -> float:
        elapsed = (now or time.monotonic()) - self._started
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None) -> str:
        failed = f" · {self.failed} failed" if self.failed else ""
        return f"{self.what} {self.count}/{self.total} · {self.rate(now):.1f}/s{failed}"

    def _draw(self, now: float) -> None:
        width = 24
        filled = int(width * self.count / self.total) if self.total else width
        bar = "█" * filled + "·" * (width - filled)
        self.stream.write(f"\r{bar} {self.line(now)}\033[K")
        self.stream.flush()
        self._last_draw = now

    def finish(self) -> None:
        if self.bar and self.total:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
        self.total = 0
