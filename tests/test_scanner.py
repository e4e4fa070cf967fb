from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from photoscribe.config import ScanConfig
from photoscribe.errors import ConfigError
from photoscribe.scanner import find_photos


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_walk_filters_extensions_hidden_and_sorts(tmp_path: Path) -> None:
    a = touch(tmp_path / "b" / "a.JPG")
    b = touch(tmp_path / "a.webp")
    touch(tmp_path / "notes.txt")
    touch(tmp_path / ".hidden.jpg")
    touch(tmp_path / ".thumbs" / "t.jpg")
    assert find_photos([tmp_path], ScanConfig()) == [b, a]


def test_explicit_file_and_duplicates(tmp_path: Path) -> None:
    a = touch(tmp_path / "a.png")
    assert find_photos([a, tmp_path, a], ScanConfig()) == [a]


def test_missing_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        find_photos([tmp_path / "nope"], ScanConfig())


def test_leftover_temp_files_are_removed_whatever_their_age(tmp_path: Path) -> None:
    stale = touch(tmp_path / ".a.jpg.1234abcd.photoscribe-tmp")
    fresh = touch(tmp_path / "sub" / ".b.jpg.5678abcd.photoscribe-tmp")
    other = touch(tmp_path / ".b.jpg.5678abcd.tmp")  # not photoscribe's
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert find_photos([tmp_path], ScanConfig()) == []
    assert not stale.exists() and not fresh.exists()
    assert other.exists()


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    from photoscribe.config import ScanConfig
    from photoscribe.scanner import accepts, find_photos

    for rel in ("a.jpg", "2019/b.jpg", "2019/@eaDir/c.jpg", "x/private/d.jpg", "x/e.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    names = lambda cfg: [p.relative_to(tmp_path).as_posix() for p in find_photos([tmp_path], cfg)]  # noqa: E731
    assert names(ScanConfig()) == ["2019/b.jpg", "a.jpg", "x/e.png", "x/private/d.jpg"]
    # a user's exclude list replaces the default one (so @eaDir is back)
    assert names(ScanConfig(exclude=("*/private/*", "*.png"))) == [
        "2019/@eaDir/c.jpg",
        "2019/b.jpg",
        "a.jpg",
    ]
    assert names(ScanConfig(include=("2019",))) == ["2019/b.jpg"]
    assert names(ScanConfig(include=("*.png", "2019/*"))) == ["2019/b.jpg", "x/e.png"]
    # the daemon asks the same question for one path
    assert not accepts(tmp_path / "2019/@eaDir/c.jpg", tmp_path, ScanConfig())
    assert not accepts(tmp_path / ".hidden/f.jpg", tmp_path, ScanConfig())
    assert not accepts(tmp_path / "a.txt", tmp_path, ScanConfig())
    assert accepts(tmp_path / "2019/b.jpg", tmp_path, ScanConfig())


def test_a_stop_request_ends_the_walk_early(tmp_path: Path) -> None:
    import threading

    from photoscribe.config import ScanConfig
    from photoscribe.scanner import find_photos

    for i in range(3):
        (tmp_path / f"d{i}").mkdir()
        (tmp_path / f"d{i}" / "a.jpg").write_bytes(b"x")
    stop = threading.Event()
    assert len(find_photos([tmp_path], ScanConfig(), stop)) == 3
    stop.set()  # SIGTERM during a catch-up of a big library: it returns at once
    assert find_photos([tmp_path], ScanConfig(), stop) == []
