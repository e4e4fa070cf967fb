"""Scan throughput against this machine's bound, in one run, on any machine (issue 13).

Measures, per photo set (12 MP and 24 MP camera-like JPEGs, and a mixed folder of JPEG,
PNG, HEIC and RAW-with-preview; bench/camera_photos.py makes and caches them):

- decode core-time per photo: CPU seconds of what a worker does (worktasks.load_photo:
  read, hash, draft decode, shrink) plus the main process's tensor_from normalisation;
- metadata-write core-time per photo: metadata.write_photo of a real annotation into a
  copy of the photo (pyexiv2 in memory, temp file, fsync, rename), with the hash checks
  it makes, and the search facts taken from the metadata it read, as the writer does;
- model-only throughput at the configured batch size (tagger.tag on ready tensors);
- the bound (bench/bound.py) with and without the write term;
- end-to-end `scan` photos/s with metadata written and with ``metadata.write: false``,
  each in its own process (bench/scan_child.py) on a fresh copy of the photos and a fresh
  index, with the peak memory of its process tree; optionally again with AMX off;
- the same scans of each set's first half in the same round: the second half's photos/s
  (what a scan pays once cancels out: bound.marginal) and the start-up in seconds;
- a naive seed-style loop: full decode, fp32, one photo at a time, no batching.

Speed does not depend on the weights' values, so a randomly initialised model of ``--arch``
is saved under bench/out/ (explicitly for timing only; the product never falls back to
random weights). Every figure is the median of ``--repeats`` interleaved rounds after a
discarded warm-up round; the machine's free memory is touched once before measuring.

    python bench/bench_scan.py [--device auto|cpu|cuda] [--photos 48] [--sizes 12,24]
        [--mixed/--no-mixed] [--repeats 3] [--quick] [--precision auto|fp32|bf16]
        [--amx-off] [--arch ViT-B-32] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT / "tests"), str(BENCH)]

from bound import marginal, median, pool_bound, ratio, scan_bound  # noqa: E402
from camera_photos import PhotoSet, build_set, heic_available, photos_in  # noqa: E402
from machine import cpu_name  # noqa: E402

RSS_TARGET_MB = 2048  # issue 13: a scan's peak memory ≤ 2 GB
AMX_OFF_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}


# -- arguments ----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--photos", type=int, help="photos per set (default 48; --quick 12)")
    p.add_argument("--sizes", default="12,24", help="megapixels of the JPEG sets, e.g. 12,24")
    p.add_argument("--mixed", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--mixed-photos", type=int, help="photos of the mixed set (photos/2, ≤ 48)")
    p.add_argument("--repeats", type=int, help="measured rounds (default 3; --quick 1)")
    p.add_argument("--warmup", type=int, default=1, help="discarded rounds first")
    p.add_argument("--quick", action="store_true", help="a smoke run: few photos and rounds")
    p.add_argument("--amx-off", action="store_true", help="also scan with AMX off (oneDNN)")
    p.add_argument(
        "--marginal",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also scan the first half of each set: photos/s beyond it, and start-up",
    )
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--pretrained", help="a weights file (default: random weights of --arch)")
    p.add_argument("--model-config-dir", help="open_clip config folder for a custom --arch")
    p.add_argument("--labels-file", help="tagging.labels_file (default: built-in vocabulary)")
    p.add_argument("--batch-size", type=int, help="model.batch_size (default: the config's)")
    p.add_argument("--decode-workers", type=int, help="scan.decode_workers (default: config's)")
    p.add_argument("--sample", type=int, help="photos timed per round for core-times (32)")
    p.add_argument("--naive-photos", type=int, help="photos of the naive loop per round (8)")
    p.add_argument("--touch-gb", type=float, help="memory touched once (free/2, ≤ 8; quick ≤ 1)")
    p.add_argument("--out", type=Path, default=BENCH / "out", help="cached photos, weights")
    p.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = p.parse_args(argv)
    quick = args.quick
    args.photos = args.photos or (12 if quick else 48)
    args.repeats = args.repeats or (1 if quick else 3)
    args.sample = min(args.photos, args.sample or (6 if quick else 32))
    args.naive_photos = min(args.photos, args.naive_photos or (2 if quick else 8))
    args.sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    return args


def photo_sets(args: argparse.Namespace) -> list[PhotoSet]:
    sets = [PhotoSet(f"{mp:g} MP JPEG", args.photos, mp) for mp in args.sizes]
    if args.mixed:
        formats = ["jpeg", "png", "raw"] + (["heic"] if heic_available() else [])
        wanted = args.mixed_photos or min(48, args.photos // 2)
        count = max(len(formats), wanted // len(formats) * len(formats))
        mp = args.sizes[0] if args.sizes else 12.0
        sets.append(PhotoSet(f"mixed {'/'.join(formats)} {mp:g} MP", count, mp, tuple(formats)))
    return sets


# -- the machine ------------------------------------------------------------------------
def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_amx(flags: set[str]) -> bool:
    return "amx_tile" in flags or "amx_bf16" in flags


def mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def touch_memory(gb: float) -> float:
    """Write ``gb`` of fresh memory once: a fresh VM's never-touched pages are slow the
    first time, which would otherwise land in whichever measurement comes first."""
    import numpy as np

    size = int(gb * 1024**3)
    if size <= 0:
        return 0.0
    block = np.empty(size, dtype=np.uint8)
    block.fill(1)
    del block
    return gb


def machine_info(args: argparse.Namespace, loaded: dict[str, Any]) -> dict[str, Any]:
    import torch

    flags = cpu_flags()
    device = loaded["device"]
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count() or 1,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "device": device,
        "precision": str(loaded["dtype"]).split(".")[-1],
        "amx": has_amx(flags),
        "avx512_bf16": "avx512_bf16" in flags,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
    }
    return info


# -- model ------------------------------------------------------------------------------------
def random_weights(arch: str, out: Path) -> Path:
    """A randomly initialised ``arch``, for timing only (speed does not depend on values)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    path = out / f"{arch}-random-init.safetensors"
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = open_clip.create_model(arch, pretrained=None)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        tmp.replace(path)
    return path


def base_config(args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    model: dict[str, Any] = {
        "arch": args.arch,
        "pretrained": args.pretrained or str(random_weights(args.arch, args.out)),
        "device": args.device,
        "precision": args.precision,
    }
    if args.model_config_dir:
        model["config_dir"] = args.model_config_dir
    if args.batch_size:
        model["batch_size"] = args.batch_size
    config: dict[str, Any] = {
        "index_path": str(cache / "unused-index.sqlite3"),
        "cache_dir": str(cache),
        "model": model,
        "llm": {"enabled": False},
    }
    if args.labels_file:
        config["tagging"] = {"labels_file": args.labels_file}
    if args.decode_workers:
        config["scan"] = {"decode_workers": args.decode_workers}
    return config


def with_section(config: dict[str, Any], section: str, **values: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    out.setdefault(section, {}).update(values)
    return out


def model_rate(tagger: Any, batch: int, min_batches: int, min_seconds: float) -> float:
    """images/s of tagger.tag on ready CPU tensors (moved to the device as in a scan), over
    at least ``min_batches`` batches and ``min_seconds``; the caller warmed it up. tag()
    returns numpy arrays, so each batch has finished on the device when it returns."""
    import torch

    size = tagger.encoder.input_size()
    tensors = [torch.rand(3, size, size) for _ in range(batch)]
    done, started = 0, time.perf_counter()
    while done < min_batches or time.perf_counter() - started < min_seconds:
        tagger.tag(tensors)
        done += 1
    return batch * done / (time.perf_counter() - started)


# -- per-photo core-times ----------------------------------------------------------------
class single_thread_torch:
    """torch on one thread while core-times are taken: its idle pool threads would spin
    and be counted as process CPU time; the work measured here is single-threaded."""

    def __enter__(self) -> None:
        import torch

        self.before = torch.get_num_threads()
        torch.set_num_threads(1)
        time.sleep(0.2)  # let the intra-op pool's threads stop spinning

    def __exit__(self, *exc: object) -> None:
        import torch

        torch.set_num_threads(self.before)


def decode_core_times(paths: list[Path], tagger: Any) -> list[float]:
    """Process CPU seconds per photo of load_photo (in a worker) + tensor_from (main)."""
    from photoscribe.vision.loader import pixel_plan, tensor_from
    from photoscribe.worktasks import LoadRequest, load_photo

    encoder = tagger.encoder
    preprocess = encoder.preprocess()
    request = LoadRequest(encoder.input_size(), pixel_plan(preprocess), encoder.model_id)
    times = []
    with single_thread_torch():
        for path in paths:
            started = time.process_time()
            tensor_from(load_photo(path, request).pixels, preprocess)
            times.append(time.process_time() - started)
    return times


@dataclass
class WriteTimes:
    cpu_s: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)


def write_times(paths: list[Path], work: Path, annotation_for: Any) -> WriteTimes:
    """CPU and wall seconds per photo of write_photo on a fresh copy, as a scan calls it
    (the search facts come from the write's own read of the metadata)."""
    from photoscribe.contenthash import photo_hash
    from photoscribe.metadata import write_photo
    from photoscribe.search.facts import facts_from

    work.mkdir(parents=True, exist_ok=True)
    got = WriteTimes()
    for path in paths:
        copy = work / path.name
        shutil.copyfile(path, copy)
        annotation = annotation_for(photo_hash(copy, copy.read_bytes()))
        cpu, wall = time.process_time(), time.perf_counter()
        write_photo(copy, annotation, expected_hash=annotation.content_hash, facts=facts_from)
        got.cpu_s.append(time.process_time() - cpu)
        got.wall_s.append(time.perf_counter() - wall)
    shutil.rmtree(work)
    return got


def annotation_maker(config: Any, tagger: Any) -> Any:
    """content hash → the annotation a scan without LLM writes: 8 keywords, no caption."""
    from photoscribe.records import Keyword, Tagging
    from photoscribe.service import build_wording
    from photoscribe.writing import annotation_of

    labels = tagger.labels[:: max(1, len(tagger.labels) // 8)][:8]
    tagging = Tagging(tuple(Keyword(x, 0.3) for x in labels), b"", tagger.encoder.model_id)
    wording = build_wording(config)
    return lambda digest: annotation_of(tagging, None, digest, wording)


# -- the naive loop --------------------------------------------------------------------------
def naive_rate(paths: list[Path], encoder: Any) -> float:
    """photos/s of the seed's way: full decode, model preprocessing, fp32, batch of one."""
    from PIL import Image

    preprocess = encoder.preprocess()
    started = time.perf_counter()
    for path in paths:
        image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
        encoder.encode_images([preprocess(image)])
    return len(paths) / (time.perf_counter() - started)


def naive_encoder(config_dict: dict[str, Any]) -> Any:
    from photoscribe.config import config_from_dict
    from photoscribe.vision import ClipModel, Encoder

    fp32 = config_from_dict(with_section(config_dict, "model", precision="fp32"))
    encoder = Encoder(ClipModel(fp32.model))
    encoder.model.load()
    return encoder


# -- end-to-end scans in their own process -------------------------------------------------
def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_mb(pid: int) -> tuple[float, float]:
    """(RSS, nan) of ``pid`` in MB, from the kernel's counters (``statm``): no page walk."""
    try:
        resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0, math.nan
    return resident * os.sysconf("SC_PAGE_SIZE") / 2**20, math.nan


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` in MB; PSS splits each shared page between its sharers. Its
    page walk holds the process's memory map: sampled every 0.1 s it slowed a scan's
    start-up by ~0.6 s here, so only untimed (warm-up) scans read it."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("Rss", "Pss"):
                found[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found.get("Rss", 0.0), found.get("Pss", 0.0)


class TreeMemory:
    """Samples the summed RSS and PSS of a process and all its descendants (the scan, its
    worker template and workers); keeps the peaks. The summed RSS counts a page shared
    inside the tree more than once (an upper estimate); PSS gives part of the pages this
    benchmark's own process shares with it (torch's libraries) to the benchmark (a lower
    estimate of what the scan needs alone). ``pss`` False: RSS alone, from counters that
    cost the scan nothing (PSS comes out nan)."""

    def __init__(self, pid: int, every_s: float = 0.1, *, pss: bool = True) -> None:
        self.pid, self.every_s = pid, every_s
        self.read = memory_mb if pss else rss_mb
        self.peak_rss_mb = 0.0
        self.peak_pss_mb = 0.0 if pss else math.nan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            sizes = [self.read(p) for p in descendants(self.pid)]
            self.peak_rss_mb = max(self.peak_rss_mb, sum(rss for rss, _ in sizes))
            self.peak_pss_mb = max(self.peak_pss_mb, sum(pss for _, pss in sizes))

    def stop(self) -> tuple[float, float]:
        self._stop.set()
        self._thread.join()
        return self.peak_rss_mb, self.peak_pss_mb


def scan_once(
    config_dict: dict[str, Any],
    pristine: Path,
    work: Path,
    env: dict[str, str],
    photos: int | None = None,
    *,
    pss: bool = False,
) -> dict[str, Any]:
    """One `scan` of a fresh copy of ``pristine`` (its first ``photos``; None: all) with
    a fresh index, in a child process; ``pss``: its memory's PSS sampled too (slows it)."""
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "photos"
    chosen = photos_in(pristine)[:photos]
    folder.mkdir(parents=True)
    for path in chosen:
        shutil.copy2(path, folder / path.name)
    os.sync()  # the copy's write-back must not run during the timed scan
    config = dict(config_dict, index_path=str(work / "index.sqlite3"))
    config_path = work / "config.json"
    config_path.write_text(json.dumps(config))
    child = subprocess.Popen(
        [sys.executable, str(BENCH / "scan_child.py"), str(config_path), str(folder)],
        stdout=subprocess.PIPE,
        env={**os.environ, **env},
        text=True,
    )
    memory = TreeMemory(child.pid, pss=pss)
    out, _ = child.communicate()
    peak_rss, peak_pss = memory.stop()
    shutil.rmtree(work, ignore_errors=True)
    if child.returncode != 0:
        raise RuntimeError(f"the scan process failed (exit {child.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["tree_peak_rss_mb"], result["tree_peak_pss_mb"] = peak_rss, peak_pss
    expected = len(chosen)
    if result["tagged"] != expected:
        raise RuntimeError(f"the scan tagged {result['tagged']} of {expected} photos: {result}")
    result["photos_per_s"] = expected / result["wall_s"]
    return result


# -- the rounds ------------------------------------------------------------------------------
@dataclass
class Figures:
    """Per-round values of one photo set (medians taken at the end)."""

    decode_s: list[float] = field(default_factory=list)
    write_s: list[float] = field(default_factory=list)
    writer_wall_s: list[float] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    # suffix → {"decode": [...], "write": [...]} per photo, for sets of several formats
    by_format: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    scans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    warmup_pss_mb: dict[str, float] = field(default_factory=dict)  # mode → peak PSS


@dataclass
class Bench:
    args: argparse.Namespace
    config_dict: dict[str, Any]
    tagger: Any
    sets: list[tuple[PhotoSet, Path]]
    work: Path
    naive: Any = None
    modes: dict[str, tuple[dict[str, Any], dict[str, str]]] = field(default_factory=dict)
    model: list[float] = field(default_factory=list)
    model_amx_off: list[float] = field(default_factory=list)  # when AMX-off scans run
    figures: dict[str, Figures] = field(default_factory=dict)

    def round(self, keep: bool) -> None:
        """One measurement of everything, interleaved; kept unless it is a warm-up."""
        batch = self.tagger_batch()
        seconds = 0.3 if self.args.quick else 2.0
        rate = model_rate(self.tagger, batch, max(2, 64 // batch), seconds)
        off = self.amx_off_rate(seconds) if self.amx_off else None
        if keep:
            self.model.append(rate)
            if off is not None:
                self.model_amx_off.append(off)
        for photo_set, folder in self.sets:
            self.measure_set(photo_set, folder, keep)

    @property
    def amx_off(self) -> bool:
        return any(env == AMX_OFF_ENV for _, env in self.modes.values())

    def amx_off_rate(self, seconds: float) -> float:
        """The model-only rate with AMX off, in a process started so (bench/model_child.py)."""
        config_path = self.work / "model-config.json"
        config_path.write_text(json.dumps(self.config_dict))
        out = subprocess.run(
            [sys.executable, str(BENCH / "model_child.py"), str(config_path), str(seconds)],
            capture_output=True,
            text=True,
            env={**os.environ, **AMX_OFF_ENV},
            check=True,
        )
        return float(json.loads(out.stdout.strip().splitlines()[-1])["rate"])

    def tagger_batch(self) -> int:
        from photoscribe.config import config_from_dict

        return config_from_dict(self.config_dict).model.batch_size

    def measure_set(self, photo_set: PhotoSet, folder: Path, keep: bool) -> None:
        figures = self.figures.setdefault(photo_set.name, Figures())
        paths = photos_in(folder)
        sample = paths[: self.args.sample]
        decodes = decode_core_times(sample, self.tagger)
        writes = write_times(sample, self.work / "writes", self.annotation)
        naive = None
        if self.naive is not None and photo_set.formats == ("jpeg",):
            naive = naive_rate(paths[: self.args.naive_photos], self.naive)
        scans = {}
        for mode, (config, env) in self.modes.items():
            pss = not keep  # PSS in warm-up rounds only: reading it slows the scan
            scans[mode] = scan_once(config, folder, self.work / "scan", env, pss=pss)
            if self.args.marginal:  # the first half alone: what start-up costs
                half = scan_once(config, folder, self.work / "scan", env, len(paths) // 2)
                scans[mode]["half"] = half
        if not keep:
            for mode, result in scans.items():
                figures.warmup_pss_mb[mode] = result["tree_peak_pss_mb"]
            return
        figures.decode_s.append(median(decodes))
        if len(photo_set.formats) > 1:
            for path, dec, wr in zip(sample, decodes, writes.cpu_s, strict=True):
                kind = figures.by_format.setdefault(path.suffix, {"decode": [], "write": []})
                kind["decode"].append(dec)
                kind["write"].append(wr)
        figures.write_s.append(median(writes.cpu_s))
        figures.writer_wall_s.append(median(writes.wall_s))
        if naive is not None:
            figures.naive.append(naive)
        for mode, result in scans.items():
            figures.scans.setdefault(mode, []).append(result)

    @property
    def annotation(self) -> Any:
        from photoscribe.config import config_from_dict

        if not hasattr(self, "_annotation"):
            self._annotation = annotation_maker(config_from_dict(self.config_dict), self.tagger)
        return self._annotation


def scan_modes(
    args: argparse.Namespace, config_dict: dict[str, Any], info: dict[str, Any]
) -> tuple[dict[str, tuple[dict[str, Any], dict[str, str]]], list[str]]:
    """name → (config, extra environment) of each end-to-end scan; notes on skipped ones."""
    writes = with_section(config_dict, "metadata", write=True)
    no_writes = with_section(config_dict, "metadata", write=False)
    modes = {"writes": (writes, {}), "no writes": (no_writes, {})}
    notes = []
    if args.amx_off:
        if info["device"] != "cpu":
            notes.append("--amx-off: the model runs on the GPU here, AMX plays no part; skipped")
        elif not info["amx"]:
            notes.append("--amx-off: this CPU has no AMX, so it makes no difference; skipped")
        else:
            modes["writes, AMX off"] = (writes, AMX_OFF_ENV)
            modes["no writes, AMX off"] = (no_writes, AMX_OFF_ENV)
    return modes, notes


# -- results ----------------------------------------------------------------------------------
def summarise(bench: Bench, info: dict[str, Any]) -> dict[str, Any]:
    """Medians, bounds and ratios of every set, as a JSON-able dict."""
    cores, device = info["cores"], info["device"]
    rate = median(bench.model)
    rate_off = median(bench.model_amx_off) if bench.model_amx_off else math.nan
    workers = _decode_workers(bench.config_dict)
    writers = _write_workers(bench.config_dict)
    sets = {}
    for photo_set, folder in bench.sets:
        f = bench.figures[photo_set.name]
        decode, write, wall = median(f.decode_s), median(f.write_s), median(f.writer_wall_s)
        bound_w = scan_bound(device, cores, decode, write, rate, wall, writers)
        bound_nw = scan_bound(device, cores, decode, 0.0, rate)
        bounds = {"": (bound_w, bound_nw)}
        if math.isfinite(rate_off):  # the AMX-off scans against their own model rate
            bound_w_off = scan_bound(device, cores, decode, write, rate_off, wall, writers)
            bounds["AMX off"] = (bound_w_off, scan_bound(device, cores, decode, 0.0, rate_off))
        scans = {
            mode: _scan_summary(results, _bound_of(mode, bounds), f.warmup_pss_mb.get(mode))
            for mode, results in f.scans.items()
        }
        sizes = [p.stat().st_size for p in photos_in(folder)]
        sets[photo_set.name] = {
            "photos": photo_set.count,
            "size_px": photo_set.size,
            "mean_file_mb": sum(sizes) / len(sizes) / 1e6,
            "decode_core_ms": decode * 1000,
            "write_core_ms": write * 1000,
            "writer_wall_ms": wall * 1000,
            "bound_writes": bound_w,
            "bound_no_writes": bound_nw,
            "bound_writes_amx_off": bounds.get("AMX off", (math.nan,))[0],
            "bound_no_writes_amx_off": bounds.get("AMX off", (math.nan, math.nan))[1],
            "decode_pool_bound": pool_bound(workers, decode),
            "scans": scans,
            "naive": _rate_summary(f.naive, bound_nw) if f.naive else None,
            "by_format_ms": {
                suffix: {k: median(v) * 1000 for k, v in times.items()}
                for suffix, times in f.by_format.items()
            },
        }
    return {
        "model_rate": rate,
        "model_rates": bench.model,
        "model_rate_amx_off": rate_off,
        "model_rates_amx_off": bench.model_amx_off,
        "decode_workers": workers,
        "write_workers": writers,
        "sets": sets,
    }


def _bound_of(mode: str, bounds: dict[str, tuple[float, float]]) -> float:
    """The bound a scan ``mode`` is measured against: with or without writes, and with
    the model rate of its own environment (AMX off: the rate measured so)."""
    with_writes, without = bounds["AMX off" if "AMX off" in mode else ""]
    return without if "no writes" in mode else with_writes


def _write_workers(config_dict: dict[str, Any]) -> int:
    from photoscribe.config import config_from_dict, write_workers

    return write_workers(config_from_dict(config_dict))


def _decode_workers(config_dict: dict[str, Any]) -> int:
    from photoscribe.config import config_from_dict

    return config_from_dict(config_dict).scan.decode_workers


def _rate_summary(rates: list[float], bound: float) -> dict[str, Any]:
    rate = median(rates)
    return {"photos_per_s": rate, "rounds": rates, "ratio": ratio(rate, bound)}


def _scan_summary(
    results: list[dict[str, Any]], bound: float, warmup_pss_mb: float | None
) -> dict[str, Any]:
    """Medians of a mode's timed rounds; the peak PSS is the warm-up round's (None: no
    warm-up round, so none was read)."""
    out = _rate_summary([r["photos_per_s"] for r in results], bound)
    out["cpu_ms_per_photo"] = median([r["cpu_s"] * 1000 / r["tagged"] for r in results])
    out["first_done_s"] = median([r["first_done_s"] or math.nan for r in results])
    out["steady_photos_per_s"] = median([r["steady_photos_per_s"] or math.nan for r in results])
    out["steady_ratio"] = ratio(out["steady_photos_per_s"], bound)
    out.update(_marginal(results, bound))
    out["peak_pss_mb"] = math.nan if warmup_pss_mb is None else warmup_pss_mb
    out["peak_rss_mb"] = max(r["tree_peak_rss_mb"] for r in results)
    out["main_peak_rss_mb"] = max(r["main_peak_rss_mb"] for r in results)
    return out


def _marginal(results: list[dict[str, Any]], bound: float) -> dict[str, Any]:
    """Each round's full scan and scan of its first half (bound.marginal): medians of the
    second half's photos/s and of the start-up; nan without half scans."""
    pairs = [
        marginal(r["tagged"], r["wall_s"], r["half"]["tagged"], r["half"]["wall_s"])
        for r in results
        if "half" in r
    ]
    rates = [rate for rate, _ in pairs if math.isfinite(rate)]
    rate = median(rates)
    halves = [r["half"]["photos_per_s"] for r in results if "half" in r]
    return {
        "half_photos_per_s": median(halves),
        "marginal_photos_per_s": rate,
        "marginal_rounds": rates,
        "marginal_ratio": ratio(rate, bound),
        "startup_s": median([startup for _, startup in pairs if math.isfinite(startup)]),
    }


NAME_WIDTH = 46


def _row(name: str, rate: float | None, note: str = "", *, ms: bool = True) -> str:
    """measure | photos/s | ms per photo (1000 / photos/s; ``ms`` False: none) | note."""
    ok = rate is not None and math.isfinite(rate) and rate > 0
    rate_s = f"{rate:9.1f}" if ok else f"{'—':>9}"
    ms_s = f"{1000 / rate:8.1f}" if ok and ms else f"{'—':>8}"
    return f"{name:<{NAME_WIDTH}} | {rate_s} | {ms_s} | {note}"


def _core_row(name: str, ms: float, cores: int, extra: str = "") -> str:
    """A core-time: photos/s if every core did only this; its ms is the core-time."""
    rate_s = f"{cores * 1000 / ms:9.1f}" if ms > 0 else f"{'—':>9}"
    return f"{name:<{NAME_WIDTH}} | {rate_s} | {ms:8.1f} | (input) cores ÷ core-time{extra}"


def set_rows(s: dict[str, Any], cores: int, workers: int) -> list[str]:
    """The table of one photo set."""
    rows = [
        f"{'measure':<{NAME_WIDTH}} | {'photos/s':>9} | {'ms':>8} | ratio to its bound",
        "-" * NAME_WIDTH + "-|-----------|----------|-------------------------",
        _core_row("decode core-time (load_photo + tensor_from)", s["decode_core_ms"], cores),
        _core_row(
            "write core-time (write_photo, facts included)",
            s["write_core_ms"],
            cores,
            f"; one write takes {s['writer_wall_ms']:.1f} ms wall",
        ),
        _row(
            f"decode pool ({workers} workers)",
            s["decode_pool_bound"],
            "(info) workers ÷ decode core-time",
            ms=False,
        ),
        _row("BOUND with writes", s["bound_writes"], "1.00"),
        _row("BOUND without writes", s["bound_no_writes"], "1.00"),
    ]
    if math.isfinite(s["bound_writes_amx_off"]):
        rows += [
            _row("BOUND with writes, AMX off", s["bound_writes_amx_off"], "1.00"),
            _row("BOUND without writes, AMX off", s["bound_no_writes_amx_off"], "1.00"),
        ]
    for mode, scan in s["scans"].items():
        which = "without writes" if "no writes" in mode else "with writes"
        which += ", AMX off" if "AMX off" in mode else ""
        rows.append(
            _row(f"end-to-end scan, {mode}", scan["photos_per_s"], f"{scan['ratio']:.2f} ({which})")
        )
        marginal = scan["marginal_photos_per_s"]
        if math.isfinite(marginal):  # start-up left out: the pipeline's own rate
            rows.append(
                _row(
                    "  … its second half (start-up left out)",
                    marginal,
                    f"{scan['marginal_ratio']:.2f} ({which}); start-up {scan['startup_s']:.1f} s",
                )
            )
    if s["naive"]:
        naive = s["naive"]
        rows.append(
            _row(
                "naive loop (full decode, fp32, batch 1)",
                naive["photos_per_s"],
                f"{naive['ratio']:.2f} (without writes)",
            )
        )
    return rows + set_notes(s)


def set_notes(s: dict[str, Any]) -> list[str]:
    notes = [
        f"  {suffix}: decode {ms['decode']:.1f} ms, write {ms['write']:.1f} ms core-time per photo"
        for suffix, ms in s["by_format_ms"].items()
    ]
    for mode, scan in s["scans"].items():
        notes.append(
            f"  scan {mode}: peak memory of its process tree {scan['peak_rss_mb']:.0f} MB RSS "
            f"({scan['peak_rss_mb'] / RSS_TARGET_MB:.2f} of the 2 GB target), "
            f"{scan['peak_pss_mb']:.0f} MB PSS (warm-up round); scan process alone "
            f"{scan['main_peak_rss_mb']:.0f} MB (VmHWM) · "
            f"{scan['cpu_ms_per_photo']:.1f} ms CPU per photo · "
            f"first photo done after {scan['first_done_s']:.1f} s{_after(scan)}"
        )
    return notes


def _after(scan: dict[str, Any]) -> str:
    steady = scan["steady_photos_per_s"]
    return f", {steady:.1f} photos/s after it" if math.isfinite(steady) else ""


def table(summary: dict[str, Any], info: dict[str, Any], header: str, notes: list[str]) -> str:
    lines = [header, *notes, ""]
    lines.append(f"model only, batch {summary['batch']}: {summary['model_rate']:.1f} img/s")
    if math.isfinite(summary["model_rate_amx_off"]):
        lines.append(
            f"model only with AMX off ({AMX_OFF_ENV['ONEDNN_MAX_CPU_ISA']}, measured in its own "
            f"process): {summary['model_rate_amx_off']:.1f} img/s"
        )
    for name, s in summary["sets"].items():
        width, height = s["size_px"]
        lines += [
            "",
            f"{name}: {s['photos']} photos of {width}x{height} px, "
            f"{s['mean_file_mb']:.1f} MB each on average",
        ]
        lines += set_rows(s, info["cores"], summary["decode_workers"])
    return "\n".join(lines)


def header_line(info: dict[str, Any], args: argparse.Namespace, touched: float) -> str:
    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    gpu = f" ({info['gpu']})" if info["gpu"] else ""
    return (
        f"photoscribe scan benchmark · {info['cpu']} · {info['cores']} cores · "
        f"torch {info['torch']} (CPU capability {info['torch_cpu_capability']}) · "
        f"device {info['device']}{gpu} · precision {info['precision']} · {args.arch}\n"
        f"CPU flags: AMX {yes(info['amx'])}, AVX512_BF16 {yes(info['avx512_bf16'])} · "
        f"{touched:.1f} GB of free memory touched once before measuring · "
        f"{args.warmup} warm-up round(s) discarded · median of {args.repeats} interleaved "
        f"round(s) · core-times: median over {args.sample} photos per round"
    )


# -- main ---------------------------------------------------------------------------------------
def prepare(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """The config and a loaded, warmed-up tagger (label embeddings cached on disk, where
    the scans' processes find them)."""
    import torch

    from photoscribe.config import config_from_dict
    from photoscribe.service import build_tagger

    config_dict = base_config(args, args.out / "cache")
    config = config_from_dict(config_dict)
    tagger = build_tagger(config)
    size = tagger.encoder.input_size()
    tagger.tag([torch.rand(3, size, size)] * config.model.batch_size)  # warm-up
    return config_dict, tagger


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    default_gb = min(mem_available_gb() / 2, 1.0 if args.quick else 8.0)
    touched = touch_memory(args.touch_gb if args.touch_gb is not None else default_gb)
    notes = [] if heic_available() or not args.mixed else ["pillow-heif missing: no HEIC"]
    args.out.mkdir(parents=True, exist_ok=True)
    sets = [(s, build_set(s, args.out / "photos")) for s in photo_sets(args)]
    work = Path(tempfile.mkdtemp(prefix="photoscribe-bench-"))
    try:
        config_dict, tagger = prepare(args)
        info = machine_info(args, tagger.encoder.model.load())
        modes, mode_notes = scan_modes(args, config_dict, info)
        bench = Bench(args, config_dict, tagger, sets, work, modes=modes)
        bench.naive = (
            naive_encoder(config_dict) if any(s.formats == ("jpeg",) for s, _ in sets) else None
        )
        for r in range(args.warmup + args.repeats):
            bench.round(keep=r >= args.warmup)
        summary = summarise(bench, info)
        summary["batch"] = bench.tagger_batch()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(summary, info, header_line(info, args, touched), notes + mode_notes))
    if args.json:
        record = {"machine": info, "args": _jsonable(vars(args)), "touched_gb": touched}
        args.json.write_text(json.dumps(record | summary, indent=1, default=str))
    return 0


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}


def run_main() -> int:
    from photoscribe.errors import PhotoscribeError

    try:
        return main()
    except PhotoscribeError as exc:  # e.g. --device cuda on a machine without a GPU
        print(f"bench_scan: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(run_main())
