"""systemd watchdog pings from their own thread, only while the daemon makes progress.

The main loop marks progress on every tick while no photo is in progress, the pipeline
on every photo it finishes. Pinging from a thread of its own keeps a long batch (a slow
CPU, a large model loading) from looking like a hang; a tagger, writer or main loop
stuck for ``limit_s`` stops the pings, and systemd restarts the service.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from photoscribe.activity import Activity

log = logging.getLogger("photoscribe.daemon")


class Pinger:
    def __init__(self, notifier: Any, activity: Activity, limit_s: float) -> None:
        self.notifier = notifier  # sdnotify.Notifier: watchdog(), watchdog_interval
        self.activity = activity
        self.limit_s = limit_s  # watch.stuck_minutes in seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._withheld = False

    def start(self) -> None:
        interval = getattr(self.notifier, "watchdog_interval", None)
        if not interval or self._thread is not None:
            return  # no watchdog armed for this process
        self.activity.mark_progress()  # starting up (loading the model) was progress
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="watchdog-ping", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self.ping_if_alive()
            self._stop.wait(interval)

    def ping_if_alive(self) -> bool:
        """One watchdog ping, unless nothing made progress for ``limit_s``."""
        idle_s = self.activity.clock() - self.activity.last_progress
        if idle_s > self.limit_s:
            if not self._withheld:
                self._withheld = True
                log.error(
                    "no photo finished for %.1f minutes with work in progress; "
                    "withholding watchdog pings",
                    idle_s / 60,
                )
            return False
        if self._withheld:
            self._withheld = False
            log.info("photos are finishing again; watchdog pings resume")
        self.notifier.watchdog()
        return True
