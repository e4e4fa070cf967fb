"""A hash of a photo's image data only, blind to metadata (stdlib; PIL only as fallback).

Writing XMP/IPTC/EXIF (by photoscribe or any other tool) must not change a photo's
identity, but changing its pixels must. So each container is walked and its
metadata parts are left out of the hash:

- JPEG: every segment before the first scan except APPn (0xE0-0xEF) and COM, then
  everything from the first SOS to the end (scan data, later tables, trailer).
- PNG: every chunk except tEXt/zTXt/iTXt/eXIf/tIME.
- WebP: every RIFF chunk except VP8X (its flags change with metadata), EXIF, "XMP ".
- Anything else (TIFF, GIF, ...) and any container that does not parse: the decoded
  pixels (mode, size and data of each frame, at most limits.MAX_HASHED_FRAMES of them)
  via PIL.

The digest is prefixed with the scheme ("jpeg:", "png:", "webp:", "px:"), so hashes
made different ways never compare equal by accident.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from photoscribe.errors import DecodeError
from photoscribe.formats import needs_sidecar
from photoscribe.limits import MAX_HASHED_FRAMES, MAX_IMAGE_PIXELS, too_many_pixels

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif", b"avis"}
)

_PNG_METADATA_CHUNKS = frozenset({b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME"})
_WEBP_METADATA_CHUNKS = frozenset({b"VP8X", b"EXIF", b"XMP "})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length
_SOS, _EOI, _COM = 0xDA, 0xD9, 0xFE
_BAND_BYTES = 4 << 20  # pixels hashed per slice of a decoded frame

Update = Callable[[memoryview], object]  # hashlib's update, fed slices of the file


class _NotThisFormat(ValueError):
    """The container does not parse as the format its magic bytes claim."""


def sniff_format(data: bytes) -> str | None:
    """The container format from the first bytes: jpeg, png, webp, tiff, heif or None."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in TIFF_MAGICS:
        return "tiff"
    if data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        return "heif"
    return None


def photo_hash(path: Path, data: bytes) -> str:
    """A photo's identity in the index: the whole file for RAW and HEIF (never written
    into, recognised by name or by bytes), else the hash of its image data."""
    if needs_sidecar(path) or sniff_format(data) == "heif":
        return file_hash(data)
    return content_hash(data)


def file_hash(data: bytes) -> str:
    """For files photoscribe never writes into (RAW, HEIF: they get sidecars): all bytes."""
    if not data:
        raise DecodeError("the file is empty (0 bytes), not an image")
    return "file:" + hashlib.sha256(data).hexdigest()


def content_hash(data: bytes) -> str:
    """``scheme:hexdigest`` of the image data in ``data``; raises DecodeError for non-images."""
    if not data:
        raise DecodeError("the file is empty (0 bytes), not an image")
    walker = _WALKERS.get(sniff_format(data) or "")
    if walker is not None:
        digest = hashlib.sha256()
        try:
            walker(data, digest.update)
        except _NotThisFormat:
            pass  # damaged container: let the decoder judge the pixels
        else:
            return f"{sniff_format(data)}:{digest.hexdigest()}"
    return "px:" + _pixel_hash(data)


def _hash_jpeg(data: bytes, update: Update) -> None:
    view = memoryview(data)
    pos = 2  # after SOI
    while True:
        pos = _skip_fill(data, pos)
        if pos + 2 > len(data) or data[pos] != 0xFF:
            raise _NotThisFormat("JPEG marker expected")
        marker = data[pos + 1]
        if marker in _JPEG_STANDALONE:
            update(view[pos : pos + 2])
            pos += 2
            continue
        if marker == _EOI:
            raise _NotThisFormat("JPEG ends before its first scan")
        if pos + 4 > len(data):
            raise _NotThisFormat("JPEG segment header cut off")
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise _NotThisFormat("JPEG segment runs past the end of the file")
        if marker == _SOS:
            if data.rfind(b"\xff\xd9", end) < 0:  # from the end: EOI is near it
                raise _NotThisFormat("JPEG has no end-of-image marker (truncated)")
            update(view[pos:])  # scans, tables between scans, EOI and any trailer
            return
        if not (0xE0 <= marker <= 0xEF or marker == _COM):
            update(view[pos:end])
        pos = end


def _skip_fill(data: bytes, pos: int) -> int:
    """Markers may be preceded by any number of 0xFF fill bytes."""
    while pos + 1 < len(data) and data[pos] == 0xFF and data[pos + 1] == 0xFF:
        pos += 1
    return pos


def _hash_png(data: bytes, update: Update) -> None:
    view = memoryview(data)
    pos = len(PNG_MAGIC)
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise _NotThisFormat("PNG chunk runs past the end of the file")
        if kind not in _PNG_METADATA_CHUNKS:
            update(view[pos + 4 : pos + 8 + length])  # type + data (the CRC follows from them)
        if kind == b"IEND":
            return
        pos = end
    raise _NotThisFormat("PNG has no IEND chunk (truncated)")


def _hash_webp(data: bytes, update: Update) -> None:
    view = memoryview(data)
    (riff_size,) = struct.unpack_from("<I", data, 4)
    stop = 8 + riff_size
    if stop > len(data):
        raise _NotThisFormat("WebP is shorter than its RIFF header says (truncated)")
    pos, seen_image = 12, False
    while pos + 8 <= stop:
        kind, length = struct.unpack_from("<4sI", data, pos)
        end = pos + 8 + length
        if end > stop:
            raise _NotThisFormat("WebP chunk runs past the end of the file")
        if kind not in _WEBP_METADATA_CHUNKS:
            update(view[pos : pos + 8 + length])
            seen_image = seen_image or kind in (b"VP8 ", b"VP8L", b"ANMF")
        pos = end + (length & 1)  # chunks are padded to an even size
    if not seen_image:
        raise _NotThisFormat("WebP has no image chunk")


_WALKERS: dict[str, Callable[[bytes, Update], None]] = {
    "jpeg": _hash_jpeg,
    "png": _hash_png,
    "webp": _hash_webp,
}


def _pixel_hash(data: bytes) -> str:
    """Decode the frames with PIL (at most limits.MAX_HASHED_FRAMES) and hash mode, size
    and pixels; a decompression bomb is refused before any pixel is decoded."""
    import io
    import warnings

    from PIL import Image, ImageSequence, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    digest = hashlib.sha256()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                for index, frame in enumerate(ImageSequence.Iterator(image)):
                    if index == MAX_HASHED_FRAMES:
                        break
                    _hash_frame(frame, digest.update)
    except UnidentifiedImageError as exc:
        raise DecodeError("not an image file (the format is not recognised)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(too_many_pixels(exc)) from exc
    except (OSError, ValueError, SyntaxError, struct.error, EOFError, TypeError) as exc:
        # TypeError: PIL's "Missing dimensions" for a TIFF page without a width
        raise DecodeError(f"the image data is damaged or truncated: {exc}") from exc
    return digest.hexdigest()


def _hash_frame(frame: Any, update: Update) -> None:
    """Mode, size and the raw pixels of one frame, fed in bands of rows (the same bytes
    as ``frame.tobytes()`` without a second copy of the whole frame in memory)."""
    width, height = frame.size
    update(f"{frame.mode}:{width}x{height};".encode())
    frame.load()
    rows = max(1, _BAND_BYTES // max(1, width * 8))
    for top in range(0, height, rows):
        update(frame.crop((0, top, width, min(height, top + rows))).tobytes())
