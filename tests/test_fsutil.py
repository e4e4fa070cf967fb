from __future__ import annotations

import os
from pathlib import Path

import pytest

from photoscribe.errors import PhotoChangedError
from photoscribe.fsutil import atomic_replace, display, file_stat, is_temp_name


def test_atomic_replace_keeps_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"old")
    os.chmod(photo, 0o640)
    stat = atomic_replace(photo, b"new data", file_stat(photo))
    assert photo.read_bytes() == b"new data"
    assert photo.stat().st_mode & 0o777 == 0o640
    assert stat == file_stat(photo)
    assert os.listdir(tmp_path) == ["a.jpg"]


def test_a_file_changed_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"old")
    seen = file_stat(photo)
    photo.write_bytes(b"edited by another program")
    with pytest.raises(PhotoChangedError, match="changed by another program"):
        atomic_replace(photo, b"ours", seen)
    assert photo.read_bytes() == b"edited by another program"
    assert os.listdir(tmp_path) == ["a.jpg"]


def test_a_file_deleted_meanwhile_is_not_recreated(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"old")
    seen = file_stat(photo)
    photo.unlink()
    with pytest.raises(PhotoChangedError, match="disappeared"):
        atomic_replace(photo, b"ours", seen)
    assert os.listdir(tmp_path) == []


def test_temp_names_are_hidden_and_recognised(tmp_path: Path) -> None:
    assert is_temp_name(".a.jpg.0123abcd.photoscribe-tmp")
    assert not is_temp_name("a.jpg")
    assert display(Path(os.fsdecode(b"caf\xe9.jpg"))) == "caf\\xe9.jpg"


def test_keep_mtime_gives_the_new_file_the_old_time(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(b"old")
    os.utime(path, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    after = atomic_replace(path, b"newer", file_stat(path), keep_mtime=True)
    assert after.mtime_ns == 1_500_000_000_000_000_000 and path.read_bytes() == b"newer"
    after = atomic_replace(path, b"newest", after)
    assert after == file_stat(path) and after.mtime_ns > 1_500_000_000_000_000_000
