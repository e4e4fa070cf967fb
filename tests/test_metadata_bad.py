"""Bad inputs at the writer: every one ends in a correct write or a clear PhotoError naming
the file and the reason, and a refused file stays byte-identical with no temp file left."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin, TiffImagePlugin

from photoscribe.contenthash import content_hash
from photoscribe.errors import DecodeError, MetadataError, PhotoError
from photoscribe.metadata import write_annotation
from photoscribe.records import Annotation

from fixtures.camera import copy_to
from fixtures.exiftool import read_tags

BROKEN_XMP = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><broken"


def image() -> Image.Image:
    rng = np.random.default_rng(11)
    return Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8))


def encoded(fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image().save(buffer, format=fmt.upper(), **save)
    return buffer.getvalue()


def put(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def broken_xmp_png(folder: Path) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", BROKEN_XMP.decode())
    return put(folder, "broken-xmp.png", encoded("png", pnginfo=info))


def broken_xmp_tiff(folder: Path) -> Path:
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    ifd[700], ifd.tagtype[700] = BROKEN_XMP, 1  # XMLPacket as bytes
    return put(folder, "broken-xmp.tif", encoded("tiff", tiffinfo=ifd))


def truncated(fmt: str, suffix: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        data = encoded(fmt, **({"lossless": True} if fmt == "webp" else {}))
        return put(folder, f"truncated{suffix}", data[: len(data) * 2 // 3])

    return make


def garbage_tiff_ifd(folder: Path) -> Path:
    data = bytearray(encoded("tiff"))
    data[4:8] = (len(data) + 1000).to_bytes(4, "little")  # IFD0 offset past the end
    return put(folder, "garbage-ifd.tif", bytes(data))


# name → (make the file, the PhotoError subclass, words the message must contain)
UNPARSEABLE: dict[str, tuple[Callable[[Path], Path], type[PhotoError], str]] = {
    "jpeg-real-broken-xmp": (
        lambda d: copy_to("motorola-broken-xmp", d),
        MetadataError,
        "XMP packet is damaged",
    ),
    "jpeg-real-garbage-exif": (
        lambda d: copy_to("garbage-exif", d),
        MetadataError,
        "EXIF block is damaged",
    ),
    "jpeg-real-truncated-camera": (
        lambda d: copy_to("truncated-canon", d),
        DecodeError,
        "truncated",
    ),
    "jpeg-truncated": (truncated("jpeg", ".jpg"), DecodeError, "truncated"),
    "png-broken-xmp": (broken_xmp_png, MetadataError, "XMP packet is damaged"),
    "png-truncated": (truncated("png", ".png"), DecodeError, "truncated"),
    "tiff-broken-xmp": (broken_xmp_tiff, MetadataError, "XMP packet is damaged"),
    "tiff-truncated": (truncated("tiff", ".tif"), DecodeError, "truncated"),
    "tiff-garbage-ifd": (garbage_tiff_ifd, DecodeError, "not an image"),
    "webp-broken-xmp": (
        lambda d: put(d, "broken-xmp.webp", encoded("webp", xmp=BROKEN_XMP, lossless=True)),
        MetadataError,
        "XMP packet is damaged",
    ),
    "webp-truncated": (truncated("webp", ".webp"), DecodeError, "truncated"),
}


def try_write(path: Path) -> None:
    """Write with the file's real hash (if it has one), so only the metadata step can fail."""
    try:
        digest = content_hash(path.read_bytes())
    except DecodeError:
        digest = "jpeg:unknown"
    ann = Annotation(("dog",), "A dog", "test-clip", digest)
    write_annotation(path, ann, expected_hash=digest)


def leftovers(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if "photoscribe-tmp" in name]


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # Pillow, on the garbage TIFF
@pytest.mark.parametrize("kind", sorted(UNPARSEABLE))
def test_unparseable_files_are_refused_and_untouched(kind: str, tmp_path: Path) -> None:
    make, error, reason = UNPARSEABLE[kind]
    path = make(tmp_path)
    data = path.read_bytes()
    with pytest.raises(PhotoError, match=reason) as info:
        try_write(path)
    assert type(info.value) is error
    assert path.name in str(info.value)
    assert path.read_bytes() == data
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif", ".webp"])
def test_zero_byte_files_are_a_decode_error(suffix: str, tmp_path: Path) -> None:
    path = put(tmp_path, f"empty{suffix}", b"")
    ann = Annotation(("dog",), None, "m", "jpeg:x")
    with pytest.raises(DecodeError, match="empty"):
        write_annotation(path, ann, expected_hash="jpeg:x")
    assert path.read_bytes() == b"" and leftovers(tmp_path) == []


# Decision: the container is taken from the bytes, never from the name. A PNG named .jpg is
# written as the PNG it is (no IPTC), and keeps its name: renaming is the user's business.
@pytest.mark.parametrize(
    ("fmt", "name", "file_type"),
    [
        ("png", "png.jpg", "PNG"),
        ("webp", "webp.png", "Extended WEBP"),
        ("jpeg", "jpeg.tif", "JPEG"),
    ],
)
def test_a_wrong_extension_is_written_by_content(
    fmt: str, name: str, file_type: str, tmp_path: Path
) -> None:
    path = put(tmp_path, name, encoded(fmt))
    try_write(path)
    t = read_tags(path)
    assert (t["File:FileType"], t["XMP-dc:Subject"]) == (file_type, ["dog"])
    assert bool([k for k in t if k.startswith("IPTC:")]) == (fmt == "jpeg")
    assert sorted(os.listdir(tmp_path)) == [name]


@pytest.mark.slow
def test_a_100_mb_tiff_is_written_and_its_pixels_untouched(tmp_path: Path) -> None:
    """Its time and memory: bench/bench_bad_inputs.py."""
    path = tmp_path / "big.tif"
    pixels = np.random.default_rng(0).integers(0, 256, (5800, 5800, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    del pixels
    assert path.stat().st_size > 95 * 2**20
    digest = content_hash(path.read_bytes())
    ann = Annotation(("dog",), "A dog", "m", digest)
    assert write_annotation(path, ann, expected_hash=digest).changed
    t = read_tags(path)
    assert (t["XMP-dc:Description"], t["XMP-dc:Subject"]) == ("A dog", ["dog"])
    assert content_hash(path.read_bytes()) == digest  # the same pixels
    assert leftovers(tmp_path) == []
