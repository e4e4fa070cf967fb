"""A real photo manager reads what photoscribe wrote: darktable-cli imports the photo (and
its XMP) into a fresh library, then exports it. Its tag table, its description and the
exported file show what a darktable user would see."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photoscribe.config import MetadataConfig
from photoscribe.contenthash import content_hash
from photoscribe.metadata import write_annotation
from photoscribe.records import Annotation

from fixtures.exiftool import read_tags

DARKTABLE_CLI = shutil.which("darktable-cli")

DESCRIPTION = "A heron by the pond, evening light, 一只苍鹭"
KEYWORDS = ("heron", "pond", "evening light")
DT_DESCRIPTION_KEY = 3  # darktable's key for dc:description (DT_METADATA_XMP_DC_DESCRIPTION)


# Where darktable keeps its configuration, cache and data when it is not told otherwise.
REAL_HOME = Path(os.path.expanduser("~"))
REAL_DARKTABLE_DIRS = tuple(
    Path(os.environ.get(variable) or REAL_HOME / default) / "darktable"
    for variable, default in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_CACHE_HOME", ".cache"),
        ("XDG_DATA_HOME", ".local/share"),
    )
)


@pytest.fixture(autouse=True)
def real_home_untouched() -> Iterator[None]:
    """darktable-cli runs with a temporary home: the real one gains no darktable folder."""
    if DARKTABLE_CLI is None:
        pytest.fail("darktable-cli not found: apt-get install --no-install-recommends darktable")
    before = {folder: tree(folder) for folder in REAL_DARKTABLE_DIRS}
    yield
    after = {folder: tree(folder) for folder in REAL_DARKTABLE_DIRS}
    assert after == before, "darktable-cli wrote into the real home folder"


def tree(folder: Path) -> list[tuple[str, int]] | None:
    """Every path under ``folder`` with its mtime; None when ``folder`` does not exist."""
    if not folder.exists():
        return None
    return sorted((str(p), p.lstat().st_mtime_ns) for p in [folder, *folder.rglob("*")])


def isolated_env(home: Path) -> dict[str, str]:
    """The environment with HOME and the XDG folders inside ``home``."""
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
    }


def darktable_import_and_export(photo: Path, folder: Path) -> tuple[set[str], str, Path]:
    """(tags in darktable's tag table, the description it imported, the exported JPEG)."""
    config, library, out = folder / "dt-config", folder / "library.db", folder / "export.jpg"
    home = folder / "home"
    home.mkdir()
    subprocess.run(
        [
            str(DARKTABLE_CLI),
            str(photo),
            str(out),
            "--core",
            "--library",
            str(library),
            "--configdir",
            str(config),
            "--cachedir",
            str(folder / "dt-cache"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
        env=isolated_env(home),
    )
    with sqlite3.connect(config / "data.db") as data:
        tags = {name for (name,) in data.execute("SELECT name FROM tags")}
    with sqlite3.connect(library) as lib:
        rows = lib.execute("SELECT value FROM meta_data WHERE key = ?", (DT_DESCRIPTION_KEY,))
        descriptions = [value for (value,) in rows]
    return tags, descriptions[0] if descriptions else "", out


def users_tags(tags: set[str]) -> set[str]:
    """The tags a user sees, without darktable's own (``darktable|format|jpg`` …)."""
    return {tag for tag in tags if not tag.startswith("darktable|")}


def test_darktable_imports_our_keywords_paths_and_description(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((64, 96, 3)) * 255).astype(np.uint8)).save(buffer, "PNG")
    # a PNG: no IPTC:Keywords, which darktable would import as flat tags of their own
    photo = tmp_path / "heron.png"
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
    assert users_tags(tags) == {"Family", "AI|heron", "AI|pond", "AI|evening light"}
    assert description == DESCRIPTION  # x-default only: no 'lang="…"' text
    t = read_tags(exported)
    # darktable exports every part of every path as a flat keyword
    assert sorted(t["XMP-dc:Subject"]) == ["AI", "Family", "evening light", "heron", "pond"]
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
    assert users_tags(tags) == {"AI|heron"}  # the user's "Family" is hidden
    # the second language leaks in as text
    assert description == f'{DESCRIPTION}, lang="zh-CN" 苍鹭'
