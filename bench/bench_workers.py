"""Worker processes vs. decoding in threads of the scanning process: end-to-end scan
throughput (photos/s, no LLM) and the start-up cost of one worker.

"threads" runs the same pipeline with every file task in the scanning process (what
photoscribe did before worker processes: decode threads, no isolation); "workers" is
the default. Runs alternate (threads, workers, threads, ...) so that a busy machine
slows both alike; each figure is the median of the repeats.

    .venv/bin/python bench/bench_workers.py [--photos 24] [--size 3000x2000] [--arch tiny]

``--arch tiny`` uses the tiny test CLIP (the model costs nearly nothing: the worst case
for the ratio); ``--arch ViT-B-32`` a randomly initialised ViT-B-32 (see bench_scan.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))


def scan_once(config_dict: dict, folder: Path, count: int, isolated: bool) -> float:
    from photoscribe import service
    from photoscribe.config import config_from_dict
    from photoscribe.progress import Progress
    from photoscribe.workers import InProcess

    index = Path(config_dict["index_path"])
    for suffix in ("", "-wal", "-shm"):
        Path(str(index) + suffix).unlink(missing_ok=True)
    build = service.build_workers
    if not isolated:
        service.build_workers = lambda config: InProcess()
    try:
        started = time.perf_counter()
        summary = service.scan(
            config_from_dict(config_dict),
            [folder],
            progress=Progress(bar=False),
            captions=False,
            force=True,
        )
        elapsed = time.perf_counter() - started
    finally:
        service.build_workers = build
    assert summary.tagged == count, summary
    return count / elapsed


def start_up_ms(repeats: int) -> tuple[float, float]:
    """(first worker, with its template process; median of later ones, each forked after
    the one before was killed) in ms, up to its first answer."""
    import signal

    from photoscribe.workers import WorkerPool
    from photoscribe.worktasks import python_modules

    with WorkerPool(1) as pool:
        started = time.perf_counter()
        pool.call("bench", python_modules)
        first = (time.perf_counter() - started) * 1000
        later = []
        for _ in range(repeats):
            (worker,) = pool._workers
            os.kill(worker.pid, signal.SIGKILL)
            worker.conn.poll(10)
            started = time.perf_counter()
            pool.call("bench", python_modules)
            later.append((time.perf_counter() - started) * 1000)
    return first, statistics.median(later)


def config_for(arch: str, work: Path) -> dict:
    if arch == "tiny":
        from conftest import tiny_config_dict

        raw = tiny_config_dict(work)
    else:
        from bench_scan import random_weights

        raw = {
            "index_path": str(work / "state" / "index.sqlite3"),
            "cache_dir": str(work / "cache"),
            "model": {"arch": arch, "pretrained": str(random_weights(arch))},
        }
    raw["llm"] = {"enabled": False}
    return raw


def main() -> int:
    from bench_scan import make_photos

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--size", default="3000x2000", help="photo size, WxH")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="photoscribe-bench-"))
    try:
        make_photos(work / "photos", args.photos, size)  # type: ignore[arg-type]
        config = config_for(args.arch, work)
        scan_once(config, work / "photos", args.photos, True)  # warm-up: caches, page cache
        rates: dict[str, list[float]] = {"threads": [], "workers": []}
        for _ in range(args.repeats):
            for name in rates:
                rates[name].append(
                    scan_once(config, work / "photos", args.photos, name == "workers")
                )
        medians = {name: statistics.median(values) for name, values in rates.items()}
        first, later = start_up_ms(5)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nworker processes vs threads · {args.arch} · {args.photos} photos of {args.size} · "
        f"{cpu_name()} · {os.cpu_count()} cores · median of {args.repeats}"
    )
    print(f"scan, threads (photos/s)   | {medians['threads']:8.2f}")
    print(f"scan, workers (photos/s)   | {medians['workers']:8.2f}")
    print(f"ratio workers / threads    | {medians['workers'] / medians['threads']:8.2f}")
    print(f"first worker start (ms)    | {first:8.1f}")
    print(f"later worker start (ms)    | {later:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
