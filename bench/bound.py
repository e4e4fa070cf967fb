"""The photos/s a scan could reach on this machine, from per-photo costs measured in the
same run (pure arithmetic, unit-tested in tests/test_bench_bound.py).

Inputs, per photo: ``decode_s`` = core-seconds of what a worker does to load it (read,
hash, draft decode, shrink) plus the main process's tensor normalisation; ``write_s`` =
core-seconds of its metadata write and the facts read back; ``model_rate`` = images/s of
the model alone at the configured batch size; ``writer_wall_s`` = wall seconds of one
write (photoscribe has one writer thread, so writes never go faster than 1/writer_wall_s).

- CPU: the model runs on the same cores. At ``model_rate`` with all ``cores`` busy, one
  image costs ``cores / model_rate`` core-seconds, so
  ``bound = cores / (decode_s + write_s + cores / model_rate)``.
- GPU: the model costs no cores; it is a separate stage that caps the rate, so
  ``bound = min(cores / (decode_s + write_s), model_rate)``.

Either way the bound with writes is also capped by the single writer (1 / writer_wall_s);
the bound without writes sets ``write_s`` to 0 and has no writer cap.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def cpu_bound(cores: float, decode_s: float, write_s: float, model_rate: float) -> float:
    """photos/s when decoding, writing and the model share ``cores``."""
    return cores / (decode_s + write_s + cores / model_rate)


def gpu_bound(cores: float, decode_s: float, write_s: float, model_rate: float) -> float:
    """photos/s when the model runs on an accelerator at ``model_rate``."""
    cpu_work = decode_s + write_s
    return min(cores / cpu_work if cpu_work > 0 else math.inf, model_rate)


def scan_bound(
    device: str,
    cores: float,
    decode_s: float,
    write_s: float,
    model_rate: float,
    writer_wall_s: float = 0.0,
) -> float:
    """The bound for ``device`` ("cpu" or "cuda..."); ``write_s`` 0 = without writes."""
    pick = gpu_bound if device.startswith("cuda") else cpu_bound
    bound = pick(cores, decode_s, write_s, model_rate)
    if write_s > 0 and writer_wall_s > 0:
        bound = min(bound, 1.0 / writer_wall_s)
    return bound


def pool_bound(decode_workers: int, decode_s: float) -> float:
    """photos/s that ``decode_workers`` worker processes can load (each one a core)."""
    return decode_workers / decode_s


def ratio(measured: float, bound: float) -> float:
    """measured / bound (1.0 = the bound reached); nan when there is no bound."""
    return measured / bound if bound > 0 and math.isfinite(bound) else math.nan


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan
