"""A disk that is full, or mounted read-only, while photoscribe writes: for real.

`photoscribe scan` runs inside a private mount namespace (fixtures.mountns) on a 1 MB
tmpfs that holds the photos, so the atomic writer's temp file gets ENOSPC from the kernel;
a read-only remount refuses even root (file modes do not). The original must stay byte
for byte, no temp file may be left, the index must record a failure that is tried again
with a reason naming the disk, and once space (or write access) is back a rerun tags it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from photoscribe.fsutil import is_temp_name
from photoscribe.records import State
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures.daemon import write_photo
from fixtures.exiftool import read_tags
from fixtures.mountns import MountNamespace, fill_up


class Disk:
    """The folder ``photos`` on a 1 MB tmpfs in a namespace of its own."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.photos = tmp_path / "photos"
        self.photos.mkdir()
        self.ns = MountNamespace()
        self.ns.mount_tmpfs(self.photos, "1m")
        self.here = self.ns.inside(self.photos)  # the tmpfs, as this process reaches it
        self.filler = self.here / "filler.bin"

    def config(self, **metadata: str) -> Path:
        raw = tiny_config_dict(self.tmp)
        raw["llm"] = {"enabled": False}
        raw["metadata"] = metadata
        cfg = self.tmp / "config.yaml"
        cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return cfg

    def scan(self, cfg: Path) -> tuple[int, str]:
        argv = [sys.executable, "-m", "photoscribe", "--config", str(cfg), "scan"]
        done = subprocess.run(
            self.ns.command(*argv, str(self.photos)),
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        return done.returncode, done.stdout + done.stderr

    def fill(self) -> None:
        fill_up(self.filler)

    def remount(self, mode: str) -> None:
        self.ns.run("mount", "-o", f"remount,{mode}", str(self.photos))

    def temp_files(self) -> list[str]:
        return [p.name for p in self.here.iterdir() if is_temp_name(p.name)]

    def row(self, name: str):
        store = open_store(self.tmp / "state" / "index.sqlite3", readonly=True)
        try:
            return store.by_path(self.photos / name)
        finally:
            store.close()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    made = Disk(tmp_path)
    try:
        yield made
    finally:
        made.ns.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def subjects(path: Path) -> list:
    value = read_tags(path).get("XMP-dc:Subject")
    return [] if value is None else value if isinstance(value, list) else [value]


def test_disk_full_during_the_temp_write(disk: Disk) -> None:
    photo = write_photo(disk.here / "照片 full.jpg", 1, size=(320, 240))
    before = digest(photo)
    disk.fill()
    cfg = disk.config()

    code, out = disk.scan(cfg)
    assert code == 1, out
    assert f"disk full on {disk.photos} (free some space there" in out, out
    assert "No space left on device (will be tried again)" in out, out
    assert digest(photo) == before and disk.temp_files() == []
    row = disk.row(photo.name)
    assert (row.state, row.failure, row.attempts) == (State.FAILED, "transient", 1)
    assert f"disk full on {disk.photos}" in row.error

    disk.filler.unlink()
    code, out = disk.scan(cfg)
    assert code == 0 and "1 tagged" in out, out
    row = disk.row(photo.name)
    assert row.state is State.NEEDS_CAPTION and row.failure is None and row.keywords
    assert subjects(photo) == [k.label for k in row.keywords]
    assert disk.temp_files() == []


def test_a_read_only_mount_refuses_even_root_and_is_tried_again(disk: Disk) -> None:
    photo = write_photo(disk.here / "locked.jpg", 2, size=(320, 240))
    before = digest(photo)
    cfg = disk.config(mode="embed")  # auto would keep the tags in the index only
    disk.remount("ro")

    code, out = disk.scan(cfg)
    assert code == 1, out
    assert f"{disk.photos} is mounted read-only: Read-only file system (will be tried" in out
    assert digest(photo) == before and disk.temp_files() == []
    assert disk.row(photo.name).transient

    disk.remount("rw")
    code, out = disk.scan(cfg)
    assert code == 0 and "1 tagged" in out, out
    assert subjects(photo) and disk.row(photo.name).state is State.NEEDS_CAPTION


def test_auto_mode_on_a_read_only_mount_keeps_the_tags_in_the_index(disk: Disk) -> None:
    photo = write_photo(disk.here / "ro.jpg", 3, size=(320, 240))
    before = digest(photo)
    disk.remount("ro")
    code, out = disk.scan(disk.config(mode="auto"))
    assert code == 0 and "1 tagged" in out, out
    row = disk.row(photo.name)
    assert row.state is State.NEEDS_CAPTION and row.keywords
    assert digest(photo) == before and disk.temp_files() == []
    assert not (disk.here / "ro.jpg.xmp").exists()
