"""A real photo manager reads what photoscribe wrote: darktable-cli imports the photo (and
its XMP) into a fresh library, then exports it. Its tag table, its description and the
exported file show what a darktable user would see."""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photoscribe.config import MetadataConfig
from photoscribe.contenthash import content_hash
from photoscribe.metadata import write_annotation
from photoscribe.records import Annotation

from fixtures.exiftool import read_tags

pytestmark = pytest.mark.skipif(
    shutil.which("darktable-cli") is None,
    reason="needs darktable-cli: apt-get install --no-install-recommends darktable (.ci/run does)",
)

DESCRIPTION = "A heron by the pond, evening light, 一只苍鹭"
KEYWORDS = ("heron", "pond", "evening light")
DT_DESCRIPTION_KEY = 3  # darktable's key for dc:description (DT_METADATA_XMP_DC_DESCRIPTION)


def darktable_import_and_export(photo: Path, folder: Path) -> tuple[set[str], str, Path]:
    """(tags in darktable's tag table, the description it imported, the exported JPEG)."""
    config, library, out = folder / "dt-config", folder / "library.db", folder / "export.jpg"
    subprocess.run(
        [
            "darktable-cli",
            str(photo),
            str(out),
            "--core",
            "--library",
            str(library),
            "--configdir",
            str(config),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with sqlite3.connect(config / "data.db") as data:
        tags = {name for (name,) in data.execute("SELECT name FROM tags")}
    with sqlite3.connect(library) as lib:
        rows = lib.execute("SELECT value FROM meta_data WHERE key = ?", (DT_DESCRIPTION_KEY,))
        descriptions = [value for (value,) in rows]
    return tags, descriptions[0] if descriptions else "", out


def test_darktable_imports_our_keywords_paths_and_description(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((64, 96, 3)) * 255).astype(np.uint8)).save(buffer, "JPEG")
    photo = tmp_path / "heron.jpg"
    photo.write_bytes(buffer.getvalue())
    # the user's own keyword, flat, as most programs write it
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP-dc:Subject=Family", str(photo)],
        check=True,
    )
    digest = content_hash(photo.read_bytes())
    ann = Annotation(KEYWORDS, DESCRIPTION, "test-clip", digest)
    write_annotation(photo, ann, expected_hash=digest, config=MetadataConfig(keyword_root="AI"))

    tags, description, exported = darktable_import_and_export(photo, tmp_path)
    # darktable takes lr:hierarchicalSubject (and ignores dc:subject when that exists): the
    # user's flat keyword is there only because photoscribe carried it into the paths
    assert {"Family", "AI|heron", "AI|pond", "AI|evening light"} <= tags
    assert description == DESCRIPTION  # x-default only: no 'lang="…"' text
    t = read_tags(exported)
    subject = t["XMP-dc:Subject"]
    assert {"Family", "heron", "pond", "evening light"} <= set(subject)
    assert t["XMP-dc:Description"] == DESCRIPTION
    assert "lang=" not in t["XMP-dc:Description"]


def test_control_what_darktable_shows_for_the_traps_photoscribe_avoids(tmp_path: Path) -> None:
    """The same checks fail on a file written the naive way: paths without the user's flat
    keyword, and a description with a second language."""
    photo = tmp_path / "naive.jpg"
    Image.new("RGB", (64, 48), (90, 120, 150)).save(photo, "JPEG")
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            "-XMP-dc:Subject=Family",
            "-XMP-lr:HierarchicalSubject=AI|heron",
            f"-XMP-dc:Description={DESCRIPTION}",
            "-XMP-dc:Description-zh-CN=苍鹭",
            str(photo),
        ],
        check=True,
    )
    tags, description, _ = darktable_import_and_export(photo, tmp_path)
    assert "AI|heron" in tags and "Family" not in tags  # the user's keyword is hidden
    assert 'lang="zh-CN"' in description  # the second language leaks in as text
