"""Walking folders for photos (stdlib only)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from photoscribe.config import ScanConfig
from photoscribe.errors import ConfigError
from photoscribe.fsutil import display, is_temp_name, temp_writer_gone

log = logging.getLogger(__name__)
STALE_TEMP_SECONDS = 3600


def find_photos(
    roots: Iterable[Path], cfg: ScanConfig, stop: threading.Event | None = None
) -> list[Path]:
    """Every photo under ``roots`` (files or folders), sorted, without duplicates.

    ``stop``: when set, the walk ends early with what it found so far."""
    found: dict[Path, None] = {}
    for root in roots:
        if not root.exists():
            raise ConfigError(f"{display(root)} does not exist")
        for path in _walk(root.absolute(), cfg, stop):
            found.setdefault(path, None)
    return sorted(found)


def _walk(root: Path, cfg: ScanConfig, stop: threading.Event | None = None) -> Iterator[Path]:
    if root.is_file():
        if accepts(root, root.parent, cfg, explicit=True):
            yield root
        return
    for folder, dirs, files in os.walk(root, followlinks=cfg.follow_symlinks, onerror=_warn):
        if stop is not None and stop.is_set():
            return
        dirs[:] = sorted(d for d in dirs if not _skipped_name(d, cfg))
        for name in sorted(files):
            path = Path(folder, name)
            if is_temp_name(name):
                _remove_if_stale(path)
            elif accepts(path, root, cfg):
                yield path


def accepts(path: Path, root: Path, cfg: ScanConfig, *, explicit: bool = False) -> bool:
    """Whether ``path`` (a file under ``root``) is a photo photoscribe should process."""
    if is_temp_name(path.name) or not path.name.lower().endswith(_lower_extensions(cfg.extensions)):
        return False
    try:
        rel = PurePosixPath(path.relative_to(root).as_posix())
    except ValueError:
        rel = PurePosixPath(path.name)
    if not explicit and cfg.skip_hidden and any(n.startswith(".") for n in rel.parts):
        return False
    if _matches(cfg.exclude, rel):
        return False
    return not cfg.include or _matches(cfg.include, rel)


def _skipped_name(name: str, cfg: ScanConfig) -> bool:
    """A file or folder name that hides everything below it."""
    if cfg.skip_hidden and name.startswith("."):
        return True
    return any(fnmatchcase(name, p) for p in cfg.exclude if "/" not in p)


def _matches(patterns: Iterable[str], rel: PurePosixPath) -> bool:
    text = rel.as_posix()
    for pattern in patterns:
        if "/" in pattern:
            if fnmatchcase(text, pattern):
                return True
        elif any(fnmatchcase(part, pattern) for part in rel.parts):
            return True
    return False


@functools.cache
def _lower_extensions(extensions: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(e.lower() for e in extensions)


def _remove_if_stale(path: Path) -> None:
    """A temp file of a write that was killed: the original is intact, drop the copy."""
    with contextlib.suppress(OSError):
        old = time.time() - path.stat().st_mtime > STALE_TEMP_SECONDS
        if old or temp_writer_gone(path.name):
            path.unlink()
            log.info("removed a stale temp file %s", display(path))


def _warn(exc: OSError) -> None:
    log.warning("cannot read %s: %s", display(exc.filename or "?"), exc.strerror)


def under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)
