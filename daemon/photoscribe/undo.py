"""`photoscribe undo`: take back exactly what photoscribe wrote, restore what it replaced.

Works from the journal of writes (key → value before, value after), newest first:

- a tag that still holds what photoscribe wrote gets its earlier value back (or goes);
- a list tag (keywords) loses the items photoscribe added and gets back the items it
  removed; items anyone else added since stay;
- a tag someone else changed since is left alone (their edit wins).

Pixels are checked to be identical and the file is replaced atomically, as in a write.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photoscribe.contenthash import content_hash
from photoscribe.errors import MetadataError, PhotoChangedError
from photoscribe.fsutil import atomic_replace, display, file_stat
from photoscribe.records import FileStat

log = logging.getLogger(__name__)

Value = Any  # str | list[str] | dict[str, str] (a language alternative), as pyexiv2 reads
Change = tuple[Value, Value]
SEPARATED = {"Exif.Image.XPKeywords": ";"}  # list tags stored as one separated string
IPTC_CHARSET = "Iptc.Envelope.CharacterSet"


@dataclass(frozen=True)
class UndoPlan:
    path: Path
    changes: dict[str, Value | None]  # key → value to set (None: remove the tag)
    current: dict[str, Value]  # what those keys hold now
    empties: bool = False  # nothing would be left in the file's metadata


def revert(current: Mapping[str, Value], entries: Sequence[Mapping[str, Change]]) -> dict:
    """Changes (key → value, None = remove) that undo ``entries`` (newest first)."""
    state: dict[str, Value | None] = {}
    for entry in entries:
        for key, (before, after) in entry.items():
            now = state[key] if key in state else current.get(key)
            state[key] = _revert_one(key, now, before, after)
    changes = {k: v for k, v in state.items() if not _same(k, v, current.get(k))}
    return _keep_iptc_charset(changes, current)


def _revert_one(key: str, now: Value, before: Value, after: Value) -> Value:
    if _same(key, now, after):
        return before
    sep = SEPARATED.get(key)
    if _is_list(now, sep) or _is_list(after, sep) or _is_list(before, sep):
        added = _items(after, sep) - _items(before, sep)
        removed = [x for x in _as_list(before, sep) if x not in _items(after, sep)]
        kept = [x for x in _as_list(now, sep) if x not in added]
        restored = kept + [x for x in removed if x not in kept]
        return _from_list(restored, sep, now)
    return now  # someone else changed it since: theirs stays


def _keep_iptc_charset(changes: dict, current: Mapping[str, Value]) -> dict:
    """Never drop the UTF-8 marker while non-ASCII IPTC text (e.g. the user's keywords,
    written as UTF-8 meanwhile) remains: readers would take it for Latin-1."""
    if IPTC_CHARSET not in changes or changes[IPTC_CHARSET] is not None:
        return changes
    remaining = {**current, **changes}
    texts = (
        item
        for k, v in remaining.items()
        if k.startswith("Iptc.Application2.")
        for item in _as_list(v, None)
    )
    if any(not text.isascii() for text in texts):
        changes = dict(changes)
        del changes[IPTC_CHARSET]
    return changes


def _same(key: str, a: Value, b: Value) -> bool:
    sep = SEPARATED.get(key)
    if _is_list(a, sep) or _is_list(b, sep):
        return sorted(_as_list(a, sep)) == sorted(_as_list(b, sep))
    return (a or None) == (b or None)


def _is_list(value: Value, sep: str | None) -> bool:
    return isinstance(value, list) or (sep is not None and isinstance(value, str))


def _as_list(value: Value, sep: str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    if sep is not None and isinstance(value, str):
        return [v.strip() for v in value.split(sep) if v.strip()]
    return [str(value)]


def _items(value: Value, sep: str | None) -> set[str]:
    return set(_as_list(value, sep))


def _from_list(items: list[str], sep: str | None, like: Value) -> Value:
    if not items:
        return None
    if sep is not None and not isinstance(like, list):
        return sep.join(items)
    return items


# -- files -----------------------------------------------------------------------------
def plan_file(
    path: Path, entries: Sequence[Mapping[str, Change]], *, sidecar: bool = False
) -> tuple[UndoPlan, bytes, FileStat]:
    """What undoing ``entries`` would change in the file at ``path``; its bytes and stat."""
    from photoscribe.metadata import backend, webp

    stat, data = _read(path)
    with backend.opened(data, display(path), sidecar=sidecar) as photo:
        tags = photo.snapshot().values
    layout = {webp.LAYOUT_KEY: webp.vp8x(data)} if webp.is_webp(data) else {}
    values = {**tags, **layout}
    changes = revert(values, entries)
    removed = {k for k, v in changes.items() if v is None}
    current = {k: values.get(k) for k in changes}
    return UndoPlan(path, changes, current, empties=not set(tags) - removed), data, stat


def apply_file(
    plan: UndoPlan, data: bytes, expected: FileStat, *, sidecar: bool = False
) -> FileStat | None:
    """Write ``plan`` into the file atomically; a photo's pixels must stay identical, a
    sidecar left with nothing in it is deleted (None)."""
    from photoscribe.metadata import backend, webp

    where = display(plan.path)
    if sidecar and plan.empties:  # exiv2 cannot write an empty packet; the file was ours
        return _remove(plan.path, expected)
    tags = {k: v for k, v in plan.changes.items() if k != webp.LAYOUT_KEY}
    new = data
    if tags:
        with backend.opened(data, where, sidecar=sidecar) as photo:
            new = photo.rewrite(tags)
    if webp.LAYOUT_KEY in plan.changes and plan.changes[webp.LAYOUT_KEY] is None:
        new = webp.simple_if_possible(new)  # it was a simple WebP before photoscribe wrote
    _check_restored(new, tags, where, sidecar=sidecar)
    if not sidecar and content_hash(new) != content_hash(data):
        raise MetadataError(f"undo would change the pixels of {where}; nothing written")
    try:
        return atomic_replace(plan.path, new, expected)
    except OSError as exc:
        raise MetadataError(f"cannot write {where}: {exc.strerror or exc}") from exc


def _check_restored(
    new: bytes, tags: Mapping[str, Value | None], where: str, *, sidecar: bool
) -> None:
    """Read ``new`` back: every tag must hold what the undo planned, or nothing is written
    (and undo reports a failure instead of "restored")."""
    from photoscribe.metadata import backend

    with backend.opened(new, where, sidecar=sidecar) as written:
        values = written.snapshot().values
    wrong = sorted(k for k, v in tags.items() if not _same(k, values.get(k), v))
    if wrong:
        raise MetadataError(
            f"undo could not restore {', '.join(wrong)} in {where} (exiv2 wrote other "
            "values); the file is left as it is - please report this"
        )


def _remove(path: Path, expected: FileStat) -> None:
    if file_stat(path) != expected:
        raise PhotoChangedError(f"{display(path)} changed meanwhile; try again")
    path.unlink()


def _read(path: Path) -> tuple[FileStat, bytes]:
    try:
        before = file_stat(path)
        data = path.read_bytes()
        changed = file_stat(path) != before
    except OSError as exc:
        raise MetadataError(f"cannot read {display(path)}: {exc.strerror or exc}") from exc
    if changed:
        raise PhotoChangedError(f"{display(path)} changed while it was read; try again")
    return before, data
