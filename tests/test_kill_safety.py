"""A metadata write SIGKILLed at random moments, many times: the photo is always either the
old or the new version (never half of one), and its pixels never change."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from photoscribe.config import ScanConfig
from photoscribe.scanner import find_photos

from fixtures.exiftool import exiftool_json
from fixtures.synthetic import draw_shape

ROUNDS = 40
WRITER = r"""
import sys
from pathlib import Path
from photoscribe.config import MetadataConfig
from photoscribe.contenthash import content_hash
from photoscribe.metadata import write_annotation
from photoscribe.records import Annotation

path = Path(sys.argv[1])
digest = content_hash(path.read_bytes())
versions = [
    Annotation(("red", "circle"), "Version A: a red circle.", "m", digest),
    Annotation(("blue", "square", "sky"), "Version B: a blue square.", "m", digest),
]
print("ready", flush=True)
i = 0
while True:
    write_annotation(path, versions[i % 2], expected_hash=digest,
                     config=MetadataConfig(overwrite_description=True))
    i += 1
"""
VERSIONS = {  # description → photoscribe's keywords in that version
    "Version A: a red circle.": {"red", "circle"},
    "Version B: a blue square.": {"blue", "square", "sky"},
}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def read(path: Path) -> dict:
    """All tags, plus what `exiftool -validate` says about the file."""
    return {**exiftool_json("-G1", "-a", path)[0], **exiftool_json("-validate", "-a", path)[0]}


def as_set(value) -> set:
    return set() if value is None else set(value if isinstance(value, list) else [value])


def test_writes_killed_at_random_moments_leave_old_or_new(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    draw_shape("green", "star", size=(2400, 1800), seed=9).save(photo, quality=95)
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP-dc:Subject=Oma", str(photo)],
        check=True,
    )
    original = pixels(photo)
    baseline = read(photo)["Validate"]
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    rng = random.Random(7)
    seen: set[str | None] = set()
    for _ in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(photo)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        tags = read(photo)
        description = tags.get("XMP-dc:Description")
        seen.add(description)
        subjects = as_set(tags.get("XMP-dc:Subject"))
        if description is None:
            assert subjects == {"Oma"}  # the original, untouched
        else:
            assert subjects == {"Oma"} | VERSIONS[description]  # one whole version
            assert as_set(tags.get("IPTC:Keywords")) == {"Oma"} | VERSIONS[description]
        assert tags["Validate"] == baseline, tags.get("Warning")
        assert np.array_equal(pixels(photo), original)
    assert len(seen - {None}) == 2, seen  # both versions were written at least once
    visible = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert sorted(visible) == ["photo.jpg", "writer.py"]  # leftovers are hidden temp files
    assert find_photos([tmp_path], ScanConfig()) == [photo]  # the next scan removes them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg", "writer.py"]
