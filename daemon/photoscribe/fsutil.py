"""File identity, atomic replacement and safe path helpers (stdlib only)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import zlib
from pathlib import Path

from photoscribe.errors import PhotoChangedError
from photoscribe.records import FileStat

TEMP_PREFIX = "."
TEMP_SUFFIX = ".photoscribe-tmp"


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
    """A hidden temp name in the same folder, so the final rename is atomic. It names the
    writing process (pid and host), so that a temp file left by a killed write can be told
    from one being written."""
    token = secrets.token_hex(4)
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{token}.{_writer_tag()}{TEMP_SUFFIX}")


def temp_writer_gone(name: str) -> bool:
    """True when the temp file ``name`` was written by a process of this host that no
    longer runs (a killed write: the original is intact, the copy is litter)."""
    if not is_temp_name(name):
        return False
    tag = name[: -len(TEMP_SUFFIX)].rsplit(".", 1)[-1]
    pid, _, host = tag.partition("-")
    if host != _host_tag() or not pid.isdigit():
        return False  # another host's (a shared folder) or an older name: age decides
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by someone else
        return False
    return False


def _writer_tag() -> str:
    return f"{os.getpid()}-{_host_tag()}"


def _host_tag() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFF:04x}"


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
    tmp = temp_path_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            _write_all(fd, data)
            _copy_owner_and_mode(fd, original)
            if keep_mtime:
                os.utime(fd, ns=(original.st_atime_ns, original.st_mtime_ns))
            os.fsync(fd)
        finally:
            os.close(fd)
        _check_unchanged(path, expected)  # again, right before the rename
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return file_stat(path)


def _write_all(fd: int, data: bytes) -> None:
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
    """The original's stat, if it is still the version we read; else PhotoChangedError."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise PhotoChangedError(f"{display(path)} disappeared while it was being tagged") from exc
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
