"""Failures that pass (disk full, permission denied) are tried again; damaged photos are not.

Disk full is real: the photos live on a small tmpfs that a filler file fills up, so the
temp file of the atomic write gets ENOSPC from the kernel (where tmpfs cannot be mounted,
e.g. without root, ENOSPC is raised at the writer's os.write instead, and the test says so
in its output). Permission denied is real too: photoscribe runs as root here, which
ignores file modes, so the photo is made immutable (chattr +i: even root gets EPERM when
replacing it); without root, the photo's mode is set to 000 (EACCES when reading it).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from photoscribe import fsutil
from photoscribe.cli import main
from photoscribe.errors import DecodeError, MetadataError, PhotoChangedError, is_transient
from photoscribe.records import FileStat, State
from photoscribe.store import open_store
from photoscribe.store.queue import WorkQueue

from conftest import tiny_config_dict
from fixtures.daemon import running_daemon, wait_until, write_photo
from fixtures.exiftool import read_tags
from fixtures.mountns import fill_up


# -- the kinds ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EIO, errno.EBUSY, errno.EROFS]
)
def test_passing_os_errors_are_transient_also_as_the_cause(code: int) -> None:
    cause = OSError(code, os.strerror(code))
    assert is_transient(cause)
    try:
        raise MetadataError("cannot write x.jpg") from cause
    except MetadataError as exc:
        assert is_transient(exc)


def test_damaged_or_unsupported_photos_are_permanent() -> None:
    assert not is_transient(DecodeError("not an image"))
    assert not is_transient(MetadataError("the JPEG structure is damaged; not writing"))
    assert not is_transient(OSError(errno.ENOENT, "No such file or directory"))
    assert is_transient(PhotoChangedError("changed while it was tagged"))


# -- a small disk -------------------------------------------------------------------------
class SmallDisk:
    """A folder on a 4 MB tmpfs; ``fill()`` takes every free byte, ``free()`` gives it back."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.filler = root / "filler.bin"
        root.mkdir()
        self.real = _mount_tmpfs(root)
        if not self.real:
            print("tmpfs cannot be mounted here: ENOSPC is injected at the writer's os.write")

    def fill(self) -> None:
        if not self.real:
            self.monkeypatch.setattr(fsutil, "write_all", _no_space)
            return
        fill_up(self.filler)

    def free(self) -> None:
        if not self.real:
            self.monkeypatch.undo()
            return
        self.filler.unlink()

    def close(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.root)], check=False)


def _mount_tmpfs(root: Path) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)], capture_output=True
    )
    return done.returncode == 0


def _no_space(fd: int, data: bytes) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmallDisk]:
    small = SmallDisk(tmp_path / "disk", monkeypatch)
    try:
        yield small
    finally:
        small.close()


def configure(tmp_path: Path, **metadata) -> Path:
    raw = tiny_config_dict(tmp_path)
    raw["llm"] = {"enabled": False}
    if metadata:
        raw["metadata"] = metadata
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return cfg


def scan(cfg: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["-c", str(cfg), "scan", str(folder)])
    out, err = capsys.readouterr()
    return code, out + err


def row(tmp_path: Path, path: Path):
    store = open_store(tmp_path / "state" / "index.sqlite3", readonly=True)
    try:
        return store.by_path(path)
    finally:
        store.close()


def damaged_jpeg(path: Path) -> Path:
    write_photo(path, 3, size=(160, 120))
    data = path.read_bytes()
    path.write_bytes(data[:200] + bytes(range(256)) * 8)  # a header, then garbage
    return path


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def subjects(path: Path) -> list:
    value = read_tags(path).get("XMP-dc:Subject")
    return [] if value is None else value if isinstance(value, list) else [value]


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if fsutil.is_temp_name(p.name)]


def test_disk_full_is_tried_again_by_the_next_scan_a_damaged_photo_is_not(
    tmp_path: Path, disk: SmallDisk, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = configure(tmp_path)
    good = write_photo(disk.root / "good.jpg", 1, size=(320, 240))
    bad = damaged_jpeg(disk.root / "damaged.jpg")
    before, good_bytes, bad_bytes = pixels(good), digest(good), digest(bad)
    disk.fill()

    code, out = scan(cfg, disk.root, capsys)
    assert code == 1, out
    assert "No space left on device (will be tried again)" in out, out
    assert "1 failed for a passing reason" in out and "1 will be tried again only when" in out
    first = row(tmp_path, good)
    assert (first.state, first.failure, first.attempts) == (State.FAILED, "transient", 1)
    broken = row(tmp_path, bad)
    assert (broken.state, broken.failure, broken.attempts) == (State.FAILED, "permanent", 1)
    assert digest(good) == good_bytes and temp_files(disk.root) == []
    capsys.readouterr()
    assert main(["-c", str(cfg), "status"]) == 0
    status = capsys.readouterr().out
    assert "failed: 2 (1 to be tried again: disk, permission or I/O problems; 1 until" in status
    assert "No space left on device (will be tried again)" in status, status
    assert main(["-c", str(cfg), "status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    kinds = {Path(f["path"]).name: f["kind"] for f in report["last_failures"]}
    assert kinds == {"good.jpg": "transient", "damaged.jpg": "permanent"}

    code, out = scan(cfg, disk.root, capsys)  # still full: tried again, fails again
    assert "2 photos: 0 tagged, 1 skipped (already done), 1 failed" in out, out
    assert row(tmp_path, good).attempts == 2
    assert row(tmp_path, bad).attempts == 1  # not read again: the file did not change

    disk.free()
    code, out = scan(cfg, disk.root, capsys)
    assert "2 photos: 1 tagged, 1 skipped (already done), 0 failed" in out, out
    tagged = row(tmp_path, good)
    assert tagged.state is State.NEEDS_CAPTION and tagged.failure is None and tagged.keywords
    assert subjects(good) == [k.label for k in tagged.keywords]
    assert np.array_equal(pixels(good), before)
    after_free = row(tmp_path, bad)
    assert (after_free.attempts, after_free.updated_at) == (1, broken.updated_at)
    assert digest(bad) == bad_bytes and temp_files(disk.root) == []

    with open(bad, "ab") as f:  # the damaged photo changes: now it is read again
        f.write(b"more garbage")
    code, out = scan(cfg, disk.root, capsys)
    assert "2 photos: 0 tagged, 1 skipped (already done), 1 failed" in out, out
    assert row(tmp_path, bad).attempts == 2


# -- permission denied ------------------------------------------------------------------------
@contextlib.contextmanager
def denied(photo: Path) -> Iterator[str]:
    """The photo cannot be written (root: immutable, EPERM) or read (others: mode 000,
    EACCES) until the block ends; yields the error text the scan reports."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.fail("chattr is needed to deny root a write: apt-get install e2fsprogs")
        subprocess.run(["chattr", "+i", str(photo)], check=True)
        try:
            yield os.strerror(errno.EPERM)
        finally:
            subprocess.run(["chattr", "-i", str(photo)], check=True)
    else:
        mode = photo.stat().st_mode
        photo.chmod(0)
        try:
            yield os.strerror(errno.EACCES)
        finally:
            photo.chmod(mode)


def test_permission_denied_is_tried_again_once_permission_is_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = configure(tmp_path, mode="embed")  # auto would write a sidecar beside it instead
    folder = tmp_path / "photos"
    photo = write_photo(folder / "locked.jpg", 2, size=(320, 240))
    before, stat = pixels(photo), fsutil.file_stat(photo)
    with denied(photo) as message:
        code, out = scan(cfg, folder, capsys)
        assert code == 1 and f"{message} (will be tried again)" in out, out
        assert row(tmp_path, photo).transient
    assert fsutil.file_stat(photo) == stat  # chmod/chattr do not change size or mtime
    code, out = scan(cfg, folder, capsys)
    assert "1 photos: 1 tagged, 0 skipped (already done), 0 failed" in out, out
    assert subjects(photo) and np.array_equal(pixels(photo), before)
    assert row(tmp_path, photo).state is State.NEEDS_CAPTION


# -- the daemon -----------------------------------------------------------------------
def test_the_daemon_tries_a_transient_failure_again_by_itself(make_config, disk: SmallDisk) -> None:
    good = write_photo(disk.root / "good.jpg", 1, size=(320, 240))
    bad = damaged_jpeg(disk.root / "damaged.jpg")
    before = pixels(good)
    disk.fill()
    config = make_config(
        watch={
            "folders": [str(disk.root)],
            "settle_seconds": 0.1,
            "batch_wait": 0.1,
            "failure_retry_seconds": 0.2,
        },
        llm={"enabled": False},
    )
    with running_daemon(config) as daemon:

        def current(path: Path):
            return daemon.store.by_path(path)

        # no file event after the first failure: the daemon's own retries raise attempts
        wait_until(lambda: (r := current(good)) is not None and r.attempts >= 3, 60, "retries")
        assert current(good).transient
        assert current(bad).failure == "permanent"
        disk.free()
        wait_until(lambda: current(good).state is State.NEEDS_CAPTION, 60, "the photo tagged")
        assert current(bad).attempts == 1  # never read again
        journal = daemon.store.query("SELECT count(*) FROM journal WHERE path = ?", (str(good),))
    assert journal[0][0] == 1
    assert subjects(good) and np.array_equal(pixels(good), before)
    assert temp_files(disk.root) == []


def test_the_wait_before_another_try_doubles_up_to_the_cap(tmp_path: Path) -> None:
    store = open_store(tmp_path / "i.db")
    queue = WorkQueue(store)
    stat = FileStat(size=1, mtime_ns=2, dev=3, ino=4)
    now = time.time()
    # attempts in a row → seconds since the last failure; first wait 10 s, cap 100 s
    cases = {
        "a1_due": (1, 10.5),
        "a1_early": (1, 9.5),
        "a3_due": (3, 40.5),
        "a3_early": (3, 39.5),
        "a9_capped": (9, 100.5),
        "a9_early": (9, 99.5),
    }
    for name, (attempts, ago) in cases.items():
        path = Path(f"/p/{name}.jpg")
        store.save_failure(path, stat, "No space left on device", transient=True)
        with store.transaction() as c:
            c.execute(
                "UPDATE photos SET attempts = ?, updated_at = ? WHERE path = ?",
                (attempts, now - ago, str(path)),
            )
    store.save_failure(Path("/p/damaged.jpg"), stat, "not an image")  # permanent: never
    with store.transaction() as c:
        c.execute("UPDATE photos SET updated_at = 0 WHERE path = '/p/damaged.jpg'")
    assert queue.add_due_failures(10.0, 100.0) == 3
    queued = {r[0] for r in store.query("SELECT path FROM queue")}
    assert queued == {"/p/a1_due.jpg", "/p/a3_due.jpg", "/p/a9_capped.jpg"}
    assert queue.add_due_failures(10.0, 100.0) == 0  # already queued: left as they are
