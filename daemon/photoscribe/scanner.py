"""Walking folders for photos (stdlib only)."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from photoscribe.config import ScanConfig
from photoscribe.errors import ConfigError
from photoscribe.fsutil import display, is_temp_name, remove_leftover_temp

log = logging.getLogger(__name__)


def find_photos(
    roots: Iterable[Path],
    cfg: ScanConfig,
    stop: threading.Event | None = None,
    *,
    within: Iterable[Path] | None = None,
) -> list[Path]:
    """Every photo under ``roots`` (files or folders), sorted, without duplicates.

    ``stop``: when set, the walk ends early with what it found so far. ``within``: the
    folders a followed symbolic link may point into (default: ``roots``). Leftover temp
    files of photoscribe's writes are removed on the way."""
    roots = list(roots)
    links = LinkPolicy(cfg.follow_symlinks, roots if within is None else within)
    found: dict[Path, None] = {}
    for root in roots:
        _check_root(root)
        for path in _walk(root.absolute(), cfg, links, stop):
            found.setdefault(path, None)
    _log_skipped(links)
    return sorted(found)


def walk_photos(
    root: Path,
    cfg: ScanConfig,
    stop: threading.Event | None = None,
    *,
    within: Iterable[Path] | None = None,
) -> Iterator[Path]:
    """The photos under ``root`` one by one, folder by folder (names sorted within a
    folder), in constant memory: for a catch-up of a big tree. A photo reached through a
    followed symbolic link may come twice (as the link's target and in its own folder)."""
    links = LinkPolicy(cfg.follow_symlinks, [root] if within is None else within)
    _check_root(root)
    yield from _walk(root.absolute(), cfg, links, stop)
    _log_skipped(links)


def _check_root(root: Path) -> None:
    if not root.exists():
        raise ConfigError(
            f"{display(root)} does not exist; check the path (a drive or share not mounted?)"
        )


def _log_skipped(links: LinkPolicy) -> None:
    if links.skipped:
        log.info("skipped %d symbolic links to files (scan.follow_symlinks is off)", links.skipped)


class LinkPolicy:
    """What a symbolic link becomes. ``follow`` off: nothing (skipped, like a folder link).
    On: the file or folder it points to, if that lies inside ``roots``; a photo is then
    named by where it really is below its root, so that a link and its target are one
    photo (tagged once, written once: the target; the link stays a link)."""

    def __init__(self, follow: bool, roots: Iterable[Path]) -> None:
        self.follow = follow
        self.roots = [(r.absolute(), Path(os.path.realpath(r))) for r in roots]
        self.skipped = 0
        self._entered: set[Path] = set()

    def enter(self, folder: Path) -> Path | None:
        """The name below a root for the photos of ``folder``; None: do not walk it (a
        folder reached again through a link, e.g. a loop, or one outside the roots)."""
        if not self.follow:
            return folder  # os.walk does not enter folder links
        real = Path(os.path.realpath(folder))
        if real in self._entered:
            return None
        self._entered.add(real)
        return self._inside(folder, real)

    def photo(self, path: Path, folder: Path | None = None) -> Path | None:
        """The photo to process for the file ``path`` in ``folder`` (as ``enter`` named
        it; default: its parent); None for a link that is not followed."""
        if not os.path.islink(path):
            return (folder or path.parent) / path.name
        if not self.follow:
            self.skipped += 1
            log.debug("skipped the symbolic link %s", display(path))
            return None
        real = Path(os.path.realpath(path))
        if not real.is_file():
            log.warning("skipped %s: the symbolic link is broken", display(path))
            return None
        return self._inside(path, real)

    def _inside(self, path: Path, real: Path) -> Path | None:
        for root, real_root in self.roots:
            if real == real_root or real_root in real.parents:
                return root / real.relative_to(real_root)
        log.warning(
            "not following the symbolic link %s: it points to %s, outside the folders "
            "photoscribe scans",
            display(path),
            display(real),
        )
        return None


def _walk(
    root: Path, cfg: ScanConfig, links: LinkPolicy, stop: threading.Event | None = None
) -> Iterator[Path]:
    if root.is_file():
        if accepts(root, root.parent, cfg, explicit=True):  # named by the user: followed
            yield Path(os.path.realpath(root)) if root.is_symlink() else root
        return
    for folder, dirs, files in os.walk(root, followlinks=cfg.follow_symlinks, onerror=_warn):
        if stop is not None and stop.is_set():
            return
        named = links.enter(Path(folder))
        if named is None:
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not _skipped_name(d, cfg))
        here = Path(folder)
        rules = _InFolder(here, root, cfg)
        for name in sorted(files):
            if is_temp_name(name):
                _remove_leftover(Path(folder, name))
                continue
            if not rules.accepts(name):
                continue
            path = here / name
            if os.path.islink(path):
                photo = links.photo(path, named)
            elif named is here:  # the common case: a plain file, named where it is
                yield path
                continue
            else:
                photo = named / name
            if photo is not None and (photo == path or accepts(photo, root, cfg)):
                yield photo  # (a link's target must be acceptable too: not in .hidden/)


class _InFolder:
    """``accepts`` for the files of one folder, its own part worked out once (a tree of
    200,000 photos is walked several times faster so)."""

    def __init__(self, folder: Path, root: Path, cfg: ScanConfig) -> None:
        self.cfg = cfg
        self.extensions = _lower_extensions(cfg.extensions)
        try:
            parts = PurePosixPath(folder.relative_to(root).as_posix()).parts
        except ValueError:
            parts = ()
        self.prefix = "".join(f"{p}/" for p in parts)
        self.hidden = cfg.skip_hidden and any(p.startswith(".") for p in parts)
        self.excluded = _parts_match(cfg.exclude, parts)
        self.included = _parts_match(cfg.include, parts)

    def accepts(self, name: str) -> bool:
        """Whether the file ``name`` in this folder is a photo to process."""
        cfg = self.cfg
        if is_temp_name(name) or not name.lower().endswith(self.extensions):
            return False
        if cfg.skip_hidden and (self.hidden or name.startswith(".")):
            return False
        text = self.prefix + name
        if self.excluded or _name_matches(cfg.exclude, name, text):
            return False
        return not cfg.include or self.included or _name_matches(cfg.include, name, text)


def _parts_match(patterns: Iterable[str], parts: tuple[str, ...]) -> bool:
    return any(fnmatchcase(part, p) for p in patterns if "/" not in p for part in parts)


def _name_matches(patterns: Iterable[str], name: str, text: str) -> bool:
    return any(fnmatchcase(text if "/" in p else name, p) for p in patterns)


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


def _remove_leftover(path: Path) -> None:
    """A temp file of a write that was killed (the original is intact): drop the copy,
    unless a photoscribe process is writing it right now (see fsutil.create_temp)."""
    if remove_leftover_temp(path):
        log.info("removed a leftover temp file %s", display(path))


def _warn(exc: OSError) -> None:
    log.warning("cannot read %s: %s", display(exc.filename or "?"), exc.strerror)


def under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)
