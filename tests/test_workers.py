"""The worker pool: real native crashes, a real memory cap and a real time cap, each
costing one worker; the pool goes on. And the tensors made across processes are the
ones the model would have made in one."""

from __future__ import annotations

import io
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photoscribe.errors import (
    WorkerCrashed,
    WorkerOutOfMemory,
    WorkerTimeout,
    is_transient,
)
from photoscribe.workers import Limits, Relay, WorkerPool, crash_reason
from photoscribe.worktasks import python_modules

from fixtures import crashers


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(2, Limits(memory_mb=256, timeout_s=5.0)) as workers:
        yield workers


def pids(pool: WorkerPool) -> set[int]:
    return {w.pid for w in pool._workers if w.alive}


@pytest.mark.parametrize(
    ("task", "signame"), [(crashers.segv, "SIGSEGV"), (crashers.abort, "SIGABRT")]
)
def test_a_native_crash_costs_one_worker_and_names_the_signal(
    pool: WorkerPool, task, signame: str
) -> None:
    assert pool.call("image decoder", crashers.double, 1) == 2
    before = pool.restarts
    with pytest.raises(WorkerCrashed) as caught:
        pool.call("image decoder", task)
    assert str(caught.value) == (
        f"the image decoder crashed ({signame}) on this file; "
        "it was skipped and will not be retried until it changes"
    )
    assert not is_transient(caught.value)
    assert pool.restarts == before + 1
    assert pool.call("image decoder", crashers.double, 21) == 42  # a fresh worker
    assert os.getpid() not in pids(pool)


def test_a_file_past_the_memory_cap_fails_with_the_setting_named(pool: WorkerPool) -> None:
    with pytest.raises(WorkerOutOfMemory) as caught:
        pool.call("image decoder", crashers.hog)
    assert "needed more than 256 MB for this file (scan.file_memory_mb)" in str(caught.value)
    assert pool.call("image decoder", crashers.double, 4) == 8


def test_a_file_past_the_time_cap_is_stopped(pool: WorkerPool) -> None:
    with pytest.raises(WorkerTimeout) as caught:
        pool.call("metadata reader", crashers.hang)
    assert str(caught.value).startswith(
        "the metadata reader took longer than 5 s on this file (scan.file_timeout_seconds)"
    )
    assert pool.call("image decoder", crashers.double, 5) == 10


def test_a_worker_killed_from_outside_while_idle_is_replaced(pool: WorkerPool) -> None:
    pool.call("image decoder", crashers.double, 1)
    for worker in list(pool._workers):
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.conn.poll(10)  # its end of the socket closed: it is gone
    assert pool.call("image decoder", crashers.double, 3) == 6


def test_a_kill_reads_as_the_out_of_memory_killer() -> None:
    assert "killed (SIGKILL, most likely by the system running out of memory)" in crash_reason(
        "image decoder", -signal.SIGKILL
    )
    assert "exited unexpectedly (exit code 3)" in crash_reason("image decoder", 3)


def test_workers_do_not_load_torch(pool: WorkerPool) -> None:
    modules = pool.call("image decoder", python_modules)
    assert "PIL.Image" in modules and "pyexiv2" in modules
    assert not [m for m in modules if m == "torch" or m.startswith(("torch.", "open_clip"))]


def test_a_passing_failure_stays_passing_across_the_pipe(pool: WorkerPool) -> None:
    with pytest.raises(Exception) as caught:
        pool.call("metadata writer", crashers.disk_full)
    assert is_transient(caught.value)  # retried later, not skipped for good


def test_a_relayed_callback_runs_in_the_caller(pool: WorkerPool) -> None:
    seen: list[tuple[int, int]] = []

    def journal(x: int) -> int:
        seen.append((os.getpid(), x))
        return x + 1

    assert pool.call("metadata writer", crashers.relay_twice, 5, journal=Relay(journal)) == 7
    assert seen == [(os.getpid(), 5), (os.getpid(), 6)]


# -- pixels decoded in a worker, the tensor made beside the model ----------------------------
def encoded(size: tuple[int, int], fmt: str) -> bytes:
    rng = np.random.default_rng(sum(size))
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("size", "fmt"),
    [((640, 480), "JPEG"), ((333, 777), "PNG"), ((64, 64), "PNG"), ((50, 30), "JPEG")],
)
def test_the_tensor_from_worker_pixels_equals_the_one_made_in_process(
    make_config, size: tuple[int, int], fmt: str
) -> None:
    from photoscribe.service import build_tagger
    from photoscribe.vision.loader import decode, pixel_plan, prepare, shrink, tensor_from

    encoder = build_tagger(make_config()).encoder
    preprocess, side = encoder.preprocess(), encoder.input_size()
    plan = pixel_plan(preprocess)
    assert plan is not None and plan.short_side == side
    data = encoded(size, fmt)
    pixels = shrink(decode(data, side), plan)
    assert pixels.shape == (side, side, 3) and pixels.dtype == np.uint8
    expected = prepare(data, preprocess, side)
    assert np.array_equal(tensor_from(pixels, preprocess).numpy(), expected.numpy())


def test_load_photo_in_a_worker_hashes_and_shrinks(pool: WorkerPool, tmp_path: Path) -> None:
    from photoscribe.contenthash import photo_hash
    from photoscribe.vision.loader import PixelPlan
    from photoscribe.worktasks import LoadRequest, load_photo

    path = tmp_path / "照片.jpg"
    path.write_bytes(encoded((300, 200), "JPEG"))
    request = LoadRequest(min_side=32, plan=PixelPlan(32, (32, 32), Image.Resampling.BICUBIC))
    got = pool.call("image decoder", load_photo, path, request)
    assert got.content_hash == photo_hash(path, path.read_bytes())
    assert got.pixels.shape == (32, 32, 3)
