"""Put a PNG's original ICC profile chunk back after exiv2 rewrote it (pure, stdlib).

exiv2 decompresses and re-compresses the iCCP chunk on every write: the same profile in
different bytes. That changes nothing a viewer shows, but it changes the file's image-data
hash (contenthash keeps iCCP, as it changes how the pixels look), so the write would be
refused. When the profile and its name are unchanged, the original chunk is put back;
PNG chunks carry no offsets, so swapping one chunk for another is safe.
"""

from __future__ import annotations

import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ICCP = b"iCCP"


def keep_icc_chunk(old: bytes, new: bytes) -> bytes:
    """``new`` with ``old``'s iCCP chunk when both hold the same named profile."""
    before, after = _find(old, _ICCP), _find(new, _ICCP)
    if before is None or after is None:
        return new
    old_chunk, new_chunk = old[before[0] : before[1]], new[after[0] : after[1]]
    profile = _profile(old_chunk)
    if old_chunk == new_chunk or profile is None or profile != _profile(new_chunk):
        return new
    return b"".join((new[: after[0]], old_chunk, new[after[1] :]))


def _find(data: bytes, kind: bytes) -> tuple[int, int] | None:
    """(start, end) of the first chunk of ``kind`` (length, type, data and CRC)."""
    if not data.startswith(_SIGNATURE):
        return None
    pos = len(_SIGNATURE)
    while pos + 12 <= len(data):
        length, found = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if found == kind:
            return (pos, end) if end <= len(data) else None
        if found == b"IEND":
            return None
        pos = end
    return None


def _profile(chunk: bytes) -> tuple[bytes, bytes] | None:
    """(name, uncompressed ICC profile) of an iCCP chunk; None when it does not decode."""
    body = chunk[8:-4]
    name, _, rest = body.partition(b"\x00")
    try:
        return name, zlib.decompress(rest[1:])  # rest[0]: compression method, always 0
    except zlib.error:
        return None
