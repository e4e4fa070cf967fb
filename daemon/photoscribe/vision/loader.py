"""Decoding photos for the model: JPEG draft mode, EXIF orientation, clear failures."""

from __future__ import annotations

import io
import warnings
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from photoscribe.errors import DecodeError

Image.MAX_IMAGE_PIXELS = 200_000_000  # refuse decompression bombs beyond ~200 MP


def decode(data: bytes, min_side: int) -> Image.Image:
    """Decode ``data`` to an upright RGB image at least ``min_side`` px on its short side.

    JPEGs are decoded at a reduced DCT scale when the photo is much larger than the
    model's input (draft mode: ~4x faster on 12 MP photos), which is all CLIP needs.
    """
    if not data:
        raise DecodeError("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format == "JPEG":
                img.draft("RGB", (min_side, min_side))
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return _to_rgb(img)
    except UnidentifiedImageError as exc:
        raise DecodeError("not an image file (unknown or unsupported format)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"image is too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"the image data is damaged or truncated ({exc})") from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _high_depth_to_rgb(img)
    return img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> Image.Image:
    """16-bit / float greyscale → 8-bit, stretched to the image's own range."""
    import numpy as np

    arr = np.asarray(img.convert("F"), dtype=np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")


def prepare(data: bytes, preprocess: Any, min_side: int) -> Any:
    """Decode and apply the model's own preprocessing; runs in a worker thread."""
    return preprocess(decode(data, min_side))
