"""One exception hierarchy for photoscribe.

Every error carries a message written for the user: what went wrong and what to
do about it. ``cli.main`` maps these to exit codes; nothing else prints tracebacks
for them.
"""

from __future__ import annotations

import errno

# OS errors that pass: the same read or write may well work later without the file
# changing (space freed, permission restored, a share mounted again, a lock released).
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENOSPC",  # disk full
        "EDQUOT",  # quota exceeded
        "EACCES",  # permission denied
        "EPERM",  # operation not permitted (immutable file, ACL)
        "EIO",  # I/O error (a flaky disk, USB or network)
        "EBUSY",  # device or resource busy
        "ETXTBSY",  # file busy
        "EAGAIN",  # resource temporarily unavailable (a lock)
        "ENOLCK",  # no locks available
        "EDEADLK",  # a lock would deadlock
        "EINTR",
        "EROFS",  # read-only file system (e.g. remounted after an error)
        "ESTALE",  # stale NFS handle
        "ENOTCONN",  # a FUSE/network share gone
        "ECONNABORTED",
        "ECONNRESET",
        "ECONNREFUSED",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENETDOWN",
        "ENETUNREACH",
        "ETIMEDOUT",
        "ENODEV",  # the device went away (unplugged disk)
        "ENXIO",
        "ENOMEM",
        "EMFILE",  # too many open files
        "ENFILE",
    )
    if hasattr(errno, name)
)


class PhotoscribeError(Exception):
    """Base of every error photoscribe raises on purpose."""

    exit_code = 1


class ConfigError(PhotoscribeError):
    """The configuration file or a command-line option is invalid."""

    exit_code = 2


class ClusterError(PhotoscribeError):
    """A cluster scan cannot start: Ray is not installed, or no cluster answers."""

    exit_code = 2


class ModelError(PhotoscribeError):
    """The CLIP model cannot be loaded or run (missing weights, bad file, device)."""

    exit_code = 3


class StoreError(PhotoscribeError):
    """The SQLite index cannot be opened, migrated or written."""

    exit_code = 4


class NoIndexError(StoreError):
    """There is no index yet: its file is missing, or a first scan has not created it."""


class DamagedIndexError(StoreError):
    """The index file is not (or no longer) a sound SQLite database."""


class AlreadyRunningError(PhotoscribeError):
    """Another `photoscribe run` already holds the instance lock on the same index."""

    exit_code = 5


class PhotoError(PhotoscribeError):
    """One photo cannot be processed; recorded as a failure, the scan goes on.

    A failure is transient when it may pass without the file changing (see
    ``is_transient``): such photos are tried again by the next scan and, with a growing
    wait, by the daemon. Any other failure stays until the file changes."""

    transient = False


class DecodeError(PhotoError):
    """The file is not an image we can decode (corrupt, empty, wrong extension)."""


class MetadataError(PhotoError):
    """Metadata could not be read from or written to a photo; the photo is untouched."""


class NotWritableError(MetadataError):
    """Neither the photo nor a sidecar beside it can be written (a read-only folder); the
    photo is still indexed."""


class PhotoChangedError(PhotoError):
    """The photo changed on disk while we worked on it; nothing was written, retry later."""

    transient = True


class WorkerError(PhotoError):
    """The worker process handling one photo (decoder, exiv2) died or hit a limit; the
    photo is skipped until it changes, the rest go on."""


class WorkerCrashed(WorkerError):
    """A native library crashed (SIGSEGV, SIGABRT) or the worker was killed."""


class WorkerOutOfMemory(WorkerError):
    """The file needed more memory than scan.file_memory_mb."""


class WorkerTimeout(WorkerError):
    """The file took longer than scan.file_timeout_seconds."""


class WorkerUnavailable(WorkerError):
    """No worker process could be started (not the photo's fault): tried again later."""

    transient = True


def is_transient(exc: BaseException) -> bool:
    """Whether the failure ``exc`` may pass by itself: a PhotoError that says so, or an
    OSError with a passing errno, raised directly or as the cause of the error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PhotoError) and current.transient:
            return True
        if isinstance(current, OSError) and current.errno in TRANSIENT_ERRNOS:
            return True
        current = current.__cause__
    return False


class CaptionError(PhotoscribeError):
    """The LLM did not give a usable caption."""


class CaptionUnavailable(CaptionError):
    """The LLM server is unreachable, too slow or failing; captions wait for a later run."""


class CaptionRejected(CaptionError):
    """The LLM answered, but the reply is not a usable caption (empty, echo, junk)."""
