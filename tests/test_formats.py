"""RAW previews, HEIC/AVIF decoding and which files get sidecars."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from photoscribe.contenthash import file_hash
from photoscribe.errors import DecodeError
from photoscribe.formats import (
    lightroom_sidecar_path,
    needs_sidecar,
    same_named_jpeg,
    sidecar_path,
)
from photoscribe.vision.loader import decode, raw_preview

from fixtures.synthetic import draw_shape


def jpeg(size: tuple[int, int], colour: str = "red") -> bytes:
    buf = io.BytesIO()
    draw_shape(colour, "circle", size=size, seed=3).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def fake_raw(*previews: bytes) -> bytes:
    """TIFF-style header, sensor-like noise and JPEG previews, as RAW files are built."""
    parts = [b"II*\x00\x08\x00\x00\x00", os.urandom(50_000)]
    for preview in previews:
        parts += [preview, os.urandom(20_000)]
    return b"".join(parts)


def test_the_largest_embedded_preview_is_used() -> None:
    data = fake_raw(jpeg((160, 120), "blue"), jpeg((640, 480), "red"), jpeg((320, 240), "green"))
    with Image.open(io.BytesIO(raw_preview(data))) as img:
        assert img.size == (640, 480)
    image = decode(data, 224, raw=True)
    assert (image.mode, image.size) == ("RGB", (320, 240))  # the 640×480 one, drafted at 1/2


def test_a_raw_without_a_usable_preview_says_what_to_do() -> None:
    with pytest.raises(DecodeError, match="same-named JPEG"):
        decode(fake_raw(jpeg((100, 75))), 224, raw=True)
    with pytest.raises(DecodeError, match="same-named JPEG"):
        decode(fake_raw(), 224, raw=True)


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_heic_and_avif_decode(fmt: str) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()  # to write the fixture; decode enables it itself
    buf = io.BytesIO()
    draw_shape("green", "square", size=(400, 300), seed=1).save(buf, fmt, quality=85)
    image = decode(buf.getvalue(), 224)
    assert image.mode == "RGB" and image.size == (400, 300)


def test_sidecar_names(tmp_path: Path) -> None:
    raw = tmp_path / "IMG_0001.CR2"
    raw.write_bytes(b"x")
    assert needs_sidecar(raw) and needs_sidecar(tmp_path / "a.heic")
    assert not needs_sidecar(tmp_path / "a.jpg")
    assert sidecar_path(raw).name == "IMG_0001.CR2.xmp"
    assert lightroom_sidecar_path(raw) == tmp_path / "IMG_0001.xmp"
    assert same_named_jpeg(raw) is None
    (tmp_path / "IMG_0001.JPG").write_bytes(b"y")
    assert lightroom_sidecar_path(raw) is None  # IMG_0001.xmp would be ambiguous
    assert same_named_jpeg(raw) == tmp_path / "IMG_0001.JPG"


def test_file_hash_is_all_bytes() -> None:
    assert file_hash(b"abc") == "file:" + hashlib.sha256(b"abc").hexdigest()
    assert file_hash(b"abc") != file_hash(b"abd")
    with pytest.raises(DecodeError, match=r"empty \(0 bytes\)"):
        file_hash(b"")
