"""`photoscribe undo` gives back exactly what was there: the *whole* exiftool output of every
photo (JPEG, PNG, TIFF, WebP in its simple, lossless-with-alpha and extended layouts, each
with and without metadata of its own) and of every sidecar is the same before the scan and
after undo, end to end through the CLI.

Dropped from the comparison: the three rewrite dates (fixtures/exiftool.py REWRITE_DATES),
nothing else for a photo without metadata of its own, which must also be byte-identical
again (sizes, WebP layout: File:FileType "WEBP" vs "Extended WEBP", RIFF:WebP_Flags). A photo
with metadata of its own gets every tag back but exiv2 re-serialises its blocks
(RESERIALISED there: XMP toolkit, EXIF byte order, IPTC dataset order, TIFF strip offsets,
file size); a sidecar that existed before (darktable's), likewise, all but its size.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from photoscribe.cli import main
from test_sidecar_undo import DARKTABLE_SIDECAR

from conftest import tiny_config_dict
from fixtures.exiftool import RESERIALISED, differences, whole_tags
from fixtures.raw import lossless_jpeg, sensor_mosaic, tiff_raw
from fixtures.synthetic import draw_shape

SIDECAR_LAYOUT = ("System:FileSize",)  # a sidecar that existed before, re-serialised
PRIOR = {  # the photo's own metadata, as a camera or another tool left it
    "jpeg": ["-XMP-dc:Subject=Oma", "-IPTC:Keywords=Oma", "-IFD0:Make=OLYMPUS",
             "-IFD0:ImageDescription=OLYMPUS DIGITAL CAMERA"],
    "png": ["-XMP-dc:Subject=Oma", "-XMP-dc:Description=Garten", "-IFD0:Make=Pixel"],
    "tiff": ["-XMP-dc:Subject=Oma", "-IPTC:Keywords=Oma", "-IFD0:Artist=Ich"],
    "webp": ["-XMP-dc:Subject=Oma", "-XMP-dc:Description=Garten", "-IFD0:Make=Pixel"],
}  # fmt: skip


def compared(path: Path) -> dict:
    return whole_tags(path, drop=RESERIALISED if path.name.startswith("own-") else ())


def pixels(path: Path) -> bytes:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGBA")).tobytes()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def with_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # one transparent pixel: the alpha is really used
    return rgba


Maker = Callable[[Image.Image, Path], None]
PHOTOS: dict[str, tuple[str, Maker]] = {  # name → (format, how it is saved)
    "a.jpg": ("jpeg", lambda img, p: img.save(p, "JPEG", quality=90)),
    "b.png": ("png", lambda img, p: img.save(p, "PNG")),
    "c.tif": ("tiff", lambda img, p: img.save(p, "TIFF")),
    "d.webp": ("webp", lambda img, p: img.save(p, "WEBP", quality=85)),  # simple: VP8 only
    "e.webp": ("webp", lambda img, p: with_alpha(img).save(p, "WEBP", lossless=True)),  # VP8L
    "f.webp": ("webp", lambda img, p: with_alpha(img).save(p, "WEBP", quality=85)),  # VP8X+ALPH
}


@pytest.fixture
def cli(tmp_path: Path, fake_llm):
    raw = tiny_config_dict(tmp_path, fake_llm.base_url)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return lambda *args: main(["--config", str(cfg), *args])


def make_photos(folder: Path) -> list[Path]:
    folder.mkdir()
    made = []
    for i, (name, (fmt, save)) in enumerate(PHOTOS.items()):
        img = draw_shape(("red", "blue", "green")[i % 3], "circle", size=(320, 240), seed=i)
        for prior in (False, True):
            path = folder / (f"own-{name}" if prior else name)
            save(img, path)
            if prior:
                subprocess.run(["exiftool", "-q", "-overwrite_original", *PRIOR[fmt], str(path)],
                               check=True)  # fmt: skip
            made.append(path)
    return made


def test_undo_restores_the_whole_exiftool_output_of_every_format(tmp_path, cli, capsys) -> None:
    photos = make_photos(tmp_path / "photos")
    before = {p.name: (compared(p), pixels(p), sha(p)) for p in photos}
    assert cli("scan", str(tmp_path / "photos")) == 0
    for p in photos:  # every photo really was written into
        assert "XMP-photoscribe:ContentHash" in whole_tags(p), p.name
    capsys.readouterr()
    assert cli("undo", "--all") == 0
    assert f"{len(photos)} photos restored, 0 failed" in capsys.readouterr().out
    diffs = {p.name: differences(before[p.name][0], compared(p)) for p in photos}
    assert {name: d for name, d in diffs.items() if d} == {}
    assert all(pixels(p) == before[p.name][1] for p in photos)
    bare = [p for p in photos if not p.name.startswith("own-")]
    assert [p.name for p in bare if sha(p) != before[p.name][2]] == []  # byte-identical


def test_undo_deletes_created_sidecars_and_restores_existing_ones_exactly(tmp_path, cli) -> None:
    import pillow_heif

    folder = tmp_path / "photos"
    folder.mkdir()
    buf = io.BytesIO()
    draw_shape("red", "circle", size=(640, 480), seed=1).save(buf, "JPEG", quality=92)
    sensor = lossless_jpeg(sensor_mosaic(96, 64))
    for name in ("new.DNG", "edited.DNG"):
        (folder / name).write_bytes(tiff_raw(buf.getvalue(), (640, 480), sensor, (96, 64)))
    pillow_heif.register_heif_opener()
    draw_shape("blue", "square", size=(400, 300), seed=2).save(folder / "new.HEIC", quality=80)
    darktable = folder / "edited.DNG.xmp"
    darktable.write_text(DARKTABLE_SIDECAR, encoding="utf-8")
    photos = sorted(folder.iterdir())
    before = {p.name: sha(p) for p in photos}
    sidecar_before = whole_tags(darktable, drop=SIDECAR_LAYOUT)

    assert cli("scan", str(folder)) == 0
    assert (folder / "new.DNG.xmp").exists() and (folder / "new.HEIC.xmp").exists()
    assert "XMP-photoscribe:ContentHash" in whole_tags(darktable)
    assert cli("undo", "--all") == 0
    assert sorted(folder.iterdir()) == photos  # the sidecars photoscribe created are gone
    assert differences(sidecar_before, whole_tags(darktable, drop=SIDECAR_LAYOUT)) == {}
    assert {p.name: sha(p) for p in photos if p != darktable} == {
        name: digest for name, digest in before.items() if name != darktable.name
    }


def test_undo_that_cannot_restore_says_so_and_leaves_the_file(tmp_path, cli, capsys, monkeypatch):
    """exiv2 keeps a WebP's XMP chunk when every property is deleted; without photoscribe's
    repair (taken out here) undo must fail for that photo rather than say "restored"."""
    from photoscribe.metadata import backend

    folder = tmp_path / "photos"
    folder.mkdir()
    photo = folder / "d.webp"
    draw_shape("red", "circle", size=(320, 240), seed=3).save(photo, "WEBP", quality=85)
    assert cli("scan", str(folder)) == 0
    tagged = photo.read_bytes()
    monkeypatch.setattr(backend, "without_xmp", lambda data: data)
    capsys.readouterr()
    assert cli("undo", str(photo)) == 1
    out = capsys.readouterr().out
    assert "0 photos restored, 1 failed" in out
    assert "undo could not restore Xmp." in out
    assert photo.read_bytes() == tagged
