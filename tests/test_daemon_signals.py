"""`photoscribe run` as a real process: SIGHUP after the config file was edited on disk,
and systemd watchdog pings (WATCHDOG_USEC, a real AF_UNIX NOTIFY_SOCKET) that flow while
the pipeline makes progress and stop while a photo is stuck past watch.stuck_minutes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from photoscribe.store import open_store

from fixtures.daemon import process_config, wait_until, write_photo
from fixtures.notify import listen, receive_until

# The tagger blocks while the file GATE exists (a tagger stuck in torch, a hung
# device); it creates GATE + ".entered" when it does, so the test knows.
STUCK_TAGGER = """
import sys, time
from pathlib import Path
from photoscribe.vision.tagger import Tagger

gate = Path(sys.argv[1])
tag = Tagger.tag

def stuck_while_gated(self, tensors):
    if gate.exists():
        Path(str(gate) + ".entered").touch()
        while gate.exists():
            time.sleep(0.05)
    return tag(self, tensors)

Tagger.tag = stuck_while_gated
from photoscribe.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture
def setup(tmp_path: Path):
    photos, raw = process_config(tmp_path)
    return photos, raw, tmp_path / "config.yaml"


def save(raw: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def start(argv: list[str], log: Path, **env: str) -> subprocess.Popen:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT, env=full_env
        )


def receive_for(sock: socket.socket, seconds: float) -> list[str]:
    """Every datagram that arrives within ``seconds`` (a deadline, to show an absence)."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    sock.settimeout(60)
    return seen


def drain(sock: socket.socket) -> list[str]:
    """The datagrams already waiting, without waiting for more."""
    seen: list[str] = []
    sock.setblocking(False)
    try:
        while True:
            seen.append(sock.recv(4096).decode())
    except BlockingIOError:
        return seen
    finally:
        sock.settimeout(60)


def indexed(index: Path, folder: Path) -> int:
    store = open_store(index, readonly=True)
    try:
        return len(store.rows_under(folder))
    finally:
        store.close()


def withheld(log: Path | str) -> int:
    return (log if isinstance(log, str) else log.read_text()).count("withholding watchdog pings")


def resumed(log: Path | str) -> int:
    return (log if isinstance(log, str) else log.read_text()).count("watchdog pings resume")


def stop(proc: subprocess.Popen, sock: socket.socket) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    sock.close()


def test_sighup_rereads_the_edited_config_file(setup, tmp_path: Path) -> None:
    _photos, raw, cfg = setup
    save(raw, cfg)
    index = Path(raw["index_path"])
    sock = listen(tmp_path / "notify.sock")
    argv = ["-m", "photoscribe", "--config", str(cfg), "run"]
    proc = start(argv, tmp_path / "log.txt", NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    try:
        receive_until(sock, "READY=1")
        added = tmp_path / "added"
        added.mkdir()
        raw["watch"]["folders"].append(str(added))
        save(raw, cfg)  # the user edits the file, then: systemctl reload photoscribe
        proc.send_signal(signal.SIGHUP)
        reload = receive_until(sock, "READY=1")
        assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in reload)
        assert "STATUS=watching 2 folders" in "\n".join(reload)
        write_photo(added / "new.jpg", 3)
        wait_until(lambda: indexed(index, added) == 1, 60, "the photo in the added folder")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        stop(proc, sock)
    assert "config reloaded" in (tmp_path / "log.txt").read_text()


def test_watchdog_pings_stop_while_a_photo_is_stuck(setup, tmp_path: Path) -> None:
    photos, raw, cfg = setup
    raw["watch"]["stuck_minutes"] = 0.05  # 3 s
    save(raw, cfg)
    index = Path(raw["index_path"])
    gate = tmp_path / "gate"
    sock = listen(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    argv = ["-c", STUCK_TAGGER, str(gate), "--config", str(cfg), "run"]
    log = tmp_path / "log.txt"
    proc = start(argv, log, **env)
    try:
        receive_until(sock, "READY=1")
        write_photo(photos / "one.jpg", 1)
        wait_until(lambda: indexed(index, photos) == 1, 60, "a photo tagged")
        healthy = receive_for(sock, 1.0)  # pings every 0.2 s
        assert healthy.count("WATCHDOG=1") >= 3

        gate.touch()
        write_photo(photos / "two.jpg", 2)
        entered = Path(f"{gate}.entered")
        wait_until(entered.exists, 60, "the tagger stuck")
        before = log.read_text()
        drain(sock)  # what was sent before
        # pings go on for up to stuck_minutes (a slow batch is not a hang), then stop
        assert "WATCHDOG=1" in "\n".join(receive_until(sock, "WATCHDOG=1"))
        wait_until(lambda: withheld(log) > withheld(before), 30, "pings withheld")
        receive_for(sock, 0.3)  # a ping sent just before the log line
        silent = receive_for(sock, 2.0)  # 10 intervals
        assert "WATCHDOG=1" not in silent, log.read_text()[-3000:]

        gate.unlink()  # unstuck: the photo finishes, the pings come back
        assert "WATCHDOG=1" in "\n".join(receive_until(sock, "WATCHDOG=1"))
        wait_until(lambda: indexed(index, photos) == 2, 60, "the stuck photo tagged")
        assert resumed(log) > resumed(before)
    finally:
        stop(proc, sock)
