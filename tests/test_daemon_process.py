"""`photoscribe run` as a real process: systemd's notify protocol over a Unix datagram
socket, SIGTERM with work queued, a second instance, and kill -9 while photos are in flight
(repeated, random moments, the seed printed)."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from photoscribe.fsutil import is_temp_name
from photoscribe.records import State
from photoscribe.store import open_store

from fixtures.daemon import process_config, wait_until, write_photo
from fixtures.exiftool import exiftool_json
from fixtures.notify import listen, receive_until


@pytest.fixture
def setup(tmp_path: Path):
    photos, raw = process_config(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return photos, cfg, Path(raw["index_path"])


def start(cfg: Path, log: Path, **env: str) -> subprocess.Popen:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "photoscribe", "--config", str(cfg), "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
        )


def index_rows(index: Path) -> list:
    store = open_store(index, readonly=True)
    try:
        return store.rows_under(index.parent.parent / "photos")
    finally:
        store.close()


def test_notify_protocol_and_graceful_stop(setup, tmp_path: Path) -> None:
    photos, cfg, index = setup
    sock = listen(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "2000000"}
    proc = start(cfg, tmp_path / "log.txt", **env)
    try:
        ready = receive_until(sock, "READY=1")
        assert any("STATUS=watching 1 folder" in m for m in ready)
        write_photo(photos / "one.jpg", 1)
        assert receive_until(sock, "WATCHDOG=1")[-1].splitlines() == ["WATCHDOG=1"]
        wait_until(lambda: len(index_rows(index)) == 1, 60, "photo indexed")
        wait_until(lambda: _queue_empty(index), 30, "an empty queue")
        proc.send_signal(signal.SIGTERM)
        stopping = receive_until(sock, "STOPPING=1")
        lines = [line for m in ready + stopping for line in m.splitlines()]
        status = re.compile(r"STATUS=watching 1 folder · \d+ queued · \d+\.\d photos/s · LLM \w+")
        assert any(status.fullmatch(line) for line in lines), lines
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    log = (tmp_path / "log.txt").read_text()
    assert "stopped; 0 queued for the next start" in log


def test_a_second_instance_on_the_same_index_refuses(setup, tmp_path: Path) -> None:
    _photos, cfg, _index = setup
    sock = listen(tmp_path / "notify.sock")
    first = start(cfg, tmp_path / "first.txt", NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    try:
        receive_until(sock, "READY=1")
        second = subprocess.run(
            [sys.executable, "-m", "photoscribe", "--config", str(cfg), "run"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 5
        assert f"(pid {first.pid})" in second.stderr and "already" in second.stderr
    finally:
        first.terminate()
        first.wait(30)
        sock.close()


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


KILLS = 8
FIRST_PHOTOS = 80
NEW_PER_ROUND = 16  # enough that two writers at once are still at it when the kill comes


def test_kill_9_while_photos_are_in_flight_loses_nothing_and_writes_once(
    setup, tmp_path: Path
) -> None:
    """SIGKILL the daemon while it holds photos in flight (leased queue rows), many times;
    then every photo is indexed and was written exactly once (the journal), pixels intact,
    no temp file left. Set PHOTOSCRIBE_TEST_SEED to replay a run."""
    photos, cfg, index = setup
    seed = int(os.environ.get("PHOTOSCRIBE_TEST_SEED") or random.randrange(2**32))
    print(f"kill -9 test seed: {seed} (PHOTOSCRIBE_TEST_SEED={seed} replays it)")
    rng = random.Random(seed)
    originals = {}
    for i in range(FIRST_PHOTOS):
        path = write_photo(photos / f"start_{i:03d}.jpg", i, size=(160, 120))
        originals[path] = pixels(path)
    log = tmp_path / "log.txt"
    landed = []  # per kill: photos in flight right before it
    for round_ in range(KILLS):
        proc = start(cfg, log)
        try:
            for j in range(NEW_PER_ROUND):  # photos keep arriving between kills
                n = 1000 + round_ * NEW_PER_ROUND + j
                path = write_photo(photos / f"r{round_}_{j}.jpg", n, (160, 120))
                originals[path] = pixels(path)
            writing_seen(index, proc, 60)  # photos in flight and their writes going on
            time.sleep(rng.uniform(0.0, 0.02))  # then a random moment among those writes
            landed.append(in_flight(index))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL, f"seed {seed}: the daemon ended by itself"

    sock = listen(tmp_path / "notify.sock")
    proc = start(cfg, log, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    try:
        receive_until(sock, "READY=1")
        finish_and_stop(proc, index, len(originals))
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()

    hits = sum(n > 0 for n in landed)
    adopted = log.read_text().count("indexed what the file already held")
    print(f"photos in flight at each kill: {landed}; adopted after a kill: {adopted}")
    assert hits >= KILLS * 3 // 4, f"seed {seed}: only {hits} of {KILLS} kills found work: {landed}"
    rows = {r.path: r for r in index_rows(index)}
    assert set(rows) == set(originals)
    assert all(r.state is State.NEEDS_CAPTION for r in rows.values())  # LLM disabled
    assert journal_writes(index) == {p: 1 for p in originals}, f"seed {seed}"
    check_written_once(photos, originals)


def test_sigterm_with_work_queued_exits_0_and_a_restart_finishes_it(setup, tmp_path: Path) -> None:
    photos, cfg, index = setup
    originals = {}
    for i in range(48):  # more than one batch taken at a time (4 × batch_size)
        path = write_photo(photos / f"p_{i:03d}.jpg", i, size=(160, 120))
        originals[path] = pixels(path)
    log = tmp_path / "log.txt"
    proc = start(cfg, log)
    try:
        wait_until(lambda: in_flight(index) > 0, 60, "a photo in flight")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = [line for line in log.read_text().splitlines() if "stopped; " in line]
    queued = int(stopped[-1].split("stopped; ", 1)[1].split()[0])
    assert queued > 0, stopped  # the stop came with work still queued
    assert len(journal_writes(index)) < len(originals)

    proc = start(cfg, log)
    try:
        finish_and_stop(proc, index, len(originals))
    finally:
        if proc.poll() is None:
            proc.kill()
    assert journal_writes(index) == {p: 1 for p in originals}
    check_written_once(photos, originals)


def finish_and_stop(proc: subprocess.Popen, index: Path, photos: int) -> None:
    """Wait until the daemon has indexed ``photos`` photos and emptied its queue, then
    SIGTERM it; it must exit 0."""
    wait_until(lambda: len(index_rows(index)) == photos, 120, "every photo indexed")
    wait_until(lambda: _queue_empty(index), 60, "an empty queue")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def in_flight(index: Path) -> int:
    """Queue rows a running daemon has taken and not finished (0 if unreadable yet)."""
    from photoscribe.store.queue import LEASED

    try:
        with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT count(*) FROM queue WHERE due >= ?", (LEASED,)).fetchone()[
                0
            ]
    except sqlite3.Error:  # not created yet
        return 0


def writing_seen(index: Path, proc: subprocess.Popen, timeout: float) -> bool:
    """Wait until the daemon holds photos in flight and the journal grows (a write is
    going on); False if that did not happen in time."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline and proc.poll() is None:
        count = sum(journal_writes(index).values()) if in_flight(index) else None
        if count is not None and last is not None and count > last:
            return True
        last = count
        time.sleep(0.01)
    return False


def journal_writes(index: Path) -> dict[Path, int]:
    """Metadata writes per photo, as the journal recorded them ({} before the index exists)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT path, count(*) FROM journal GROUP BY path").fetchall()
    except sqlite3.Error:
        return {}
    return {Path(p): n for p, n in rows}


def check_written_once(photos: Path, originals: dict[Path, np.ndarray]) -> None:
    """Keywords not duplicated, pixels unchanged, no temp file anywhere."""
    paths = sorted(originals)
    for tags in exiftool_json("-G1", "-a", *paths):
        path = Path(tags["SourceFile"])
        subjects = as_list(tags.get("XMP-dc:Subject"))
        assert subjects and len(subjects) == len({s.lower() for s in subjects}), path
        iptc = as_list(tags.get("IPTC:Keywords"))
        assert len(iptc) == len(set(iptc)), path
    for path, before in originals.items():
        assert np.array_equal(pixels(path), before), path
    leftovers = [p.name for p in photos.iterdir() if is_temp_name(p.name)]
    assert leftovers == []


def _queue_empty(index: Path) -> bool:
    from photoscribe.store.queue import queue_depth

    store = open_store(index, readonly=True)
    try:
        return queue_depth(store) == 0
    finally:
        store.close()
