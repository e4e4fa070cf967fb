"""``model.precision: auto``: the faster of fp32 and bf16 on this host, measured, cached.

CPU flags do not say which is faster: an Intel CPU with AMX runs bf16 several times faster
than fp32, one with only AVX512-BF16 (or oneDNN capped by ONEDNN_MAX_CPU_ISA) can run it
slower, and an AMD CPU without either still ran it twice as fast. So at the first load on
a host the image tower runs a small batch in each precision for about a second, and the
choice is kept in cache_dir/precision/, keyed by what decides the speed (the CPU, its
cores and threads, torch, the oneDNN ISA cap, the model). A different key measures again.

fp32 is exact, so bf16 is chosen only when it is clearly faster (by ``MARGIN``), and
never when it fails. On a CUDA GPU nothing is measured: bf16 where the GPU supports it
(the range of fp32, so no overflow), else fp16.

Nothing here imports torch at module level; ``visual_forward`` does when called.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from photoscribe.cachefile import save_text

log = logging.getLogger(__name__)

CPU_CANDIDATES = ("fp32", "bf16")
MARGIN = 1.10  # bf16 must be this many times faster than fp32 to be chosen
PROBE_SECONDS = 1.0  # the whole probe, warm-ups included
PROBE_BATCH = 2
MAX_RUNS = 20  # timed forwards per candidate: enough for a small model's rate
# CPU flags that change how fast bf16 or fp32 runs (x86 and Arm spellings)
SPEED_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f", "avx2", "bf16")
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")

RateOf = Callable[[str], float]  # precision name → images per second (may raise)


@dataclass(frozen=True)
class Decision:
    """The precision the model runs in and where that came from."""

    precision: str
    source: str  # "model.precision", "cache", "probe" or "gpu"
    rates: dict[str, float | None] = field(default_factory=dict)  # img/s; None = failed

    def describe(self) -> str:
        if self.source == "model.precision":
            return f"{self.precision} (model.precision)"
        if self.source == "gpu":
            return f"{self.precision} (auto on the GPU: bf16 where supported, else fp16)"
        when = "now" if self.source == "probe" else "before, from the cache"
        return f"{self.precision} (auto, measured {when}: {format_rates(self.rates)})"


def format_rates(rates: Mapping[str, float | None]) -> str:
    parts = [
        f"{name} failed" if rate is None else f"{name} {rate:.0f} img/s"
        for name, rate in sorted(rates.items(), key=lambda kv: -(kv[1] or 0.0))
    ]
    return " vs ".join(parts)


def cpu_identity(cpuinfo: str) -> tuple[str, str]:
    """(the CPU's name, its speed-relevant flags) from /proc/cpuinfo's text."""
    name, flags = "", set[str]()
    for line in cpuinfo.splitlines():
        label, _, value = line.partition(":")
        label = label.strip().lower()
        if label in ("model name", "hardware", "cpu part") and not name:
            name = value.strip()
        elif label in ("flags", "features") and not flags:
            flags = set(value.split())
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    return name, ",".join(f for f in SPEED_FLAGS if f in flags)


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def torch_version() -> str:
    """torch's version without importing it (doctor must not)."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


def host_key(
    *,
    device: str,
    threads: int,
    model: str,
    cpuinfo: str,
    cores: int,
    environ: Mapping[str, str] = os.environ,
    torch: str | None = None,
) -> dict[str, str]:
    """What the speed of each precision depends on; a cached choice holds only for it."""
    name, flags = cpu_identity(cpuinfo)
    return {
        "cpu": name,
        "flags": flags,
        "cores": str(cores),
        "threads": str(threads),
        "torch": torch or torch_version(),
        **{var.lower(): environ.get(var, "") for var in ISA_ENV},
        "machine": platform.machine(),
        "device": device,
        "model": model,
    }


def cache_path(cache_dir: Path, key: Mapping[str, str]) -> Path:
    digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / "precision" / f"{digest}.json"


def read_cached(cache_dir: Path, key: Mapping[str, str]) -> Decision | None:
    """The cached choice for exactly ``key``; None when there is none (or it is unreadable)."""
    try:
        saved = json.loads(cache_path(cache_dir, key).read_text("utf-8"))
        if saved["key"] != dict(key) or saved["precision"] not in CPU_CANDIDATES:
            return None
        return Decision(saved["precision"], "cache", dict(saved["rates"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_cached(cache_dir: Path, key: Mapping[str, str], decision: Decision) -> None:
    record = {
        "key": dict(key),
        "precision": decision.precision,
        "rates": decision.rates,
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        save_text(cache_path(cache_dir, key), json.dumps(record, indent=1, ensure_ascii=False))
    except OSError as exc:  # a read-only cache_dir: the next load measures again
        log.warning("cannot cache the precision choice in %s: %s", cache_dir, exc)


def measure(rate_of: RateOf, candidates: Sequence[str]) -> dict[str, float | None]:
    """Each candidate's rate; None for one that fails (e.g. bf16 this CPU cannot run)."""
    rates: dict[str, float | None] = {}
    for name in candidates:
        try:
            rates[name] = float(rate_of(name))
        except Exception as exc:  # torch raises RuntimeError, NotImplementedError, ...
            log.info("precision auto: %s does not run here (%s)", name, exc)
            rates[name] = None
    return rates


def choose(rates: Mapping[str, float | None], margin: float = MARGIN) -> str:
    """bf16 when it ran and beat fp32 by ``margin``; else fp32 (exact)."""
    fp32, bf16 = rates.get("fp32"), rates.get("bf16")
    if bf16 is not None and (fp32 is None or bf16 > fp32 * margin):
        return "bf16"
    return "fp32"


def decide_cpu(key: Mapping[str, str], cache_dir: Path | None, rate_of: RateOf) -> Decision:
    """The cached choice for ``key``, or a fresh measurement (then cached)."""
    if cache_dir is not None:
        cached = read_cached(cache_dir, key)
        if cached is not None:
            log.info(
                "precision auto → %s: %s (measured before, cached)",
                cached.precision,
                format_rates(cached.rates),
            )
            return cached
    rates = measure(rate_of, CPU_CANDIDATES)
    decision = Decision(choose(rates), "probe", rates)
    if cache_dir is not None:
        write_cached(cache_dir, key, decision)
    log.info(
        "precision auto → %s: %s on %s — %s",
        decision.precision,
        format_rates(rates),
        key.get("cpu", "this CPU"),
        "measured, cached" if cache_dir is not None else "measured",
    )
    return decision


def cuda_precision(bf16_supported: bool) -> str:
    return "bf16" if bf16_supported else "fp16"


def timed_rate(
    forward: Callable[[], object],
    images: int,
    budget_s: float,
    *,
    clock: Callable[[], float] = time.perf_counter,
    max_runs: int = MAX_RUNS,
) -> float:
    """Images per second of ``forward`` (``images`` a call): one warm-up call (oneDNN builds
    its kernels then), then timed calls until ``budget_s`` since the start is spent or
    ``max_runs`` were timed; at least one is."""
    started = clock()
    forward()
    runs, timing = 0, clock()
    while True:
        forward()
        runs += 1
        now = clock()
        if now - started >= budget_s or runs >= max_runs:
            break
    return runs * images / max(now - timing, 1e-9)


class _Enough(Exception):
    """Raised by a hook to end a probe forward after the blocks it times."""


def longest_block_list(visual: Any) -> Any:
    """The image tower's repeated blocks (a ViT's resblocks): its longest ModuleList, or
    None when it has none (e.g. a ResNet tower, then timed whole)."""
    import torch

    lists = [m for m in visual.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 1]
    return max(lists, key=len, default=None)


@contextmanager
def visual_forward(
    model: Any, precision: str, image_size: int, batch: int
) -> Iterator[tuple[Callable[[], None], float]]:
    """(a forward of ``batch`` random images through ``model.visual`` in ``precision``, the
    part of the tower it runs). The forward stops after the first of the tower's repeated
    blocks: every block does the same matmuls, so one shows how fast the precision is at a
    fraction of the time (an emulated bf16 ViT-B/32 takes seconds per image). It runs on a
    converted copy of the weights; the loaded ones stay as they are."""
    import itertools

    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    visual = model.visual
    device = next(visual.parameters()).device
    images = torch.rand(
        batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(0)
    ).to(device, dtype=dtype)
    tensors = itertools.chain(visual.named_parameters(), visual.named_buffers())
    weights = {name: t.to(dtype) for name, t in tensors}
    blocks = longest_block_list(visual)

    def enough(*_: object) -> None:
        raise _Enough

    hook = blocks[0].register_forward_hook(enough) if blocks is not None else None

    def forward() -> None:
        with torch.inference_mode(), suppress(_Enough):
            torch.func.functional_call(visual, weights, (images,))

    try:
        yield forward, 1 / len(blocks) if blocks is not None else 1.0
    finally:
        if hook is not None:
            hook.remove()


def model_rate_of(
    model: Any, image_size: int, budget_s: float = PROBE_SECONDS, batch: int = PROBE_BATCH
) -> RateOf:
    """rate_of for the loaded model's image tower, each candidate its share of the budget.
    The rate is scaled from the part timed to the whole tower: an estimate (the stem counts
    once; an emulated bf16 patch convolution is most of a bf16 ViT-B/32 probe on AVX2), but
    both candidates are timed alike, which is all the choice needs."""
    share = budget_s / len(CPU_CANDIDATES)

    def rate_of(name: str) -> float:
        with visual_forward(model, name, image_size, batch) as (forward, part):
            return timed_rate(forward, batch, share) * part

    return rate_of


def planned(
    precision: str, device: str, model: str, threads: int, cache_dir: Path, cores: int
) -> str:
    """What a load will pick, said without torch (for doctor): the configured precision,
    the GPU rule, or the choice cached for this host (or that it will be measured)."""
    if precision != "auto":
        return f"{precision} (model.precision)"
    if device.startswith("cuda"):
        return "auto on the GPU: bf16 where it is supported, else fp16"
    key = host_key(device="cpu", threads=threads, model=model, cpuinfo=read_cpuinfo(), cores=cores)
    cached = read_cached(cache_dir, key)
    gpu = "; a CUDA GPU, if torch finds one, gets bf16 or fp16" if device == "auto" else ""
    if cached is None:
        return (
            f"auto: not measured on this CPU yet; the first load times fp32 against bf16 "
            f"(about {PROBE_SECONDS:.0f} s) and caches the choice{gpu}"
        )
    return f"{cached.describe()}{gpu}"
