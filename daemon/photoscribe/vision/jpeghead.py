"""Which JPEGs can be decoded on the GPU (nvJPEG), read from their headers alone.

Runs in the worker processes (PIL only, no torch): the file is read, hashed and its
header checked there, and only the bytes of a photo that nvJPEG decodes the way the CPU
path would (8-bit RGB or greyscale, Huffman DCT, within the pixel limit) go back
undecoded. Anything else is decoded on the CPU as before.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from photoscribe.limits import MAX_IMAGE_PIXELS
from photoscribe.vision.loader import PICTURE_FRAMES, _frame_marker

END_OF_IMAGE = b"\xff\xd9"
TAIL_BYTES = 64 << 10  # cameras may put padding or a second stream after the EOI marker
ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 upright ... 8 (see orient in gpudecode)


@dataclass(frozen=True)
class JpegBytes:
    """A JPEG to decode on the GPU, with what its header said."""

    data: bytes
    orientation: int  # EXIF orientation 1-8, applied after decoding as PIL's exif_transpose
    size: tuple[int, int]  # (width, height) as stored, before orientation


def gpu_jpeg(data: bytes) -> JpegBytes | None:
    """``data`` as a ``JpegBytes`` when nvJPEG can decode it like the CPU path; None:
    decode it on the CPU (not a JPEG, CMYK, 12-bit, lossless, too many pixels, ...)."""
    if not data.startswith(b"\xff\xd8\xff") or _frame_marker(data, 0) not in PICTURE_FRAMES:
        return None
    if END_OF_IMAGE not in data[-TAIL_BYTES:]:
        return None  # truncated: the CPU decoder says so, nvJPEG might not
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.format != "JPEG" or img.mode not in ("RGB", "L"):
                    return None
                if img.mode == "RGB" and img.info.get("adobe_transform") == 0:
                    return None  # RGB stored without YCbCr: nvJPEG would convert it anyway
                width, height = img.size
                orientation = _orientation(img)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None  # the CPU path gives the reason
    except Image.DecompressionBombWarning:
        return None
    if width * height > MAX_IMAGE_PIXELS or min(width, height) < 1:
        return None
    return JpegBytes(data, orientation, (width, height))


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, SyntaxError, ValueError, TypeError):  # damaged EXIF: CPU path ignores too
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1
