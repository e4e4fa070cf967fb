"""How many torch intra-op threads the model gets on the CPU, given the decode workers.

The decode workers (scan.decode_workers) are separate processes that read and decode
photos while the model runs. If torch also takes every core, the two fight for them:
torch's threads wait for each other at every operator, so one thread pre-empted by a
decoder stalls them all, and on a small machine throughput collapses. So when
model.threads is 0 the model leaves the decoders a share of the cores.
"""

from __future__ import annotations

import math
import os

# Part of a core one decode worker keeps busy while the model runs (draft-mode JPEG
# decoding keeps pace with the model using less than a core each: bench/bench_threads.py).
DECODE_SHARE = 0.5


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
