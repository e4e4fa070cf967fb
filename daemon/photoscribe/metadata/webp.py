"""A WebP's container after exiv2 rewrote it (pure, stdlib).

exiv2 turns a simple WebP (one VP8/VP8L chunk) into the extended layout (a VP8X chunk
whose flags name the EXIF/XMP/ICC/alpha/animation chunks present) when it adds metadata,
but never back; and when every XMP property is deleted it still writes the old "XMP "
chunk. Two repairs, both leaving the image chunks' bytes untouched:

- ``without_xmp``: drop the "XMP " chunk(s) and clear the XMP flag, used when exiv2 says
  no XMP is left;
- ``simple_if_possible``: a VP8X + one VP8/VP8L chunk whose flags ask for nothing the
  simple layout cannot say becomes the simple layout again, used by undo when the photo
  was simple before photoscribe wrote (as cwebp, Pillow and browsers write most WebPs).

A write that turned a simple WebP into an extended one journals it under ``LAYOUT_KEY``
(see ``layout_change``), so that undo restores the simple layout exactly where it was,
and never turns a WebP that had a VP8X of its own into a simple one.
"""

from __future__ import annotations

import struct

LAYOUT_KEY = "File.WebP.VP8X"  # pseudo tag: the VP8X chunk's payload (hex), None = simple
_XMP_FLAG, _ALPHA_FLAG = 0x04, 0x10
_IMAGE_CHUNKS = (b"VP8 ", b"VP8L")

Chunk = tuple[bytes, bytes]  # (fourcc, payload without padding)


def is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def chunks(data: bytes) -> list[Chunk] | None:
    """Every chunk of the RIFF, in order; None when it does not parse."""
    if not is_webp(data):
        return None
    stop = _riff_end(data)
    found, pos = [], 12
    while pos + 8 <= stop:
        kind, length = struct.unpack_from("<4sI", data, pos)
        if pos + 8 + length > stop:
            return None
        found.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + (length & 1)
    return found if pos >= stop else None


def _riff_end(data: bytes) -> int:
    """Where the RIFF ends; anything after it (some tools append data) is kept as is."""
    return min(8 + struct.unpack_from("<I", data, 4)[0], len(data))


def vp8x(data: bytes) -> str | None:
    """The VP8X payload as hex (the extended layout), or None (simple layout or no WebP)."""
    parsed = chunks(data) or []
    return next((payload.hex() for kind, payload in parsed if kind == b"VP8X"), None)


def layout_change(old: bytes, new: bytes) -> dict[str, tuple[str | None, str | None]]:
    """``{LAYOUT_KEY: (None, payload)}`` when a write turned a simple WebP into an
    extended one, else ``{}`` (an extended WebP keeps its VP8X; exiv2 keeps its flags
    in step with the chunks)."""
    if not is_webp(old) or vp8x(old) is not None or vp8x(new) is None:
        return {}
    return {LAYOUT_KEY: (None, vp8x(new))}


def without_xmp(data: bytes) -> bytes:
    """``data`` without "XMP " chunks and with the VP8X XMP flag cleared."""
    parsed = chunks(data)
    if parsed is None or not any(kind == b"XMP " for kind, _ in parsed):
        return data
    kept = [(k, _clear_flag(p, _XMP_FLAG) if k == b"VP8X" else p) for k, p in parsed]
    return assemble([(k, p) for k, p in kept if k != b"XMP "], data[_riff_end(data) :])


def simple_if_possible(data: bytes) -> bytes:
    """The simple layout when the file is VP8X + one image chunk and the VP8X says
    nothing else (at most the alpha flag of a VP8L, whose own header carries alpha)."""
    parsed = chunks(data)
    if parsed is None or len(parsed) != 2 or parsed[0][0] != b"VP8X":
        return data
    flags = parsed[0][1][0] if parsed[0][1] else 0xFF
    image = parsed[1][0]
    allowed = _ALPHA_FLAG if image == b"VP8L" else 0
    if image not in _IMAGE_CHUNKS or flags & ~allowed:
        return data
    return assemble(parsed[1:], data[_riff_end(data) :])


def assemble(parts: list[Chunk], trailer: bytes = b"") -> bytes:
    body = b"".join(
        struct.pack("<4sI", kind, len(payload)) + payload + b"\x00" * (len(payload) & 1)
        for kind, payload in parts
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body + trailer


def _clear_flag(payload: bytes, flag: int) -> bytes:
    return bytes([payload[0] & ~flag]) + payload[1:] if payload else payload
