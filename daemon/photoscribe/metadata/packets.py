"""How many XMP packets a photo holds (pure, stdlib).

A file should hold one. Some tools write a second (a duplicated APP1 segment, a second
iTXt or "XMP " chunk), or damage a packet's signature: exiv2 then reads and rewrites one
packet (or adds a new one) while exiftool, and the programs built on it, show the last.
Readers would disagree about the photo's keywords, so a write whose result holds more
than one packet is not made.
"""

from __future__ import annotations

import struct

_XMP_LOOKS = (b"http://ns.adobe.com/xap/", b"<?xpacket", b"<x:xmpmeta")  # as readers sniff
_PNG_XMP = b"XML:com.adobe.xmp\x00"


def xmp_packets(data: bytes, fmt: str) -> int:
    """The number of standard XMP packets in a JPEG, PNG or WebP (0 for other formats
    and where the layout does not parse that far)."""
    if fmt == "jpeg":
        return sum(_looks_like_xmp(body) for marker, body in _jpeg(data) if marker == 0xE1)
    if fmt == "png":
        return sum(body.startswith(_PNG_XMP) for kind, body in _png(data) if kind == b"iTXt")
    if fmt == "webp":
        return sum(kind == b"XMP " for kind, _ in _riff(data))
    return 0


def _looks_like_xmp(body: bytes) -> bool:
    """A standard XMP APP1, also with a damaged signature (exiftool still reads those;
    exiv2 does not); extended XMP (``.../xmp/extension/``) is a continuation, not one."""
    head = body[:256]
    return any(mark in head for mark in _XMP_LOOKS)


def _jpeg(data: bytes) -> list[tuple[int, bytes]]:
    found, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] not in (0xD9, 0xDA):
        (length,) = struct.unpack_from(">H", data, pos + 2)
        found.append((data[pos + 1], data[pos + 4 : pos + 2 + length]))
        pos += 2 + max(length, 2)
    return found


def _png(data: bytes) -> list[tuple[bytes, bytes]]:
    found, pos = [], 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        found.append((kind, data[pos + 8 : pos + 8 + min(length, 64)]))
        pos += 12 + length
    return found


def _riff(data: bytes) -> list[tuple[bytes, int]]:
    found, pos = [], 12
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, pos)
        found.append((kind, length))
        pos += 8 + length + (length & 1)
    return found


def tiff_ifd0_sound(data: bytes) -> bool:
    """Whether every IFD0 entry of a TIFF has a known type (1-13). exiftool stops reading
    a directory at an entry of type 0 and shows none of its tags, XMP included."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8:
        return False
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    if ifd + 2 > len(data):
        return False
    (count,) = struct.unpack_from(order + "H", data, ifd)
    if ifd + 2 + 12 * count > len(data):
        return False
    kinds = (struct.unpack_from(order + "H", data, ifd + 4 + 12 * i)[0] for i in range(count))
    return all(1 <= kind <= 13 for kind in kinds)
