"""A template process that forks worker processes on request (our own fork server).

It is a fresh interpreter (never a fork of the caller, whose threads and torch must not
be copied) that imports what workers need once, then forks one worker per request:
starting a worker costs a fork, not an interpreter start and its imports. Unlike
multiprocessing's forkserver it never re-runs the caller's ``__main__`` and it uses the
caller's ``sys.path`` for every import. Being the workers' parent, it also reports how
each ended (exit code, or -N for signal N).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

CODE = "from photoscribe.zygote import main; main()"
MESSAGE = 64  # bytes of one request or answer


class Zygote:
    """The caller's handle on one template process; safe to use from several threads."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        path = os.pathsep.join(p for p in sys.path if p)  # the caller's photoscribe
        env = dict(os.environ, PYTHONPATH=path, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", CODE, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self._sock = ours
        self._lock = threading.Lock()
        if ours.recv(MESSAGE) != b"ready":
            self.close()
            raise OSError("the worker template process did not start")

    def fork(self, worker_fd: int, memory_mb: int) -> int:
        """A new worker serving on (a copy of) ``worker_fd``; its pid."""
        with self._lock:
            socket.send_fds(self._sock, [f"fork {memory_mb}".encode()], [worker_fd])
            return int(self._answer())

    def wait(self, pid: int) -> int:
        """Wait for worker ``pid`` to end; its exit code (-N: killed by signal N)."""
        with self._lock:
            self._sock.send(f"wait {pid}".encode())
            return int(self._answer())

    def close(self) -> None:
        self._sock.close()  # the template exits when it sees the end
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _answer(self) -> str:
        answer = self._sock.recv(MESSAGE)
        if not answer:
            raise OSError("the worker template process is gone")
        return answer.decode()


# -- the template process --------------------------------------------------------------
def main() -> None:
    """``python -c ... FD``: import, say ready, then fork workers until the caller goes."""
    from photoscribe.workers import preload, serve

    sock = socket.socket(fileno=int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the caller to handle
    preload()
    sock.send(b"ready")
    ended: dict[int, int] = {}
    while True:
        message, fds, _, _ = socket.recv_fds(sock, MESSAGE, 1)
        if not message:
            return
        command, argument = message.decode().split()
        if command == "fork":
            sock.send(str(_fork(sock, fds[0], int(argument), serve)).encode())
        elif command == "wait":
            sock.send(str(_wait(int(argument), ended)).encode())
        _reap(ended)


def _fork(sock: socket.socket, fd: int, memory_mb: int, serve: Callable[[int, int], None]) -> int:
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            sock.close()
            serve(fd, memory_mb)
            code = 0
        finally:
            os._exit(code)
    os.close(fd)
    return pid


def _wait(pid: int, ended: dict[int, int]) -> int:
    if pid in ended:
        return ended.pop(pid)
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return -signal.SIGKILL  # unknown: gone long ago
    return os.waitstatus_to_exitcode(status)


def _reap(ended: dict[int, int]) -> None:
    """Collect workers that ended without being waited for (no zombies pile up)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        ended[pid] = os.waitstatus_to_exitcode(status)
