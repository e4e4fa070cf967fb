"""The photos/s a scan could reach on this machine, from per-photo costs measured in the
same run (pure arithmetic, unit-tested in tests/test_bench_bound.py).

Inputs, per photo: ``decode_s`` = core-seconds of what a worker does to load it (read,
hash, draft decode, shrink) plus the main process's tensor normalisation; ``write_s`` =
core-seconds of its metadata write (which also reads the search facts); ``model_rate`` =
images/s of the model alone at the configured batch size; ``writer_wall_s`` = wall
seconds of one write (each write thread manages at most 1/writer_wall_s).

- CPU: the model runs on the same cores. At ``model_rate`` with all ``cores`` busy, one
  image costs ``cores / model_rate`` core-seconds, so
  ``bound = cores / (decode_s + write_s + cores / model_rate)``.
- GPU: the model costs no cores; it is a separate stage that caps the rate, so
  ``bound = min(cores / (decode_s + write_s), model_rate)``.

Either way the bound with writes is also capped by the writers (``writers`` files written
at once: writers / writer_wall_s); the bound without writes sets ``write_s`` to 0 and has
no writer cap.

``marginal`` turns a scan of N photos and one of its first N/2 into the rate of the
second half and the start-up a scan pays once (imports, the model load).
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
    writers: int = 1,
) -> float:
    """The bound for ``device`` ("cpu" or "cuda..."); ``write_s`` 0 = without writes."""
    pick = gpu_bound if device.startswith("cuda") else cpu_bound
    bound = pick(cores, decode_s, write_s, model_rate)
    if write_s > 0 and writer_wall_s > 0:
        bound = min(bound, writers / writer_wall_s)
    return bound


def marginal(
    photos: int, seconds: float, half_photos: int, half_seconds: float
) -> tuple[float, float]:
    """(photos/s beyond the first ``half_photos``, start-up seconds) from a scan of
    ``photos`` in ``seconds`` and one of its first ``half_photos`` in ``half_seconds``:
    with wall = start-up + photos ÷ rate, the difference leaves out the start-up.
    (nan, nan) when the two do not give a positive rate."""
    extra, more = photos - half_photos, seconds - half_seconds
    if extra <= 0 or more <= 0:
        return math.nan, math.nan
    rate = extra / more
    return rate, seconds - photos / rate


def pool_bound(decode_workers: int, decode_s: float) -> float:
    """photos/s that ``decode_workers`` worker processes can load (each one a core)."""
    return decode_workers / decode_s


def ratio(measured: float, bound: float) -> float:
    """measured / bound (1.0 = the bound reached); nan when there is no bound."""
    return measured / bound if bound > 0 and math.isfinite(bound) else math.nan


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan
