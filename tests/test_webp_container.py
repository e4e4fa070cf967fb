"""The WebP container repairs after exiv2 (metadata/webp.py) and how undo uses them: the image
chunks' bytes never change, and the simple layout only comes back where it was and where
nothing else needs the extended one."""

from __future__ import annotations

import io
import struct
import subprocess
from pathlib import Path

from PIL import Image

from photoscribe.contenthash import content_hash
from photoscribe.metadata import webp, write_annotation
from photoscribe.records import Annotation
from photoscribe.undo import apply_file, plan_file

from fixtures.exiftool import read_tags
from fixtures.synthetic import draw_shape


def simple_webp(**options) -> bytes:
    buf = io.BytesIO()
    draw_shape("red", "circle", size=(120, 90), seed=5).save(buf, "WEBP", **options)
    return buf.getvalue()


def vp8x(flags: int) -> tuple[bytes, bytes]:
    canvas = (119).to_bytes(3, "little") + (89).to_bytes(3, "little")  # 120 x 90, minus one
    return b"VP8X", bytes([flags, 0, 0, 0]) + canvas


def test_an_extended_webp_with_nothing_extended_becomes_simple_again() -> None:
    simple = simple_webp(quality=80)
    (image,) = webp.chunks(simple)
    assert webp.simple_if_possible(webp.assemble([vp8x(0), image])) == simple
    trailer = b"trailing bytes some tools append"
    extended = webp.assemble([vp8x(0), image], trailer)
    assert webp.simple_if_possible(extended) == simple + trailer


def test_what_needs_the_extended_layout_keeps_it() -> None:
    (image,) = webp.chunks(simple_webp(quality=80))
    cases = [
        [vp8x(0x10), (b"ALPH", b"\x00" * 10), image],  # lossy with an alpha chunk
        [vp8x(0x20), (b"ICCP", b"\x00" * 8), image],  # a colour profile
        [vp8x(0x08), image, (b"EXIF", b"II*\x00\x08\x00\x00\x00\x00\x00")],  # EXIF
        [vp8x(0), image, (b"ABCD", b"x")],  # an unknown chunk
        [vp8x(0x10), image],  # alpha flag for a VP8 (lossy) image: not ours to judge
    ]
    for parts in cases:
        data = webp.assemble(parts)
        assert webp.simple_if_possible(data) == data, parts[0]


def test_the_xmp_chunk_goes_with_its_flag_and_nothing_else_changes() -> None:
    (image,) = webp.chunks(simple_webp(lossless=True))
    xmp = (b"XMP ", b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")  # odd length: padded
    data = webp.assemble([vp8x(0x14), image, xmp], b"tail")
    stripped = webp.without_xmp(data)
    assert webp.chunks(stripped) == [vp8x(0x10), image]
    assert stripped.endswith(b"tail")
    assert struct.unpack_from("<I", stripped, 4)[0] == len(stripped) - 8 - len(b"tail")
    assert content_hash(stripped) == content_hash(data)
    assert webp.without_xmp(stripped) == stripped


def test_undo_keeps_the_extended_layout_when_someone_added_exif_since(tmp_path: Path) -> None:
    photo = tmp_path / "p.webp"
    photo.write_bytes(simple_webp(quality=80))
    digest = content_hash(photo.read_bytes())
    journal = []
    ann = Annotation(("red",), "A red circle.", "m", digest)
    write_annotation(photo, ann, expected_hash=digest, journal=lambda _, c: journal.append(c))
    assert journal[0][webp.LAYOUT_KEY][0] is None  # it was simple
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-IFD0:Artist=Ich", str(photo)], check=True
    )
    plan, data, stat = plan_file(photo, journal)
    apply_file(plan, data, stat)  # their EXIF chunk needs the VP8X: it stays
    tags = read_tags(photo)
    assert tags["IFD0:Artist"] == "Ich" and tags["File:FileType"] == "Extended WEBP"
    assert "XMP-dc:Subject" not in tags and "XMP-photoscribe:ContentHash" not in tags
    with Image.open(photo) as img:
        img.load()
    assert content_hash(photo.read_bytes()) == digest
