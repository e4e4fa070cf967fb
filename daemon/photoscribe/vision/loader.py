"""Decoding photos for the model: JPEG draft mode, EXIF orientation, clear failures."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from photoscribe.errors import DecodeError
from photoscribe.limits import MAX_IMAGE_PIXELS, too_many_pixels

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # refuse decompression bombs (limits.py)
MIN_PREVIEW_SIDE = 160  # a RAW's embedded JPEG smaller than this is too small to tag
PICTURE_FRAMES = (0xC0, 0xC1, 0xC2)  # SOF0-2: baseline, extended, progressive DCT (Huffman)
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


def decode(data: bytes, min_side: int, *, raw: bool = False) -> Image.Image:
    """Decode ``data`` to an upright RGB image at least ``min_side`` px on its short side.

    JPEGs are decoded at a reduced DCT scale when the photo is much larger than the
    model's input (draft mode: ~4x faster on 12 MP photos), which is all CLIP needs.
    ``raw``: a camera RAW file, whose largest embedded JPEG preview is decoded.
    """
    if not data:
        raise DecodeError("the file is empty (0 bytes)")
    if raw:
        data = raw_preview(data)
    elif data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS:
        _enable_heif()
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
        raise DecodeError(too_many_pixels(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as exc:  # libheif: Runtime
        raise DecodeError(f"the image data is damaged or truncated ({exc})") from exc


def raw_preview(data: bytes) -> bytes:
    """The largest JPEG embedded in a camera RAW file (every RAW format carries one for
    the camera's screen; CR2/NEF/ARW/DNG/ORF/RW2/RAF/PEF... keep a full-size one).

    Only baseline, extended and progressive DCT streams count: DNG, CR2 and many NEFs store
    the sensor data itself as a lossless JPEG (SOF3), often larger than the preview, which
    is a colour-filter mosaic rather than a picture."""
    best, best_area = b"", 0
    start = data.find(b"\xff\xd8\xff")
    while start != -1:
        size = _jpeg_size(data, start)
        if size is not None and size[0] * size[1] > best_area:
            best_area = size[0] * size[1]
            best = data[start:]
        start = data.find(b"\xff\xd8\xff", start + 3)
    if best_area < MIN_PREVIEW_SIDE**2:
        raise DecodeError(
            "this RAW file has no usable embedded preview; put a same-named JPEG beside it "
            "(e.g. exported by your RAW editor) and photoscribe will tag that instead"
        )
    return best


def _jpeg_size(data: bytes, start: int) -> tuple[int, int] | None:
    if _frame_marker(data, start) not in PICTURE_FRAMES:
        return None
    try:
        with Image.open(io.BytesIO(data[start : start + 1_000_000])) as img:
            return img.size if img.format == "JPEG" else None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def _frame_marker(data: bytes, start: int) -> int | None:
    """The SOFn marker of the JPEG stream at ``start`` (None: no frame before the scan)."""
    pos, end = start + 2, min(len(data), start + 1_000_000)
    while pos + 4 <= end and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # not DHT/JPG/DAC
            return marker
        if marker in (0xDA, 0xD9):  # a scan or the end before any frame
            return None
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def _enable_heif() -> None:
    """HEIC (iPhone photos) needs libheif through pillow-heif; loaded only when met."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError as exc:
        raise DecodeError(
            "HEIC photos need the pillow-heif package: pip install pillow-heif"
        ) from exc
    register_heif_opener()


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


def prepare(data: bytes, preprocess: Any, min_side: int, *, raw: bool = False) -> Any:
    """Decode and apply the model's own preprocessing, all in this process."""
    return preprocess(decode(data, min_side, raw=raw))


# -- decoding in a worker process, the tensor made in the model's ----------------------------
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class PixelPlan:
    """The model's resize and centre crop, done where the photo is decoded (with PIL, as
    torchvision does for PIL images), so that only model-sized pixels cross processes."""

    short_side: int
    crop: tuple[int, int]  # (height, width)
    resample: int  # a PIL resampling filter


def pixel_plan(preprocess: Any) -> PixelPlan | None:
    """The plan for a torchvision ``Compose`` that starts Resize(int) → CenterCrop, as
    OpenCLIP's do; None for any other (the worker then sends the decoded image whole)."""
    steps = list(getattr(preprocess, "transforms", ()))
    if len(steps) < 2 or [type(s).__name__ for s in steps[:2]] != ["Resize", "CenterCrop"]:
        return None
    resize, crop = steps[0], steps[1]
    size = resize.size
    if isinstance(size, (list, tuple)):
        if len(size) != 1:
            return None
        size = size[0]
    mode = getattr(resize.interpolation, "value", resize.interpolation)
    if getattr(resize, "max_size", None) is not None or mode not in RESAMPLE:
        return None
    height, width = (tuple(crop.size) * 2)[:2]
    return PixelPlan(int(size), (int(height), int(width)), RESAMPLE[mode])


def shrink(image: Image.Image, plan: PixelPlan | None) -> Any:
    """``image`` resized so that its short side is ``plan.short_side`` (computed as
    torchvision's Resize does), then centre-cropped: uint8 RGB pixels (numpy)."""
    import numpy as np

    if plan is not None:
        width, height = image.size
        short, long = sorted((width, height))
        new_long = int(plan.short_side * long / short)
        size = (plan.short_side, new_long) if width <= height else (new_long, plan.short_side)
        if size != image.size:
            image = image.resize(size, plan.resample)
        crop_h, crop_w = plan.crop
        if crop_h <= size[1] and crop_w <= size[0]:
            top = round((size[1] - crop_h) / 2.0)
            left = round((size[0] - crop_w) / 2.0)
            image = image.crop((left, top, left + crop_w, top + crop_h))
    return np.asarray(_to_rgb(image), dtype=np.uint8)


def tensor_from(pixels: Any, preprocess: Any) -> Any:
    """The model's input from pixels made by ``shrink`` (its resize and crop are then
    no-ops, so the tensor equals ``preprocess`` of the full image)."""
    return preprocess(Image.fromarray(pixels))
