"""File identity, atomic replacement and safe path helpers (stdlib only)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import stat
import time
from pathlib import Path

from photoscribe.errors import DecodeError, MetadataError, PhotoChangedError
from photoscribe.limits import too_large_file
from photoscribe.records import FileStat

TEMP_PREFIX = "."
TEMP_SUFFIX = ".photoscribe-tmp"
NAME_MAX = 255  # bytes in one file name (ext4, XFS, Btrfs, ZFS, NTFS via ntfs-3g)
UNLOCKABLE_TEMP_SECONDS = 3600  # where locks do not work, a leftover is only this old


def file_stat(path: Path) -> FileStat:
    st = os.stat(path)
    return FileStat(size=st.st_size, mtime_ns=st.st_mtime_ns, dev=st.st_dev, ino=st.st_ino)


def stat_or_none(path: Path) -> FileStat | None:
    """The file's identity, or None when it cannot be stat'ed (gone, unreadable)."""
    try:
        return file_stat(path)
    except OSError:
        return None


def display(path: Path | str) -> str:
    """A printable form of a path, even when its name is not valid UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def temp_path_for(path: Path) -> Path:
    """A hidden temp name in the same folder, so the final rename is atomic. A name too
    long for that (up to 255 bytes is allowed) gets a short hash of itself instead."""
    token = secrets.token_hex(4)
    name = f"{TEMP_PREFIX}{path.name}.{token}{TEMP_SUFFIX}"
    if len(os.fsencode(name)) > NAME_MAX:
        digest = hashlib.sha256(os.fsencode(path.name)).hexdigest()[:16]
        name = f"{TEMP_PREFIX}{digest}.{token}{TEMP_SUFFIX}"
    return path.with_name(name)


def create_temp(path: Path, mode: int = 0o600) -> tuple[int, Path]:
    """A new temp file beside ``path``: (fd open for writing, its path).

    The fd holds an exclusive ``flock`` for as long as it is open (the kernel drops it when
    the process dies, SIGKILL included), which is how ``remove_leftover_temp`` in another
    process tells a write in flight from a leftover. Close the fd only after the temp file
    was renamed or unlinked."""
    for _ in range(8):
        tmp = temp_path_for(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            _lock(fd)
            if os.fstat(fd).st_nlink > 0:
                return fd, tmp
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.close(fd)  # a cleanup removed it between open and lock: take another name
    raise OSError(errno.EEXIST, "no temp file could be created", str(path.parent))


def _lock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a cleanup holds it for microseconds at most
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF):
            raise  # where locks do not work, leftovers are only removed once old


def remove_leftover_temp(path: Path) -> bool:
    """Remove one of photoscribe's temp files unless a photoscribe process (this one or
    another) is writing it now; True if it was removed. Safe at any time."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # in flight
        except OSError:  # no locks on this file system (some FUSE, NFS without lockd)
            if time.time() - os.fstat(fd).st_mtime < UNLOCKABLE_TEMP_SECONDS:
                return False
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or os.lstat(path).st_ino != st.st_ino:
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def atomic_replace(
    path: Path, data: bytes, expected: FileStat, *, keep_mtime: bool = False
) -> FileStat:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new file.

    Writes a hidden temp file beside it with the original's mode and owner, fsyncs
    it, checks that ``path`` is still the version we read (``expected``), renames
    over it and fsyncs the folder. Raises PhotoChangedError (and writes nothing) when another
    program changed the file meanwhile. ``keep_mtime``: the new file gets the original's
    modification time (some photo managers then never notice the change).
    """
    original = _check_unchanged(path, expected)  # fail before writing anything
    fd, tmp = create_temp(path)
    try:
        write_all(fd, data)
        _copy_owner_and_mode(fd, original)
        if keep_mtime:
            os.utime(fd, ns=(original.st_atime_ns, original.st_mtime_ns))
        os.fsync(fd)
        _check_unchanged(path, expected)  # again, right before the rename
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        os.close(fd)  # only now: the lock keeps other processes' cleanup away until here
    fsync_dir(path.parent)
    return file_stat(path)


def write_error(path: Path, exc: OSError) -> str:
    """What went wrong writing ``path``, for the user: which disk is full or read-only."""
    where, why = display(path), exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"cannot write {where}: disk full on {display(mount_point(path))} (free some "
            f"space there; it will be written then): {why}"
        )
    if exc.errno == errno.EROFS:
        return f"cannot write {where}: {display(mount_point(path))} is mounted read-only: {why}"
    return f"cannot write {where}: {why}"


def mount_point(path: Path) -> Path:
    """The folder the file system holding ``path`` is mounted on."""
    current = path if path.is_dir() else path.parent
    try:
        dev = os.stat(current).st_dev
        while current != current.parent and os.stat(current.parent).st_dev == dev:
            current = current.parent
    except OSError:
        pass
    return current


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _copy_owner_and_mode(fd: int, original: os.stat_result) -> None:
    try:
        os.fchown(fd, original.st_uid, original.st_gid)
    except PermissionError:  # not root (e.g. the service user): keep at least the group
        with contextlib.suppress(PermissionError):
            os.fchown(fd, -1, original.st_gid)
    os.fchmod(fd, original.st_mode & 0o7777)  # after chown, which may clear set-id bits


def _check_unchanged(path: Path, expected: FileStat) -> os.stat_result:
    """The original's stat, if it is still the version we read; else PhotoChangedError.
    A symbolic link is never replaced (that would put a copy where the user's link was)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError as exc:
        raise PhotoChangedError(f"{display(path)} disappeared while it was being tagged") from exc
    if stat.S_ISLNK(st.st_mode):
        raise MetadataError(
            f"{display(path)} is a symbolic link, which photoscribe never replaces; "
            "with scan.follow_symlinks: true it tags the file the link points to"
        )
    now = FileStat(size=st.st_size, mtime_ns=st.st_mtime_ns, dev=st.st_dev, ino=st.st_ino)
    if now != expected:
        raise PhotoChangedError(
            f"{display(path)} was changed by another program while it was being tagged; "
            "nothing was written, it will be tagged again on the next scan"
        )
    return st


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_photo(path: Path) -> bytes:
    """The bytes of the regular file ``path``; never blocks on a FIFO, socket or device
    that merely carries a photo's name (DecodeError names it instead), and never reads
    more than limits.MAX_PHOTO_BYTES into memory."""
    _check_regular(path, os.stat(path).st_mode)  # a socket cannot even be opened
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        _check_regular(path, st.st_mode)  # replaced meanwhile
        if reason := too_large_file(st.st_size):
            raise DecodeError(reason)
        with open(fd, "rb", buffering=0, closefd=False) as f:
            return f.readall()  # sized by fstat: one buffer, as Path.read_bytes
    finally:
        os.close(fd)


def _check_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise DecodeError(
            f"{display(path)} is not a regular file ({_file_kind(mode)}), so it is "
            "not a photo; photoscribe leaves it alone"
        )


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")
