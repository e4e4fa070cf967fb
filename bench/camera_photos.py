"""Camera-like benchmark photos: real pictures, upscaled, with sensor grain and sharp detail.

A smooth upscaled image decodes 2-3x faster than a camera file of the same size (its DCT
blocks are nearly empty), so timing photoscribe on one says little. These photos start from
the real photos scikit-image ships, are cropped and upscaled differently per seed, get hard
edges and fine texture drawn over them and per-pixel gaussian grain (luma and chroma), and
carry basic camera EXIF: a 12 MP one is ~3 MB at quality 90, like a camera JPEG. Every seed
gives different pixels, so no photo is taken for a copy of another.

Formats: ``jpeg``, ``png``, ``heic`` (needs pillow-heif) and ``raw`` (a DNG-like TIFF whose
IFD0 is a full-size JPEG preview and whose SubIFD is a small lossless-JPEG sensor mosaic,
built with tests/fixtures/raw.py). Sets are cached under a folder keyed by their parameters.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VERSION = 2  # bump when the pixels or encodings change, so cached sets are made again
JPEG_QUALITY = 90
# HEVC at quality 55: ~0.37 MB per MP, near a phone's HEIC; x265's "superfast" preset
# encodes ~3x faster than its default (a 12 MP photo took 3 minutes on 2 busy cores)
HEIC_QUALITY, HEIC_PRESET = 55, "superfast"
LUMA_GRAIN = 3.0  # sigma of the per-pixel luminance noise (8-bit levels)
CHROMA_GRAIN = 2.0  # sigma of the per-channel colour noise
FORMATS = ("jpeg", "png", "heic", "raw")
SUFFIX = {"jpeg": ".jpg", "png": ".png", "heic": ".heic", "raw": ".dng"}
RAW_SENSOR = (384, 256)  # the mosaic's size: its bytes are hashed and searched, never decoded


@dataclass(frozen=True)
class PhotoSet:
    """``count`` photos of ``megapixels`` (4:3) in each of ``formats`` (round robin)."""

    name: str
    count: int
    megapixels: float
    formats: tuple[str, ...] = ("jpeg",)

    @property
    def size(self) -> tuple[int, int]:
        return size_for(self.megapixels)

    def key(self) -> str:
        kinds = "+".join(self.formats)
        return f"v{VERSION}-{kinds}-{self.megapixels:g}mp-{self.count}"


def size_for(megapixels: float) -> tuple[int, int]:
    """(width, height) of a 4:3 photo of about ``megapixels`` (12 → 4000x3000)."""
    unit = (megapixels * 1e6 / 12) ** 0.5
    return max(4, round(4 * unit)), max(3, round(3 * unit))


def heic_available() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _sources() -> tuple[np.ndarray, ...]:
    import skimage.data

    gray = skimage.data.camera()
    return (
        skimage.data.astronaut(),
        skimage.data.chelsea(),
        skimage.data.coffee(),
        skimage.data.rocket(),
        skimage.data.hubble_deep_field(),
        skimage.data.stereo_motorcycle()[0],
        np.stack([gray] * 3, axis=-1),
    )


def camera_pixels(seed: int, size: tuple[int, int]) -> np.ndarray:
    """Height x width x 3 uint8 pixels of photo ``seed``: cropped, upscaled, detailed, grainy."""
    from PIL import Image

    rng = np.random.default_rng([VERSION, seed])
    sources = _sources()
    source = sources[seed % len(sources)]
    img = Image.fromarray(_crop(source, rng)).resize(size, Image.Resampling.BICUBIC)
    _draw_detail(img, rng)
    return _add_grain(np.asarray(img), rng)


def _crop(source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random 70-100 % window of ``source``, maybe mirrored."""
    h, w = source.shape[:2]
    scale = rng.uniform(0.7, 1.0)
    ch, cw = max(2, int(h * scale)), max(2, int(w * scale))
    top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    window = source[top : top + ch, left : left + cw]
    return np.ascontiguousarray(window[:, ::-1] if rng.random() < 0.5 else window)


def _draw_detail(img, rng: np.random.Generator) -> None:
    """Hard edges (polygons, thin lines) and a patch of fine texture, as real scenes have."""
    from PIL import Image, ImageDraw

    w, h = img.size
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        points = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(4)]
        draw.polygon(points, fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    for _ in range(40):
        xy = [float(v) for v in rng.uniform(0, 1, 4) * (w, h, w, h)]
        width = int(rng.integers(1, 4))
        draw.line(xy, fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=width)
    tw, th = max(1, w // 3), max(1, h // 3)
    cells = rng.integers(0, 256, (max(1, th // 3), max(1, tw // 3), 3), dtype=np.uint8)
    texture = Image.fromarray(cells).resize((tw, th), Image.Resampling.NEAREST)
    img.paste(texture, (int(rng.integers(0, w - tw + 1)), int(rng.integers(0, h - th + 1))))


GRAIN_SLACK = 64  # the grain of photo n is the bank's window at a random offset below this


@functools.cache
def _grain_bank(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian grain a little larger than ``size`` (int16 luma, int16 chroma), made once
    per process: each photo takes its own window of it, so adding grain costs no RNG."""
    w, h = size
    rng = np.random.default_rng([VERSION, w, h])
    shape = (h + GRAIN_SLACK, w + GRAIN_SLACK)
    luma = rng.standard_normal((*shape, 1), dtype=np.float32) * LUMA_GRAIN
    chroma = rng.standard_normal((*shape, 3), dtype=np.float32) * CHROMA_GRAIN
    return np.rint(luma).astype(np.int16), np.rint(chroma).astype(np.int16)


def _add_grain(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w, _ = pixels.shape
    luma, chroma = _grain_bank((w, h))
    y, x = (int(v) for v in rng.integers(0, GRAIN_SLACK, 2))
    noisy = pixels.astype(np.int16)
    noisy += luma[y : y + h, x : x + w]
    y, x = (int(v) for v in rng.integers(0, GRAIN_SLACK, 2))
    noisy += chroma[y : y + h, x : x + w]
    return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)


def _exif(seed: int):
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "Photoscribe Bench"  # Make
    exif[0x0110] = "Grain 12"  # Model
    exif[0x0112] = 1  # Orientation
    exif[0x0132] = f"2026:06:{1 + seed % 28:02d} 10:{seed % 60:02d}:00"  # DateTime
    return exif


def encode(pixels: np.ndarray, fmt: str, seed: int) -> bytes:
    """The photo file's bytes in ``fmt``."""
    from PIL import Image

    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, "JPEG", quality=JPEG_QUALITY, exif=_exif(seed))
    elif fmt == "png":
        img.save(buf, "PNG", compress_level=6)
    elif fmt == "heic":
        from pillow_heif import register_heif_opener

        register_heif_opener()
        img.save(buf, "HEIF", quality=HEIC_QUALITY, enc_params={"preset": HEIC_PRESET})
    elif fmt == "raw":
        return _raw(img, seed)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return buf.getvalue()


def _raw(img, seed: int) -> bytes:
    """A DNG-like RAW: the photo as its full-size JPEG preview, a small sensor mosaic."""
    from fixtures.raw import lossless_jpeg, sensor_mosaic, tiff_raw

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    sensor = lossless_jpeg(sensor_mosaic(*RAW_SENSOR, seed=seed))
    return tiff_raw(buf.getvalue(), img.size, sensor, RAW_SENSOR)


def _make_one(args: tuple[Path, int, tuple[int, int], str]) -> Path:
    folder, seed, size, fmt = args
    path = folder / f"photo_{seed:04d}{SUFFIX[fmt]}"
    path.write_bytes(encode(camera_pixels(seed, size), fmt, seed))
    return path


def build_set(photo_set: PhotoSet, root: Path, processes: int | None = None) -> Path:
    """The folder holding ``photo_set``, made (in parallel) unless ``root`` already has it."""
    folder = root / photo_set.key()
    done = folder / ".complete"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    jobs = [
        (folder, seed, photo_set.size, photo_set.formats[seed % len(photo_set.formats)])
        for seed in range(photo_set.count)
    ]
    workers = max(1, min(processes or os.cpu_count() or 1, len(jobs)))
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make_one, jobs))
    done.touch()
    return folder


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("photo_"))


def smooth_pixels(seed: int, size: tuple[int, int]) -> np.ndarray:
    """What the old benchmark used: a real photo upscaled, nothing else (for comparison)."""
    from PIL import Image

    source = _sources()[seed % len(_sources())]
    return np.asarray(Image.fromarray(source).resize(size, Image.Resampling.BICUBIC))


def high_frequency_energy(pixels: np.ndarray) -> float:
    """Mean absolute difference between neighbouring pixels (luma): ~1-3 for a smooth
    upscale, far more for a grainy, detailed camera photo."""
    luma = pixels.astype(np.float32).mean(axis=2)
    return float((np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean()) / 2)
