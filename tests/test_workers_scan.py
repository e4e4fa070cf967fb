"""`photoscribe scan` and the daemon survive a decoder that really segfaults or aborts,
a file past the memory cap, one past the time cap and a writer that dies half-way
through its temp file: the other photos are tagged, the bad ones recorded failed with
the reason, their files byte-identical, no temp file left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from photoscribe.config import config_from_dict
from photoscribe.records import State
from photoscribe.store import open_store

from conftest import TESTS, tiny_config_dict
from fixtures import crashers
from fixtures.daemon import running_daemon, wait_until, write_photo

DAEMON_DIR = Path(__file__).resolve().parents[1] / "daemon"
BAD = {  # file name → marker appended after the JPEG's end, reason expected
    "segv.jpg": (crashers.SEGV, "the image decoder crashed (SIGSEGV) on this file"),
    "abort.jpg": (crashers.ABORT, "the image decoder crashed (SIGABRT) on this file"),
    "hog.jpg": (crashers.HOG, "needed more than 200 MB for this file (scan.file_memory_mb)"),
    "hang.jpg": (crashers.HANG, "took longer than 4 s on this file (scan.file_timeout_seconds)"),
    "write.jpg": (crashers.WRITE_ABORT, "the metadata writer crashed (SIGABRT) on this file"),
}
SKIPPED = "it was skipped and will not be retried until it changes"
RUN_SCAN = (
    "import functools, sys\n"
    "from photoscribe import service\n"
    "from fixtures import crashers\n"
    "service.scan = functools.partial(\n"
    "    service.scan, decode=crashers.bad_decode, write=crashers.bad_write)\n"
    "from photoscribe.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def photo_library(folder: Path) -> tuple[list[Path], dict[Path, bytes]]:
    """Good photos and the bad ones (valid JPEGs carrying a marker); the bad ones' bytes."""
    good = [write_photo(folder / f"good_{i}.jpg", i) for i in range(4)]
    good.append(write_photo(folder / "好照片.jpg", 5))
    bad = {}
    for index, (name, (marker, _)) in enumerate(BAD.items()):
        path = write_photo(folder / name, index)
        path.write_bytes(path.read_bytes() + marker)
        bad[path] = path.read_bytes()
    return good, bad


def crash_config(tmp_path: Path, **watch) -> dict:
    raw = tiny_config_dict(tmp_path)
    raw["llm"] = {"enabled": False}
    raw["scan"] = {"file_memory_mb": 200, "file_timeout_seconds": 4, "decode_workers": 2}
    if watch:
        raw["watch"] = watch
    return raw


def check_outcome(index: Path, good: list[Path], bad: dict[Path, bytes]) -> None:
    store = open_store(index, readonly=True)
    try:
        for path in good:
            row = store.by_path(path)
            assert row is not None and row.state is State.NEEDS_CAPTION and row.keywords, path
        for path, data in bad.items():
            row = store.by_path(path)
            assert row is not None and row.state is State.FAILED, path
            assert BAD[path.name][1] in row.error and SKIPPED in row.error, row.error
            assert not row.transient
            assert path.read_bytes() == data  # never written
    finally:
        store.close()
    temps = [p.name for p in good[0].parent.iterdir() if p.name.startswith(".")]
    assert temps == []


def indexed(index: Path, paths: list[Path]) -> bool:
    """Whether every one of ``paths`` has an outcome (tagged or failed) in the index."""
    store = open_store(index, readonly=True)
    try:
        return all(store.by_path(p) is not None for p in paths)
    finally:
        store.close()


def photoscribe(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": f"{DAEMON_DIR}:{TESTS}", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", RUN_SCAN, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_scan_survives_crashing_starving_and_hanging_files(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    good, bad = photo_library(photos)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(crash_config(tmp_path)), encoding="utf-8")

    scan = photoscribe(config, "scan", str(photos))

    assert scan.returncode == 1, scan.stderr  # finished; 1: some photos failed
    first = scan.stdout.splitlines()[0]
    assert first.startswith(f"{len(good) + len(bad)} photos: 5 tagged"), scan.stdout
    assert "5 failed" in first
    for path in bad:
        assert f"failed: {path}: " in scan.stdout
    check_outcome(tmp_path / "state" / "index.sqlite3", good, bad)

    status = photoscribe(config, "status")
    assert status.returncode == 0, status.stderr
    for path, (_, reason) in ((p, BAD[p.name]) for p in bad):
        assert f"{path}: " in status.stdout and reason in status.stdout

    again = photoscribe(config, "scan", str(photos))  # not retried: nothing changed
    assert again.stdout.splitlines()[0].startswith("10 photos: 0 tagged, 10 skipped")


def test_the_daemon_survives_them_and_its_pool_stays_usable(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    raw = crash_config(tmp_path, folders=[str(photos)], settle_seconds=0.3, batch_wait=0.2)
    config = config_from_dict(raw)
    tasks = {"decode": crashers.bad_decode, "write": crashers.bad_write}
    with running_daemon(config, file_tasks=tasks) as daemon:
        good, bad = photo_library(photos)
        everything = [*good, *bad]

        wait_until(lambda: indexed(config.index_path, everything), 240, "every photo's outcome")
        assert daemon.workers.call("image decoder", crashers.double, 8) == 16
        assert daemon.workers.restarts >= len(bad)
        later = write_photo(photos / "later.jpg", 7)  # the daemon goes on after them
        wait_until(lambda: indexed(config.index_path, [later]), 120, "a later photo")
    check_outcome(config.index_path, [*good, later], bad)
