"""`photoscribe run` as a real process: systemd's notify protocol over a Unix datagram
socket, SIGTERM, a second instance, and kill -9 at random moments (repeated)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from photoscribe.records import State
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures.daemon import wait_until, write_photo
from fixtures.exiftool import read_tags


@pytest.fixture
def setup(tmp_path: Path):
    photos = tmp_path / "photos"
    photos.mkdir()
    raw = tiny_config_dict(tmp_path)
    raw["llm"] = {"enabled": False}
    raw["watch"] = {"folders": [str(photos)], "settle_seconds": 0.3, "batch_wait": 0.2}
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


def listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(60)
    return sock


def receive_until(sock: socket.socket, wanted: str) -> list[str]:
    seen: list[str] = []
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if wanted in message.splitlines():
            return seen


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
        statuses = receive_until(sock, "WATCHDOG=1")
        assert statuses
        wait_until(lambda: len(index_rows(index)) == 1, 60, "photo indexed")
        wait_until(lambda: _queue_empty(index), 30, "an empty queue")
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in "\n".join(receive_until(sock, "STOPPING=1"))
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


def test_kill_9_at_random_moments_loses_nothing_and_tags_once(setup, tmp_path: Path) -> None:
    photos, cfg, index = setup
    rng = random.Random(20261124)
    originals = {}
    for i in range(40):
        path = write_photo(photos / f"start_{i:02d}.jpg", i, size=(160, 120))
        originals[path] = pixels(path)
    log = tmp_path / "log.txt"
    for round_ in range(6):
        proc = start(cfg, log)
        time.sleep(rng.uniform(2.0, 6.0))
        for j in range(3):  # photos keep arriving between kills
            path = write_photo(photos / f"r{round_}_{j}.jpg", 100 + round_ * 3 + j, (160, 120))
            originals[path] = pixels(path)
        time.sleep(rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    sock = listen(tmp_path / "notify.sock")
    proc = start(cfg, log, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    try:
        receive_until(sock, "READY=1")
        wait_until(lambda: len(index_rows(index)) == len(originals), 120, "every photo indexed")
        wait_until(lambda: _queue_empty(index), 60, "an empty queue")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()

    rows = {r.path: r for r in index_rows(index)}
    assert set(rows) == set(originals)
    assert all(r.state is State.NEEDS_CAPTION for r in rows.values())  # LLM disabled
    tagged = Counter(
        line.split("tagged: ", 1)[1] for line in log.read_text().splitlines() if " tagged: " in line
    )
    assert max(tagged.values()) == 1, [p for p, n in tagged.items() if n > 1]
    for path, before in originals.items():
        tags = read_tags(path)
        subjects = as_list(tags.get("XMP-dc:Subject"))
        assert subjects and len(subjects) == len({s.lower() for s in subjects}), path
        iptc = as_list(tags.get("IPTC:Keywords"))
        assert len(iptc) == len(set(iptc)), path
        assert np.array_equal(pixels(path), before), path
    leftovers = [p.name for p in photos.iterdir() if p.name.endswith(".photoscribe-tmp")]
    assert all(name.startswith(".") for name in leftovers)  # hidden; cleaned when stale


def _queue_empty(index: Path) -> bool:
    from photoscribe.store.queue import queue_depth

    store = open_store(index, readonly=True)
    try:
        return queue_depth(store) == 0
    finally:
        store.close()
