"""Photos whose names take all 255 bytes a file name may have (ASCII and Chinese UTF-8).

Writing into the photo needs a temp file beside it, whose name must fit too (it gets a
short hash of the name instead). A sidecar ``NAME.jpg.xmp`` cannot exist for such a
name: that is a clear recorded failure, never a crash, and the photo is untouched.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from photoscribe.cli import main
from photoscribe.fsutil import NAME_MAX, is_temp_name
from photoscribe.records import State
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures.daemon import write_photo
from fixtures.exiftool import read_tags

NAMES = {
    "ascii": "a" * 251 + ".jpg",
    "chinese": "照" * 83 + "ab.jpg",  # 249 bytes of UTF-8 + 6
}


def configure(tmp_path: Path, mode: str) -> Path:
    raw = tiny_config_dict(tmp_path)
    raw["llm"] = {"enabled": False}
    raw["metadata"] = {"mode": mode}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return cfg


def row(tmp_path: Path, path: Path):
    store = open_store(tmp_path / "state" / "index.sqlite3", readonly=True)
    try:
        return store.by_path(path)
    finally:
        store.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_a_255_byte_name_is_tagged_in_place(tmp_path: Path, kind: str, capsys) -> None:
    folder = tmp_path / "photos"
    photo = write_photo(folder / NAMES[kind], 1, size=(320, 240))
    assert len(os.fsencode(photo.name)) == NAME_MAX
    assert main(["--config", str(configure(tmp_path, "embed")), "scan", str(folder)]) == 0
    found = row(tmp_path, photo)
    assert found.state is State.NEEDS_CAPTION and found.keywords
    value = read_tags(photo).get("XMP-dc:Subject")
    labels = value if isinstance(value, list) else [value]
    assert labels == [k.label for k in found.keywords]
    assert sorted(p.name for p in folder.iterdir()) == [photo.name]  # no temp file left
    assert not any(is_temp_name(p.name) for p in folder.iterdir())


@pytest.mark.parametrize("kind", sorted(NAMES))
def test_a_sidecar_that_cannot_exist_is_a_recorded_failure(
    tmp_path: Path, kind: str, capsys
) -> None:
    folder = tmp_path / "photos"
    photo = write_photo(folder / NAMES[kind], 2, size=(320, 240))
    short = write_photo(folder / "short.jpg", 3, size=(320, 240))
    before = digest(photo)
    capsys.readouterr()
    assert main(["--config", str(configure(tmp_path, "sidecar")), "scan", str(folder)]) == 1
    out = capsys.readouterr()
    assert "longer than the 255 bytes a file name may have" in out.out + out.err
    failed = row(tmp_path, photo)
    assert (failed.state, failed.failure) == (State.FAILED, "permanent")
    assert "shorten the photo's name" in failed.error
    assert digest(photo) == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [photo.name, short.name, "short.jpg.xmp"]
    )  # the other photo got its sidecar; nothing else was created
    assert row(tmp_path, short).state is State.NEEDS_CAPTION
