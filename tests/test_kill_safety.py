"""A metadata write SIGKILLed at random moments, many times: the photo (JPEG, PNG, TIFF, WebP)
is always either the old or the new version (never half of one), its pixels never change,
and exiftool -validate finds nothing new; a sidecar being created (or replaced) is always
absent or one whole version, and the RAW beside it is never touched."""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photoscribe.config import ScanConfig
from photoscribe.scanner import find_photos

from fixtures.exiftool import exiftool_json
from fixtures.raw import lossless_jpeg, sensor_mosaic, tiff_raw
from fixtures.synthetic import draw_shape

WRITER = r"""
import sys
from pathlib import Path
from photoscribe.config import MetadataConfig
from photoscribe.contenthash import content_hash, file_hash
from photoscribe.metadata import write_photo
from photoscribe.records import Annotation

path, sidecar = Path(sys.argv[1]), sys.argv[2] == "sidecar"
data = path.read_bytes()
digest = file_hash(data) if sidecar else content_hash(data)
versions = [
    Annotation(("red", "circle"), "Version A: a red circle.", "m", digest),
    Annotation(("blue", "square", "sky"), "Version B: a blue square.", "m", digest),
]
config = MetadataConfig(overwrite_description=True)
target = path.with_name(path.name + ".xmp")
cycle = 3 if sidecar else 2  # sidecar: A creates it, B replaces it, then it is deleted


def step(i):
    if i % cycle == 2:
        target.unlink()
    else:
        write_photo(path, versions[i % cycle], expected_hash=digest, config=config)


hold = int(sys.stdin.readline())  # steps to finish before holding still for a check
print("ready", flush=True)
i = 0
while True:
    if i == hold:
        print("holding", flush=True)
        sys.stdin.readline()  # then write on without pause until killed
    step(i)
    i += 1
"""
VERSIONS = {  # description → photoscribe's keywords in that version
    "Version A: a red circle.": {"red", "circle"},
    "Version B: a blue square.": {"blue", "square", "sky"},
}
SIZE = {"photo.tif": (800, 600), "photo.png": (1200, 900)}  # slower to write and to read back
SAVE = {  # name → how the photo is saved
    "photo.jpg": lambda img, p: img.save(p, "JPEG", quality=95),
    "photo.png": lambda img, p: img.save(p, "PNG"),
    "photo.tif": lambda img, p: img.save(p, "TIFF", compression="tiff_deflate"),
    "photo.webp": lambda img, p: img.save(p, "WEBP", quality=90),
}
HAS_IPTC = (".jpg", ".tif")
ROUNDS = {"photo.jpg": 40, "photo.png": 20, "photo.tif": 20, "photo.webp": 20, "IMG.DNG": 25}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def read(path: Path) -> dict:
    """All tags, plus what `exiftool -validate` says about the file."""
    return exiftool_json("-G1", "-a", "-all", "-validate", path)[0]


def as_set(value) -> set:
    return set() if value is None else set(value if isinstance(value, list) else [value])


def kill_writer_at_random(photo: Path, mode: str, rounds: int, check) -> set[str | None]:
    """Each round: start the writer, let it finish a random number (0-3) of steps and hold
    still, ``check`` that state; let it write on without pause, SIGKILL it at a random moment,
    ``check`` the files again. The held checks make every version show up whatever this
    machine's speed; the kills land anywhere inside the writes that follow. Returns the
    descriptions seen (None: the original, or no sidecar)."""
    script = photo.parent.parent / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    rng = random.Random(f"{photo.name}-7")
    seen: set[str | None] = set()
    for _ in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(photo), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(f"{rng.randrange(4)}\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ready"
        assert proc.stdout.readline().strip() == "holding"
        seen.add(check())
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(rng.uniform(0.0, 0.25))  # the moment of the kill, not a synchronisation
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()
        seen.add(check())
    return seen


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("name", list(SAVE))
def test_writes_killed_at_random_moments_leave_old_or_new(tmp_path: Path, name: str) -> None:
    photo = tmp_path / "photos" / name
    photo.parent.mkdir()
    SAVE[name](draw_shape("green", "star", size=SIZE.get(name, (1600, 1200)), seed=9), photo)
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP-dc:Subject=Oma", str(photo)],
        check=True,
    )
    original = pixels(photo)
    baseline = read(photo)["ExifTool:Validate"]

    def check() -> str | None:
        tags = read(photo)
        description = tags.get("XMP-dc:Description")
        subjects = as_set(tags.get("XMP-dc:Subject"))
        if description is None:
            assert subjects == {"Oma"}  # the original, untouched
        else:
            assert subjects == {"Oma"} | VERSIONS[description]  # one whole version
            if photo.suffix in HAS_IPTC:
                assert as_set(tags.get("IPTC:Keywords")) == {"Oma"} | VERSIONS[description]
        assert tags["ExifTool:Validate"] == baseline, tags.get("ExifTool:Warning")
        assert np.array_equal(pixels(photo), original)
        return description

    seen = kill_writer_at_random(photo, "embed", ROUNDS[name], check)
    assert len(seen - {None}) == 2, seen  # both versions were written at least once
    assert visible(photo.parent) == [name]  # leftovers are hidden temp files
    assert find_photos([photo.parent], ScanConfig()) == [photo]  # the next scan removes them
    assert sorted(p.name for p in photo.parent.iterdir()) == [name]


def test_sidecar_creation_killed_at_random_moments_leaves_none_or_a_whole_one(
    tmp_path: Path,
) -> None:
    import io

    buf = io.BytesIO()
    draw_shape("green", "star", size=(640, 480), seed=9).save(buf, "JPEG", quality=90)
    raw = tmp_path / "photos" / "IMG.DNG"
    raw.parent.mkdir()
    raw.write_bytes(
        tiff_raw(buf.getvalue(), (640, 480), lossless_jpeg(sensor_mosaic(96, 64)), (96, 64))
    )
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    sidecar = raw.with_name("IMG.DNG.xmp")

    def check() -> str | None:
        assert hashlib.sha256(raw.read_bytes()).hexdigest() == digest  # never written
        if not sidecar.exists():
            return None
        tags = read(sidecar)
        assert "ExifTool:Warning" not in tags and "ExifTool:Error" not in tags, tags
        description = tags["XMP-dc:Description"]
        assert as_set(tags.get("XMP-dc:Subject")) == VERSIONS[description]
        assert as_set(tags.get("XMP-lr:HierarchicalSubject")) == VERSIONS[description]
        return description

    seen = kill_writer_at_random(raw, "sidecar", ROUNDS[raw.name], check)
    assert len(seen - {None}) == 2 and None in seen, seen  # created, replaced, deleted
    assert set(visible(raw.parent)) <= {"IMG.DNG", "IMG.DNG.xmp"}
