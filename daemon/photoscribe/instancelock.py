"""One `photoscribe run` per index: an exclusive ``flock`` on a lock file next to the index.

The kernel releases the lock when the holder exits, however it exits (SIGKILL included), so
a stale lock file is harmless. The file holds the holder's pid, for the error message only.
It is never deleted: removing a lock file while another process opens it is racy.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from photoscribe.errors import AlreadyRunningError, StoreError

LOCK_SUFFIX = ".lock"


class InstanceLock:
    """``with InstanceLock(path):`` holds the lock for the block; raises AlreadyRunningError."""

    def __init__(self, path: Path, *, guards: Path | None = None) -> None:
        """``guards``: what the lock protects (the index), named in the error message."""
        self.path = path
        self.guards = guards or path
        self._fd: int | None = None

    @classmethod
    def for_index(cls, index_path: Path) -> InstanceLock:
        """The lock for an index: ``index.sqlite3`` → ``index.sqlite3.lock`` beside it."""
        return cls(index_path.with_name(index_path.name + LOCK_SUFFIX), guards=index_path)

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            raise self._lock_error(exc, holder) from None
        _write_pid(fd)
        self._fd = fd

    def release(self) -> None:
        """Unlocks and closes; the file stays."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create the lock file {self.path}: {exc.strerror}") from exc

    def _lock_error(self, exc: OSError, holder: int | None) -> Exception:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return StoreError(
                f"cannot lock {self.path}: {exc.strerror}; "
                "put index_path on a local file system that supports locks"
            )
        who = f"pid {holder}" if holder else "pid unknown"
        return AlreadyRunningError(
            f"another `photoscribe run` ({who}) is already using {self.guards}; "
            "stop it first (systemctl stop photoscribe) or point this one at another index_path"
        )


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
