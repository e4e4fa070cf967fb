"""photoscribe's own temp files: a write that was killed leaves one behind; the next scan
or daemon start removes it at once, but never the temp file of a write in flight in
another photoscribe process; a write that fails removes its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from photoscribe import fsutil
from photoscribe.cli import main
from photoscribe.config import ScanConfig
from photoscribe.errors import PhotoChangedError
from photoscribe.metadata import sidecar
from photoscribe.scanner import find_photos

from conftest import tiny_config_dict
from fixtures.daemon import running_daemon, wait_until, write_photo
from fixtures.exiftool import read_tags

# A photoscribe write in another process: creates its temp file beside the photo, writes
# half of the new bytes, says where, then waits for a line on stdin before it finishes the
# write exactly as atomic_replace does (or is killed before that).
WRITER = r"""
import os, sys
from pathlib import Path
from photoscribe.fsutil import create_temp, fsync_dir, write_all

photo = Path(sys.argv[1])  # a name that is not UTF-8 arrives surrogate-escaped
data = b"NEW" * 1000
fd, tmp = create_temp(photo)
write_all(fd, data[:1500])
print(os.fsencode(tmp).hex(), flush=True)
sys.stdin.readline()
write_all(fd, data[1500:])
os.fsync(fd)
os.replace(tmp, photo)
os.close(fd)
print("done", flush=True)
"""


def start_writer(tmp_path: Path, photo: Path) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(photo)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    tmp = Path(os.fsdecode(bytes.fromhex(proc.stdout.readline().strip())))
    assert tmp.exists() and fsutil.is_temp_name(tmp.name)
    return proc, tmp


def killed_write(tmp_path: Path, photo: Path) -> Path:
    """The temp file a photoscribe write leaves when it is SIGKILLed (truncated)."""
    proc, tmp = start_writer(tmp_path, photo)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert tmp.exists()
    return tmp


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if fsutil.is_temp_name(p.name)]


def test_leftovers_of_killed_writes_are_removed_by_the_next_scan(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    photo = write_photo(folder / "a.jpg", 1)
    long_name = write_photo(folder / "sub" / ("b" * 251 + ".jpg"), 2)  # hashed temp name
    raw = write_photo(folder / "c.jpg", 3)
    original = photo.read_bytes()
    leftovers = [
        killed_write(tmp_path, photo),
        killed_write(tmp_path, long_name),
        killed_write(tmp_path, folder / "c.jpg.xmp"),  # a sidecar's
    ]
    assert all(time.time() - p.stat().st_mtime < 60 for p in leftovers)  # fresh ones
    config = tmp_path / "config.yaml"
    raw_config = tiny_config_dict(tmp_path)
    raw_config["llm"]["enabled"] = False
    config.write_text(yaml.safe_dump(raw_config), encoding="utf-8")
    assert main(["-c", str(config), "scan", str(folder)]) == 0
    assert "3 photos: 3 tagged" in capsys.readouterr().out
    assert temp_files(folder) == []
    assert photo.read_bytes() != original and read_tags(photo)["XMP-dc:Subject"]
    assert read_tags(long_name)["XMP-dc:Subject"] and read_tags(raw)["XMP-dc:Subject"]


def test_a_write_in_flight_in_another_process_keeps_its_temp_file(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    photo = write_photo(folder / "a.jpg", 1)
    proc, tmp = start_writer(tmp_path, photo)
    try:
        old = time.time() - 7200  # the lock decides, not the age
        os.utime(tmp, (old, old))
        for _ in range(3):
            assert find_photos([folder], ScanConfig()) == [photo]
            assert tmp.exists()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
    finally:
        proc.kill()
        proc.wait(10)
    assert photo.read_bytes() == b"NEW" * 1000  # the other process's write completed
    assert temp_files(folder) == []


def test_the_daemon_removes_leftovers_at_start(make_config, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    photo = write_photo(folder / "a.jpg", 1)
    leftover = killed_write(tmp_path, photo)
    config = make_config(
        watch={"folders": [str(folder)], "settle_seconds": 0.3, "batch_wait": 0.2},
        llm={"enabled": False},
    )
    with running_daemon(config) as daemon:
        wait_until(lambda: not leftover.exists(), what="the leftover removed")
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, what="the photo tagged")
    assert temp_files(folder) == []


def test_a_failed_write_removes_its_temp_file(tmp_path: Path, monkeypatch) -> None:
    photo = write_photo(tmp_path / "a.jpg", 1)
    original = photo.read_bytes()
    expected = fsutil.file_stat(photo)
    for error in (PermissionError(1, "Operation not permitted"), KeyboardInterrupt()):

        def fail(fd: int, st: os.stat_result, error: BaseException = error) -> None:
            raise error

        monkeypatch.setattr(fsutil, "_copy_owner_and_mode", fail)
        with pytest.raises(type(error)):
            fsutil.atomic_replace(photo, b"new bytes", expected)
        assert photo.read_bytes() == original
        assert temp_files(tmp_path) == []


def test_a_sidecar_created_meanwhile_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "a.dng.xmp"
    target.write_bytes(b"someone else's sidecar")
    with pytest.raises(PhotoChangedError, match="created by another program"):
        sidecar._create(target, b"<x:xmpmeta/>")
    assert target.read_bytes() == b"someone else's sidecar"
    assert temp_files(tmp_path) == []


def test_temp_names_fit_beside_a_255_byte_name(tmp_path: Path) -> None:
    for name in ("c" * 251 + ".jpg", "照" * 83 + ".jpg", os.fsdecode(b"\xe9" * 251 + b".jpg")):
        tmp = fsutil.temp_path_for(tmp_path / name)
        assert len(os.fsencode(tmp.name)) <= fsutil.NAME_MAX
        assert fsutil.is_temp_name(tmp.name) and tmp.parent == tmp_path
        photo = write_photo(tmp_path / name, 1)
        fsutil.atomic_replace(photo, b"new", fsutil.file_stat(photo))
        assert photo.read_bytes() == b"new"
    assert temp_files(tmp_path) == []
