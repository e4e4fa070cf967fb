"""File identity, atomic replacement and safe path helpers (stdlib only)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from photoscribe.errors import PhotoChangedError
from photoscribe.records import FileStat

TEMP_PREFIX = "."
TEMP_SUFFIX = ".photoscribe-tmp"


def file_stat(path: Path) -> FileStat:
    st = os.stat(path)
    return FileStat(size=st.st_size, mtime_ns=st.st_mtime_ns, dev=st.st_dev, ino=st.st_ino)


def display(path: Path | str) -> str:
    """A printable form of a path, even when its name is not valid UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_temp_name(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


def temp_path_for(path: Path) -> Path:
    """A hidden temp name in the same folder, so the final rename is atomic."""
    token = secrets.token_hex(4)
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{token}{TEMP_SUFFIX}")


def atomic_replace(path: Path, data: bytes, expected: FileStat) -> FileStat:
    """Replace ``path`` with ``data`` so a crash leaves either the old or the new file.

    Writes a hidden temp file beside it, fsyncs it, copies mode and owner, checks
    that ``path`` is still the version we read (``expected``), renames over it and
    fsyncs the folder. Raises PhotoChangedError (and writes nothing) when another
    program changed the file meanwhile.
    """
    tmp = temp_path_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
        _copy_owner_and_mode(fd, path)
        os.close(fd)
        fd = -1
        _check_unchanged(path, expected)
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
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


def _copy_owner_and_mode(fd: int, path: Path) -> None:
    st = os.stat(path)
    os.fchmod(fd, st.st_mode & 0o7777)
    if hasattr(os, "fchown"):
        with contextlib.suppress(PermissionError):
            os.fchown(fd, st.st_uid, st.st_gid)


def _check_unchanged(path: Path, expected: FileStat) -> None:
    try:
        now = file_stat(path)
    except FileNotFoundError as exc:
        raise PhotoChangedError(f"{display(path)} disappeared while it was being tagged") from exc
    if now != expected:
        raise PhotoChangedError(
            f"{display(path)} was changed by another program while it was being tagged; "
            "nothing was written, it will be tagged again on the next scan"
        )


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(folder: Path) -> int:
    """Delete temp files a killed write left behind in ``folder``; returns how many."""
    removed = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and is_temp_name(entry.name):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed
