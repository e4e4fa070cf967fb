"""Torch intra-op threads against decode worker processes: end-to-end scan photos/s.

The decode workers are separate processes; torch's threads run in the scanning process.
When both want every core they fight for it, and on a small machine throughput collapses.
This runs a whole scan (photoscribe.service.scan, no LLM, a randomly initialised model as
bench_scan.py builds it, precision fp32) for each combination of torch threads and
scan.decode_workers, on a fresh copy of the photos and a fresh index each time. Rounds
go through every combination in turn, so a busy machine slows them alike; each figure is
the median of the rounds. "rule" is what vision/threads.py picks for that many workers.

    .venv/bin/python bench/bench_threads.py [--photos 48] [--rounds 3] [--size 4000x3000]
        [--threads 1,2,N] [--workers 1,2,3] [--arch ViT-B-32]
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_scan import random_weights  # noqa: E402
from machine import cpu_name  # noqa: E402


def make_noisy_photos(folder: Path, count: int, size: tuple[int, int]) -> None:
    """``count`` distinct JPEGs of ``size``: scikit-image's photos, upscaled, with sensor-like
    noise (noise is what makes a real 12 MP JPEG big and slow to decode)."""
    import numpy as np
    import skimage.data
    from PIL import Image

    sources = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        base = Image.fromarray(np.roll(sources[i % len(sources)], i, axis=1)).convert("RGB")
        pixels = np.asarray(base.resize(size), dtype=np.int16)
        noise = rng.integers(-12, 13, size=pixels.shape, dtype=np.int16)
        noisy = np.clip(pixels + noise, 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"photo_{i:04d}.jpg", quality=92)


def scan_rate(config_dict: dict, photos: Path, work: Path, count: int) -> float:
    """photos/s of one whole scan of a fresh copy of ``photos`` into a fresh index."""
    from photoscribe.config import config_from_dict
    from photoscribe.progress import Progress
    from photoscribe.service import scan

    folder = work / "round"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(photos, folder)
    index = Path(config_dict["index_path"])
    for suffix in ("", "-wal", "-shm"):
        Path(str(index) + suffix).unlink(missing_ok=True)
    config = config_from_dict(config_dict)
    started = time.perf_counter()
    summary = scan(config, [folder], progress=Progress(bar=False), captions=False)
    elapsed = time.perf_counter() - started
    assert summary.tagged == count, summary
    return count / elapsed


OUT = ROOT / "bench" / "out"


def config_for(work: Path, weights: Path, arch: str, threads: int, workers: int) -> dict:
    return {
        "index_path": str(work / "index.sqlite3"),
        "cache_dir": str(OUT / "cache"),  # label embeddings: computed once, kept
        "model": {
            "arch": arch,
            "pretrained": str(weights),
            "precision": "fp32",
            "threads": threads,
        },
        "scan": {"decode_workers": workers},
        "llm": {"enabled": False},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="4000x3000", help="photo size, WxH")
    parser.add_argument("--threads", default="1,2,N", help="torch threads; N = every core")
    parser.add_argument("--workers", default="1,2,3", help="scan.decode_workers values")
    parser.add_argument("--arch", default="ViT-B-32")
    args = parser.parse_args()
    from photoscribe.vision.threads import available_cores, torch_threads

    cores = available_cores()
    size = tuple(int(x) for x in args.size.split("x"))
    thread_counts = sorted({cores if t == "N" else int(t) for t in args.threads.split(",")})
    worker_counts = [int(w) for w in args.workers.split(",")]
    combos = [(t, w) for w in worker_counts for t in thread_counts]

    work = Path(tempfile.mkdtemp(prefix="photoscribe-threads-"))
    try:
        make_noisy_photos(work / "photos", args.photos, size)  # type: ignore[arg-type]
        weights = random_weights(args.arch, OUT)
        warm = config_for(work, weights, args.arch, cores, 1)
        scan_rate(warm, work / "photos", work, args.photos)  # caches label embeddings
        rates: dict[tuple[int, int], list[float]] = {c: [] for c in combos}
        for _ in range(args.rounds):
            for t, w in combos:
                config = config_for(work, weights, args.arch, t, w)
                rates[(t, w)].append(scan_rate(config, work / "photos", work, args.photos))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nphotoscribe threads × decode workers · {args.arch} fp32 · {args.photos} photos of "
        f"{args.size} · {cpu_name()} · {cores} cores · median of {args.rounds} rounds"
    )
    print("torch threads | decode workers | photos/s | vs best | rule")
    print("--------------|----------------|----------|---------|-----")
    best = max(statistics.median(r) for r in rates.values())
    for t, w in combos:
        rate = statistics.median(rates[(t, w)])
        rule = "<-" if torch_threads(0, cores, w) == t else ""
        print(f"{t:13d} | {w:14d} | {rate:8.2f} | {rate / best:7.2f} | {rule}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
