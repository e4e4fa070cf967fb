"""Scan throughput: decode, model, metadata write and end-to-end photos/s, peak memory.

Speed does not depend on the weights' values, so this benchmark builds a randomly
initialised ViT-B-32 (the default architecture) into bench/out/ — explicitly, for
timing only; the product never falls back to random weights. Photos are 12 MP JPEGs
made from the real photos scikit-image ships, upscaled.

    .venv/bin/python bench/bench_scan.py [--photos 48] [--repeats 3] [--arch ViT-B-32]

Prints one table; each figure is the median of the repeats.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OUT = Path(__file__).parent / "out"


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    import numpy as np
    import skimage.data
    from PIL import Image

    sources = [
        skimage.data.astronaut(),
        skimage.data.chelsea(),
        skimage.data.coffee(),
        skimage.data.rocket(),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        # rolled by i pixels: every photo distinct, so none is skipped as a copy of another
        pixels = np.roll(sources[i % len(sources)], i, axis=1)
        img = Image.fromarray(pixels).convert("RGB").resize(size)
        path = folder / f"photo_{i:04d}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def random_weights(arch: str) -> Path:
    import open_clip
    import torch
    from safetensors.torch import save_file

    path = OUT / f"{arch}-random-init.safetensors"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        torch.manual_seed(0)
        model = open_clip.create_model(arch, pretrained=None)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_decode(paths: list[Path], repeats: int) -> dict[str, float]:
    from PIL import Image

    from photoscribe.vision.loader import decode

    data = [p.read_bytes() for p in paths[:8]]

    def full() -> None:
        for d in data:
            Image.open(io.BytesIO(d)).convert("RGB").resize((224, 224))

    def draft() -> None:
        for d in data:
            decode(d, 224).resize((224, 224))

    return {
        "decode full (img/s)": len(data) / median_time(full, repeats),
        "decode draft (img/s)": len(data) / median_time(draft, repeats),
    }


def bench_model(tagger, repeats: int, batch: int) -> dict[str, float]:
    import torch

    tensors = [torch.rand(3, 224, 224) for _ in range(batch)]
    tagger.tag(tensors)  # warm-up
    return {
        f"model only, batch {batch} (img/s)": batch
        / median_time(lambda: tagger.tag(tensors), repeats)
    }


def bench_write(paths: list[Path], repeats: int) -> dict[str, float]:
    from photoscribe.contenthash import content_hash
    from photoscribe.metadata import write_annotation
    from photoscribe.records import Annotation

    targets = paths[:8]
    hashes = [content_hash(p.read_bytes()) for p in targets]
    counter = iter(range(10_000))

    def write_all() -> None:
        n = next(counter)
        for path, digest in zip(targets, hashes, strict=True):
            ann = Annotation((f"kw{n}", "bench"), f"caption {n}", "bench", digest)
            write_annotation(path, ann, expected_hash=digest)

    return {"metadata write (files/s)": len(targets) / median_time(write_all, repeats)}


def bench_scan(config_dict: dict, folder: Path, repeats: int, count: int) -> dict[str, float]:
    from photoscribe.config import config_from_dict
    from photoscribe.progress import Progress
    from photoscribe.service import scan

    def once() -> None:
        index = Path(config_dict["index_path"])
        index.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(str(index) + suffix).unlink(missing_ok=True)
        summary = scan(
            config_from_dict(config_dict), [folder], progress=Progress(bar=False), captions=False
        )
        assert summary.tagged == count, summary

    once()  # warm-up: label embeddings cached, model loaded into page cache
    return {"end-to-end scan, no LLM (photos/s)": count / median_time(once, repeats)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--size", default="4000x3000", help="photo size, WxH")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))

    work = Path(tempfile.mkdtemp(prefix="photoscribe-bench-"))
    try:
        paths = make_photos(work / "photos", args.photos, size)  # type: ignore[arg-type]
        config_dict = {
            "index_path": str(work / "index.sqlite3"),
            "cache_dir": str(work / "cache"),
            "model": {"arch": args.arch, "pretrained": str(random_weights(args.arch))},
            "llm": {"enabled": False},
        }
        from photoscribe.config import config_from_dict
        from photoscribe.service import build_tagger

        tagger = build_tagger(config_from_dict(config_dict))
        rows: dict[str, float] = {}
        rows |= bench_decode(paths, args.repeats)
        rows |= bench_model(tagger, args.repeats, 16)
        rows |= bench_write(paths, args.repeats)
        rows |= bench_scan(config_dict, work / "photos", args.repeats, args.photos)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows["peak RSS (MB)"] = peak_mb
        print_table(rows, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(rows: dict[str, float], args: argparse.Namespace) -> None:
    print(
        f"\nphotoscribe scan benchmark · {args.arch} · {args.photos} photos of {args.size} · "
        f"{os.cpu_count()} cores · median of {args.repeats}"
    )
    width = max(len(k) for k in rows)
    print(f"{'measure'.ljust(width)} | value")
    print(f"{'-' * width}-|-------")
    for key, value in rows.items():
        print(f"{key.ljust(width)} | {value:8.1f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent.parent / "daemon"))
    raise SystemExit(main())
