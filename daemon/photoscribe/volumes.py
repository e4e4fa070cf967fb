"""Telling an unmounted drive or share from photos that were deleted (stdlib only).

When a NAS or USB disk goes away, its mount point stays behind as an empty folder of the
file system below it (or the watched folder inside it vanishes). A catch-up scan would
then find none of the indexed photos and drop every row: all the tags and captions the
index holds would look deleted. So the index remembers, per watched folder, the file
system (``st_dev``) its photos were on, and every mount point below it. A folder is
*present* when it is a folder and still on that file system, or is a mount point now
(a share mounted again may get a new device number). A missing photo's row is only
dropped when the innermost remembered folder holding it is present.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from photoscribe.fsutil import display
from photoscribe.store import PhotoStore
from photoscribe.store.paths import from_db, to_db
from photoscribe.store.queue import publish_state, read_state

log = logging.getLogger(__name__)

STATE_KEY = "volumes"  # daemon_state: {"devs": {folder: [st_dev, was a mount point]}}
MOUNTINFO = Path("/proc/self/mountinfo")


class Volumes:
    """The remembered file systems of the watched folders (and mount points below them).
    Thread-safe: the catch-up thread records, the main loop asks."""

    def __init__(self, store: PhotoStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        found = read_state(store, STATE_KEY)
        devs = found[0].get("devs", {}) if found else {}
        self._devs: dict[Path, tuple[int, bool]] = {
            from_db(p): (int(d), bool(m)) for p, (d, m) in devs.items()
        }

    def absent(self, folder: Path) -> str | None:
        """Why ``folder`` (a watched folder) cannot be trusted now, or None if present."""
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            return "it does not exist (a drive or share not mounted?)"
        except OSError as exc:
            return f"it cannot be read ({exc.strerror or exc})"
        if not stat.S_ISDIR(st.st_mode):
            return "it is not a folder"
        with self._lock:
            known = self._devs.get(folder)
        if known is None:
            return self._empty_yet_indexed(folder)
        dev, was_mount = known
        mounted = os.path.ismount(folder)
        if was_mount and not mounted:  # (a bind mount keeps the device number)
            return "it is not mounted (a drive or share that was mounted there)"
        if st.st_dev == dev or mounted:
            return None
        return (
            "its photos were on another file system than the one there now "
            "(a drive or share not mounted?)"
        )

    def _empty_yet_indexed(self, folder: Path) -> str | None:
        """A folder whose file system was never remembered (indexed by `photoscribe
        scan` only) is absent when it is empty while the index holds photos below it."""
        try:
            with os.scandir(folder) as entries:
                if next(entries, None) is not None:
                    return None
        except OSError as exc:
            return f"it cannot be read ({exc.strerror or exc})"
        prefix = to_db(folder).rstrip("/") + "/"
        upper = prefix[:-1] + chr(ord("/") + 1)
        if not self.store.query(
            "SELECT 1 FROM photos WHERE path >= ? AND path < ? LIMIT 1", (prefix, upper)
        ):
            return None
        return "it is empty, yet the index holds photos there (a drive or share not mounted?)"

    def gone(self, path: Path, roots: Iterable[Path]) -> bool:
        """Whether the indexed photo ``path``, missing now, really was deleted: False
        while the file system it was on (that of the innermost remembered folder holding
        it, else that of the watched folder in ``roots`` holding it) is not there."""
        if os.path.lexists(path):
            return False
        volume = self.holding(path) or next((r for r in roots if r in path.parents), None)
        return volume is None or self.absent(volume) is None

    def holding(self, path: Path) -> Path | None:
        """The innermost remembered folder that holds ``path``."""
        with self._lock:
            known = list(self._devs)
        best: Path | None = None
        for folder in known:
            if (folder in path.parents) and (best is None or best in folder.parents):
                best = folder
        return best

    def record(self, root: Path) -> None:
        """Remember the file system of the present folder ``root`` and of the mount points
        below it (called after a catch-up of ``root``). A remembered mount point below it
        that is not mounted now stays remembered: its photos' rows are kept."""
        try:
            now = {root: (os.stat(root).st_dev, os.path.ismount(root))}
        except OSError:
            return
        now.update({p: (d, True) for p, d in _mounts_below(root).items()})
        with self._lock:
            if all(self._devs.get(p) == d for p, d in now.items()):
                return
            self._devs.update(now)
            devs = {to_db(p): list(d) for p, d in self._devs.items()}
        publish_state(self.store, STATE_KEY, {"devs": devs})

    def unavailable(self, roots: Iterable[Path]) -> dict[Path, str]:
        """The watched folders (or remembered mount points below them) absent now."""
        roots = list(roots)
        with self._lock:
            known = [p for p in self._devs if any(p == r or r in p.parents for r in roots)]
        out: dict[Path, str] = {}
        for folder in sorted({*roots, *known}):
            why = self.absent(folder)
            if why is not None:
                out[folder] = why
        return out


def _mounts_below(root: Path) -> dict[Path, int]:
    """Mount points strictly below ``root`` and their devices (from /proc/self/mountinfo)."""
    try:
        lines = MOUNTINFO.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    except OSError:
        return {}
    out: dict[Path, int] = {}
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = Path(_unescape(fields[4]))
        if root in point.parents:
            try:
                out[point] = os.stat(point).st_dev
            except OSError:
                continue
    return out


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040)."""
    if "\\" not in text:
        return text
    raw = os.fsencode(text)
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 4 <= len(raw) and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))


def describe(unavailable: dict[Path, str]) -> list[str]:
    return [f"{display(p)}: {why}" for p, why in unavailable.items()]


class Presence:
    """The daemon's view of its watched folders coming and going (``check`` every few
    seconds): a folder that goes away is reported once, and one that comes back, or is
    mounted anew between two checks, is returned so that its watch is set up again (an
    inotify watch ends with the file system it was on) and it is caught up."""

    def __init__(self, volumes: Volumes, roots: Iterable[Path]) -> None:
        self.volumes = volumes
        self.roots = list(roots)
        self.unavailable: dict[Path, str] = {}
        self._ids = {r: _identity(r) for r in self.roots}

    def check(self) -> list[Path]:
        """The watched folders to watch anew and catch up."""
        now = self.volumes.unavailable(self.roots)
        for folder, why in now.items():
            if folder not in self.unavailable:
                log.warning(
                    "%s is unavailable: %s. Its photos stay in the index; photoscribe "
                    "catches up when it is back",
                    display(folder),
                    why,
                )
        back = [f for f in self.unavailable if f not in now]
        for folder in back:
            log.info("%s is available again; catching up", display(folder))
        self.unavailable = now
        renew: list[Path] = []
        for root in self.roots:
            ident = _identity(root)
            came_back = any(f == root or root in f.parents for f in back)
            if came_back or (ident != self._ids[root] and root not in now):
                renew.append(root)
            self._ids[root] = ident
        return renew


def _identity(folder: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino
