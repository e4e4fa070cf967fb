"""How many torch intra-op threads the model gets on the CPU, given the decode workers.

The decode workers (scan.decode_workers) are separate processes that read and decode
photos while the model runs. Torch's threads wait for each other at every operator, so a
thread pre-empted by a decoder stalls them all; leaving the decoders a share of the cores
avoids that but costs the model those cores. Measured on an idle 2-core AMD EPYC
(bench/bench_threads.py, 96 camera-like 12 MP photos, 2 decode workers): torch on both
cores 5.75 photos/s, on one 4.84 — so the share is 0 (every core) until a machine where
it pays is measured; a busy machine measured the other way round, which is why the
share is kept as a setting here.
"""

from __future__ import annotations

import math
import os

# Part of a core kept free per decode worker (bench/bench_threads.py measures it).
DECODE_SHARE = 0.0


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. taskset or a cgroup cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def torch_threads(configured: int, cores: int, decode_workers: int) -> int:
    """``configured`` when set (model.threads > 0); else the cores less the decoders' share,
    at least one."""
    if configured > 0:
        return configured
    busy = math.ceil(decode_workers * DECODE_SHARE)  # a started core counts whole
    return max(1, cores - busy)
