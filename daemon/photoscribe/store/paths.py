"""Paths in the index: any file name (bytes on Linux) as valid UTF-8 text, and back.

SQLite text must be valid UTF-8, but a Linux file name is any bytes: a name copied from
an old Windows or Samba share is often Latin-1 (``caf\\xe9.jpg``), which Python holds as
a lone surrogate (U+DC80..U+DCFF, one per undecodable byte: ``surrogateescape``).

A name that is valid UTF-8 is stored as it is (every index written before stays valid).
Only two kinds of characters are mapped, one by one, so that the mapping is bijective
and keeps prefixes (``rows_under``'s prefix query and ``move``'s replace work on the
stored text):

- a lone surrogate U+DC80+b (byte b, 0x00..0x7F) becomes the private-use code point
  U+10FE80+b (bytes 0x80..0xFF ↔ U+10FE80..U+10FEFF);
- a genuine code point of that same range in a real name is stored as its four UTF-8
  bytes, each mapped as above, so that decoding stays unambiguous.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_SURROGATE_FIRST = 0xDC80  # surrogateescape of byte 0x80
_PRIVATE_FIRST = 0x10FE80  # what byte 0x80 is stored as
_SHIFT = _PRIVATE_FIRST - _SURROGATE_FIRST
_TABLE: dict[int, str] = {
    **{s: chr(s + _SHIFT) for s in range(_SURROGATE_FIRST, _SURROGATE_FIRST + 0x80)},
    **{
        p: "".join(chr(b - 0x80 + _PRIVATE_FIRST) for b in chr(p).encode("utf-8"))
        for p in range(_PRIVATE_FIRST, _PRIVATE_FIRST + 0x80)
    },
}
_MAPPED = re.compile("[\udc80-\udcff\U0010fe80-\U0010feff]")
_STORED = re.compile("[\U0010fe80-\U0010feff]")
_BACK = {p: chr(p - _SHIFT) for p in range(_PRIVATE_FIRST, _PRIVATE_FIRST + 0x80)}


def to_db(path: Path | str) -> str:
    """The text the index stores for ``path`` (valid UTF-8 for any file name)."""
    text = os.fspath(path)
    if text.isascii() or not _MAPPED.search(text):  # nearly every name: as it is
        return text
    return text.translate(_TABLE)


def from_db(text: str) -> Path:
    """The path ``to_db`` stored as ``text``."""
    if text.isascii() or not _STORED.search(text):
        return Path(text)
    return Path(os.fsdecode(os.fsencode(text.translate(_BACK))))
