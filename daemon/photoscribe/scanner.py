"""Walking folders for photos (stdlib only)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from photoscribe.config import ScanConfig
from photoscribe.errors import ConfigError
from photoscribe.fsutil import display, is_temp_name

log = logging.getLogger(__name__)
STALE_TEMP_SECONDS = 3600


def find_photos(roots: Iterable[Path], cfg: ScanConfig) -> list[Path]:
    """Every photo under ``roots`` (files or folders), sorted, without duplicates."""
    found: dict[Path, None] = {}
    for root in roots:
        if not root.exists():
            raise ConfigError(f"{display(root)} does not exist")
        for path in _walk(root.absolute(), cfg):
            found.setdefault(path, None)
    return sorted(found)


def _walk(root: Path, cfg: ScanConfig) -> Iterator[Path]:
    if root.is_file():
        if _wanted(root.name, cfg, explicit=True):
            yield root
        return
    for folder, dirs, files in os.walk(root, followlinks=cfg.follow_symlinks, onerror=_warn):
        if cfg.skip_hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        dirs.sort()
        for name in sorted(files):
            if is_temp_name(name):
                _remove_if_stale(Path(folder, name))
            elif _wanted(name, cfg):
                yield Path(folder, name)


def _wanted(name: str, cfg: ScanConfig, *, explicit: bool = False) -> bool:
    if cfg.skip_hidden and name.startswith(".") and not explicit:
        return False
    return name.lower().endswith(_lower_extensions(cfg.extensions))


@functools.cache
def _lower_extensions(extensions: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(e.lower() for e in extensions)


def _remove_if_stale(path: Path) -> None:
    """A temp file of a write that was killed: the original is intact, drop the copy."""
    with contextlib.suppress(OSError):
        if time.time() - path.stat().st_mtime > STALE_TEMP_SECONDS:
            path.unlink()
            log.info("removed a stale temp file %s", display(path))


def _warn(exc: OSError) -> None:
    log.warning("cannot read %s: %s", display(exc.filename or "?"), exc.strerror)


def under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)
