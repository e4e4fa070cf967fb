"""A tiny sd_notify(3) client: tell systemd we are ready, alive, reloading or stopping.

Stdlib only. Without ``$NOTIFY_SOCKET`` (not started by a ``Type=notify`` unit) every call
is a no-op. Messages are datagrams on an ``AF_UNIX`` socket, sent without blocking; a send
that fails is logged once and dropped, so the daemon never dies because the socket went away.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends state changes to the service manager; see ``from_env``."""

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None) -> None:
        """``address``: a socket path, or ``"\\0name"`` for the abstract namespace."""
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False
        self._closed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Notifier:
        """The notifier systemd asked for: NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID."""
        address = _socket_address(environ.get("NOTIFY_SOCKET", ""))
        return cls(address, watchdog_usec=_watchdog_usec(environ) if address else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None and not self._closed

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WatchdogSec=), None without a watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1e6

    def ready(self, status: str | None = None) -> None:
        self._send("READY=1", *_status_lines(status), f"MAINPID={os.getpid()}")

    def ready_after_reload(self, status: str | None = None) -> None:
        self._send("READY=1", *_status_lines(status))

    def status(self, text: str) -> None:
        self._send(*_status_lines(text))

    def watchdog(self) -> None:
        """Pings the watchdog; nothing when no watchdog is armed for this process."""
        if self._watchdog_usec is not None:
            self._send("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> None:
        self._send("STOPPING=1", *_status_lines(status))

    def reloading(self) -> None:
        """RELOADING=1 with the monotonic timestamp that Type=notify-reload (systemd ≥ 253)
        expects; older managers ignore the timestamp."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send(self, *lines: str) -> None:
        if not self.enabled:
            return
        message = "\n".join(lines).encode("utf-8", "replace")
        with self._lock:
            if self._closed or self._address is None:
                return
            try:
                self._socket().sendto(message, self._address)
            except OSError as exc:
                self._warn_once(exc)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def _warn_once(self, exc: OSError) -> None:
        if not self._warned:
            self._warned = True
            where = (self._address or "").replace("\0", "@", 1)
            log.warning(
                "cannot notify the service manager via %s: %s (further failures not logged)",
                where,
                exc,
            )


def _socket_address(value: str) -> str | None:
    """NOTIFY_SOCKET → an address for ``sendto``; None when absent or unsupported."""
    if not value:
        return None
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    log.warning("NOTIFY_SOCKET=%s is not supported (not a path or @name); not notifying", value)
    return None


def _watchdog_usec(environ: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC when the watchdog is armed for this process, else None."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def _status_lines(text: str | None) -> list[str]:
    if text is None:
        return []
    return ["STATUS=" + " ".join(text.splitlines()).strip()]
