"""content_hash: blind to metadata (ours and other tools'), sensitive to pixels."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photoscribe.contenthash import content_hash, sniff_format
from photoscribe.errors import DecodeError
from photoscribe.metadata import write_annotation
from photoscribe.records import Annotation

FORMATS = {"jpeg": "jpg", "png": "png", "tiff": "tif", "webp": "webp"}
SCHEMES = {"jpeg": "jpeg:", "png": "png:", "tiff": "px:", "webp": "webp:"}


def pixels(seed: int = 0, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    if fmt == "webp":
        options.setdefault("lossless", True)
    Image.fromarray(array).save(buffer, format=fmt.upper(), **options)
    return buffer.getvalue()


def make_photo(folder: Path, fmt: str, seed: int = 0, **options: object) -> Path:
    path = folder / f"photo{seed}.{FORMATS[fmt]}"
    path.write_bytes(encode(pixels(seed), fmt, **options))
    return path


def exiftool_write(path: Path, *args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_scheme_tag_names_how_the_hash_was_made(fmt: str) -> None:
    data = encode(pixels(), fmt)
    assert sniff_format(data) == fmt
    digest = content_hash(data)
    assert digest.startswith(SCHEMES[fmt])
    assert len(digest.split(":", 1)[1]) == 64
    assert content_hash(data) == digest  # deterministic


@pytest.mark.parametrize("fmt", FORMATS)
def test_unchanged_by_exiftool_metadata_write(fmt: str, tmp_path: Path) -> None:
    path = make_photo(tmp_path, fmt)
    before = path.read_bytes()
    exiftool_write(
        path,
        "-XMP-dc:Subject+=holiday",
        "-XMP-dc:Description=Beach 海滩",
        "-EXIF:Make=Canon",
        "-EXIF:DateTimeOriginal=2024:05:06 07:08:09",
        "-GPSLatitude=48.85",
        "-GPSLatitudeRef=N",
        *(["-IPTC:Keywords+=holiday", "-Comment=hello"] if fmt in ("jpeg", "tiff") else []),
    )
    assert path.read_bytes() != before
    assert content_hash(path.read_bytes()) == content_hash(before)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unchanged_by_our_write(fmt: str, tmp_path: Path) -> None:
    path = make_photo(tmp_path, fmt)
    digest = content_hash(path.read_bytes())
    ann = Annotation(("dog",), "A dog.", "test-model", digest)
    assert write_annotation(path, ann, expected_hash=digest).changed
    assert content_hash(path.read_bytes()) == digest


@pytest.mark.parametrize("fmt", FORMATS)
def test_changes_when_one_pixel_changes(fmt: str) -> None:
    array = pixels()
    changed = array.copy()
    changed[10, 10] = 255 - changed[10, 10]
    assert content_hash(encode(array, fmt)) != content_hash(encode(changed, fmt))


def test_tiff_hash_is_of_decoded_pixels_not_the_encoding() -> None:
    array = pixels()
    assert content_hash(encode(array, "tiff")) == content_hash(
        encode(array, "tiff", compression="tiff_lzw")
    )


def test_jpeg_comment_and_app_segments_are_ignored_but_trailer_counts() -> None:
    data = encode(pixels(), "jpeg")
    comment = b"\xff\xfe\x00\x07hello"
    app9 = b"\xff\xe9\x00\x06abcd"
    with_metadata = data[:2] + comment + app9 + data[2:]
    assert content_hash(with_metadata) == content_hash(data)
    assert content_hash(data + b"TRAILER") != content_hash(data)


def test_progressive_jpeg_is_walked(tmp_path: Path) -> None:
    path = make_photo(tmp_path, "jpeg", progressive=True)
    digest = content_hash(path.read_bytes())
    exiftool_write(path, "-XMP-dc:Subject+=x", "-Comment=c")
    assert digest.startswith("jpeg:") and content_hash(path.read_bytes()) == digest


def test_other_decodable_formats_hash_pixels() -> None:
    buffer = io.BytesIO()
    Image.fromarray(pixels()).save(buffer, format="GIF")
    assert content_hash(buffer.getvalue()).startswith("px:")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, this is a text file\n", "not an image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "damaged or truncated"),
    ],
)
def test_non_images_raise_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        content_hash(data)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_truncated_files_raise_decode_error(fmt: str) -> None:
    data = encode(pixels(size=(256, 256)), fmt)
    with pytest.raises(DecodeError, match=r"truncated|damaged"):
        content_hash(data[: len(data) // 2])
