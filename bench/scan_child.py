"""One end-to-end scan in its own process, for bench/bench_scan.py (which measures its
memory from outside): ``python bench/scan_child.py CONFIG.json FOLDER``.

Runs photoscribe.service.scan (LLM off) on FOLDER with the config dict in CONFIG.json and
prints one JSON line: the summary's counts, the scan's wall time, the time until the first
photo was done and the rate after it, the CPU seconds of this process and its reaped
children (the worker processes), and this process's peak RSS (VmHWM).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run(config_path: Path, folder: Path) -> dict:
    from photoscribe.config import config_from_dict
    from photoscribe.progress import Progress
    from photoscribe.service import scan

    config = config_from_dict(json.loads(config_path.read_text()))
    done: list[float] = []  # when each photo was done

    class Timed(Progress):
        def advance(self, outcome: str, path: Path | None = None) -> None:
            done.append(time.perf_counter())
            super().advance(outcome, path)

    cpu_before = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    summary = scan(config, [folder], progress=Timed(bar=False), captions=False)
    wall = time.perf_counter() - started
    cpu = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before
    return {
        "tagged": summary.tagged,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "failures": [f"{p.name}: {why}" for p, why in summary.failures[:5]],
        "wall_s": wall,
        "first_done_s": (done[0] - started) if done else None,
        "steady_photos_per_s": steady_rate(done, config.model.batch_size),
        "cpu_s": cpu,
        "main_peak_rss_mb": peak_rss_mb(),
    }


def steady_rate(done: list[float], batch: int) -> float | None:
    """photos/s from the first photo done to the last (start-up left out); None unless
    more than two batches were done (photos finish a batch at a time)."""
    if len(done) <= 2 * batch or done[-1] <= done[0]:
        return None
    return (len(done) - 1) / (done[-1] - done[0])


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that over
    from the forked copy of the parent across exec, so it would report the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), Path(sys.argv[2]))), flush=True)
