"""Symbolic links are never replaced. scan.follow_symlinks off (the default): a link to a
file is skipped like a link to a folder, by scan, catch-up and the watcher. On: the file it
points to is tagged and written (inside the scanned or watched folders only), once, and
the link stays a link."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import yaml

from photoscribe import fsutil
from photoscribe.cli import main
from photoscribe.config import ScanConfig
from photoscribe.errors import MetadataError
from photoscribe.scanner import find_photos
from photoscribe.store import open_store
from photoscribe.watcher import Change

from conftest import tiny_config_dict
from fixtures.daemon import running_daemon, wait_until, write_photo
from fixtures.exiftool import read_tags


def link(path: Path, target: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


def tagged(path: Path) -> bool:
    return bool(read_tags(path).get("XMP-dc:Subject"))


@pytest.fixture
def library(tmp_path: Path) -> dict[str, Path]:
    """photos/ with a real photo, links to it, to a photo outside, to a folder (a loop
    too) and a broken link; outside/ with the photo the user keeps elsewhere."""
    photos = tmp_path / "photos"
    p = {
        "real": write_photo(photos / "real.jpg", 1),
        "outside": write_photo(tmp_path / "outside" / "elsewhere.jpg", 2),
        "deep": write_photo(photos / "album" / "deep.jpg", 3),
    }
    p["link_in"] = link(photos / "link_to_real.jpg", p["real"])
    p["link_out"] = link(photos / "link_to_outside.jpg", p["outside"])
    p["link_dir"] = link(photos / "album_link", photos / "album")
    p["loop"] = link(photos / "album" / "loop", photos)
    p["broken"] = link(photos / "broken.jpg", tmp_path / "nothing.jpg")
    p["photos"] = photos
    return p


def links_intact(p: dict[str, Path]) -> None:
    for key in ("link_in", "link_out", "link_dir", "loop", "broken"):
        assert p[key].is_symlink(), f"{p[key]} is no longer a link"


def scan(tmp_path: Path, folder: Path, follow: bool) -> int:
    raw = tiny_config_dict(tmp_path)
    raw["llm"]["enabled"] = False
    raw["scan"] = {"follow_symlinks": follow}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return main(["-c", str(config), "scan", str(folder)])


def indexed(tmp_path: Path, folder: Path) -> set[Path]:
    store = open_store(tmp_path / "state" / "index.sqlite3", readonly=True)
    try:
        return {r.path for r in store.rows_under(folder)}
    finally:
        store.close()


def test_the_walk_skips_file_links_unless_followed(library) -> None:
    p = library
    assert find_photos([p["photos"]], ScanConfig()) == [p["deep"], p["real"]]
    followed = find_photos([p["photos"]], ScanConfig(follow_symlinks=True))
    assert followed == [p["deep"], p["real"]]  # each photo once, by its real place


def test_scan_without_following_leaves_every_link_alone(tmp_path: Path, library, capsys) -> None:
    p = library
    outside = p["outside"].read_bytes()
    assert scan(tmp_path, p["photos"], follow=False) == 0
    assert "2 photos: 2 tagged" in capsys.readouterr().out
    links_intact(p)
    assert p["outside"].read_bytes() == outside  # never read into a copy, never written
    assert tagged(p["real"]) and tagged(p["deep"])
    assert indexed(tmp_path, p["photos"]) == {p["real"], p["deep"]}


def test_scan_following_links_writes_the_target_once(
    tmp_path: Path, library, capsys, caplog
) -> None:
    p = library
    outside = p["outside"].read_bytes()
    with caplog.at_level(logging.WARNING, "photoscribe.scanner"):
        assert scan(tmp_path, p["photos"], follow=True) == 0
    assert "2 photos: 2 tagged" in capsys.readouterr().out
    links_intact(p)
    assert p["outside"].read_bytes() == outside
    assert any(
        "link_to_outside.jpg" in r.getMessage() and "outside the folders" in r.getMessage()
        for r in caplog.records
    )
    assert tagged(p["real"]) and tagged(p["link_in"])  # read through the link: the target
    assert indexed(tmp_path, p["photos"]) == {p["real"], p["deep"]}


def test_a_link_is_never_replaced_by_a_write(tmp_path: Path) -> None:
    target = write_photo(tmp_path / "t.jpg", 1)
    original = target.read_bytes()
    alias = link(tmp_path / "alias.jpg", target)
    with pytest.raises(MetadataError, match="symbolic link"):
        fsutil.atomic_replace(alias, b"new", fsutil.file_stat(alias))
    assert alias.is_symlink() and target.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir() if fsutil.is_temp_name(p.name)] == []


@pytest.mark.parametrize("follow", [False, True])
def test_the_daemon_treats_links_like_scan(make_config, tmp_path: Path, follow: bool) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    outside = write_photo(tmp_path / "outside" / "elsewhere.jpg", 2)
    original = outside.read_bytes()
    before_start = link(photos / "early_link.jpg", outside)  # seen by the catch-up scan
    config = make_config(
        watch={"folders": [str(photos)], "settle_seconds": 0.3, "batch_wait": 0.2},
        scan={"follow_symlinks": follow},
        llm={"enabled": False},
    )
    with running_daemon(config) as daemon:
        wait_until(lambda: not daemon.catching_up, what="the start-up scan")
        real = write_photo(photos / "real.jpg", 1)
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, what="real.jpg tagged")
        to_real = link(photos / "link_to_real.jpg", real)  # watcher events for links
        to_outside = link(photos / "link_to_outside.jpg", outside)
        sentinel = write_photo(photos / "sentinel.jpg", 3)
        wait_until(lambda: daemon.store.by_path(sentinel) is not None, what="sentinel")
        wait_until(lambda: daemon.queue.depth() == 0, what="empty queue")
        daemon.inbox.put(Change("rescan", photos))  # as a periodic rescan: sees them again
        wait_until(lambda: not daemon.catching_up, what="the rescan")
        wait_until(lambda: daemon.queue.depth() == 0, what="empty queue")
        rows = {r.path for r in daemon.store.rows_under(photos)}
        assert daemon.activity.totals["tagged"] == 2
        assert daemon.activity.totals["failed"] == 0
    assert rows == {real, sentinel}
    for path in (before_start, to_real, to_outside):
        assert path.is_symlink()
    assert outside.read_bytes() == original
    assert tagged(real) and os.path.realpath(to_real) == str(real)
