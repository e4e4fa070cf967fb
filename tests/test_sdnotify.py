"""sd_notify client against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from photoscribe.sdnotify import Notifier

CREDS = struct.Struct("3i")  # struct ucred: pid, uid, gid
Make = Callable[[dict[str, str]], Notifier]


def _listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)  # as systemd does
    sock.settimeout(10)
    return sock


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = _listener(path)
    yield sock, path
    sock.close()


@pytest.fixture
def notifier() -> Iterator[Make]:
    """Notifier.from_env, closed after the test."""
    made: list[Notifier] = []

    def make(environ: dict[str, str]) -> Notifier:
        made.append(Notifier.from_env(environ))
        return made[-1]

    yield make
    for n in made:
        n.close()


def receive(sock: socket.socket) -> tuple[str, int]:
    """One datagram and the sender's pid (as the kernel reports it)."""
    data, ancdata, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(CREDS.size))
    pids = [
        CREDS.unpack(d[: CREDS.size])[0] for _, kind, d in ancdata if kind == socket.SCM_CREDENTIALS
    ]
    return data.decode(), pids[0]


def text(sock: socket.socket) -> str:
    return receive(sock)[0]


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.watchdog_interval is None
    n.ready("up")
    n.status("x")
    n.watchdog()
    n.reloading()
    n.ready_after_reload()
    n.stopping()
    n.close()


def test_exact_datagrams(listener: tuple[socket.socket, str], notifier: Make) -> None:
    sock, path = listener
    n = notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "120000000"})
    assert n.enabled
    n.ready("watching 3 folders")
    assert receive(sock) == (
        f"READY=1\nSTATUS=watching 3 folders\nMAINPID={os.getpid()}",
        os.getpid(),
    )
    n.ready()
    assert text(sock) == f"READY=1\nMAINPID={os.getpid()}"
    n.status("line one\nline two\r\n")
    assert text(sock) == "STATUS=line one line two"
    n.watchdog()
    assert text(sock) == "WATCHDOG=1"
    n.ready_after_reload("config reloaded")
    assert text(sock) == "READY=1\nSTATUS=config reloaded"
    n.stopping("finishing 2 writes")
    assert text(sock) == "STOPPING=1\nSTATUS=finishing 2 writes"
    n.stopping()
    assert text(sock) == "STOPPING=1"
    n.close()


def test_reloading_carries_the_monotonic_clock(
    listener: tuple[socket.socket, str], notifier: Make
) -> None:
    sock, path = listener
    n = notifier({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = text(sock).split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_abstract_namespace_socket(notifier: Make) -> None:
    name = f"photoscribe-test-{uuid.uuid4().hex}"
    sock = _listener("\0" + name)
    try:
        n = notifier({"NOTIFY_SOCKET": "@" + name})
        n.ready()
        assert text(sock) == f"READY=1\nMAINPID={os.getpid()}"
    finally:
        sock.close()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "120000000"}
    assert Notifier.from_env(env).watchdog_interval == 60.0
    mine = {**env, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(mine).watchdog_interval == 60.0
    assert Notifier.from_env({**env, "WATCHDOG_USEC": "0"}).watchdog_interval is None
    assert Notifier.from_env({**env, "WATCHDOG_USEC": "soon"}).watchdog_interval is None
    assert Notifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify"}).watchdog_interval is None


def test_watchdog_meant_for_another_pid_sends_no_pings(
    listener: tuple[socket.socket, str], notifier: Make
) -> None:
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    n = notifier(env)
    assert n.watchdog_interval is None
    n.watchdog()
    n.status("marker")
    assert text(sock) == "STATUS=marker"  # no WATCHDOG=1 before it


def test_socket_gone_mid_run_never_raises_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, notifier: Make
) -> None:
    path = tmp_path / "notify"
    sock = _listener(str(path))
    n = notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
    n.ready()
    assert text(sock).startswith("READY=1")
    sock.close()
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="photoscribe.sdnotify"):
        for _ in range(3):
            n.watchdog()
            n.status("still here")
        n.stopping()
    warnings = [r for r in caplog.records if r.name == "photoscribe.sdnotify"]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()


def test_unsupported_notify_socket_disables_notifications(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="photoscribe.sdnotify"):
        n = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "1000000"})
    assert not n.enabled
    assert n.watchdog_interval is None
    assert "vsock:2:1234" in caplog.text
    n.ready()


def test_close_makes_later_calls_no_ops(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    n.close()
    assert not n.enabled
    n.status("after close")
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):
        sock.recv(4096)


CHILD = """
from photoscribe.sdnotify import Notifier
n = Notifier.from_env()
print(n.watchdog_interval, flush=True)
n.ready("up")
n.watchdog()
n.stopping()
n.close()
"""


def test_a_child_process_notifies_from_its_own_pid(listener: tuple[socket.socket, str]) -> None:
    """As under systemd with NotifyAccess=main: the datagrams come from the main process."""
    sock, path = listener
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="120000000")
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "60.0"
    assert receive(sock) == (f"READY=1\nSTATUS=up\nMAINPID={proc.pid}", proc.pid)
    assert receive(sock) == ("WATCHDOG=1", proc.pid)
    assert receive(sock) == ("STOPPING=1", proc.pid)
