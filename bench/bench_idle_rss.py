"""What the daemon's idle unload gives back: resident memory (RSS) at each stage.

    .venv/bin/python bench/bench_idle_rss.py [--models tiny,ViT-B-32] [--photos 64]

Each model is measured in a fresh process, along the daemon's own path: photoscribe
imported (no torch yet), ``import torch`` + open_clip, the model loaded with its label
matrix, ``--photos`` photos tagged and written through the real Pipeline, then
``ClipModel.unload()`` (which drops the model, collects garbage and, on glibc, calls
``malloc_trim(0)``); each model also once with that trim left out ("no-trim"), as
unload() was before. Two more rows show what is left: the label matrix and the
pipeline dropped too, and what ``import torch`` alone costs in a process that never
loads a model (the floor an in-process model cannot go below; only a subprocess that
exits would). ViT-B-32 gets randomly initialised weights (built once into bench/out/,
as bench_scan.py does); memory does not depend on the weights' values.

Prints one table (MiB of VmRSS; RssAnon in brackets).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BENCH = Path(__file__).parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT / "tests"), str(BENCH)]
TINY = ROOT / "tests" / "fixtures" / "tiny_clip"
STAGES = (
    ("start", "photoscribe imported"),
    ("torch", "+ import torch, open_clip"),
    ("loaded", "model + labels loaded"),
    ("tagged", "after tagging"),
    ("unloaded", "after unload()"),
    ("dropped", "+ labels, pipeline dropped"),
)


def rss() -> tuple[float, float]:
    """(VmRSS, RssAnon) of this process in MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["RssAnon"]


def model_section(name: str) -> dict:
    if name == "tiny":
        return {
            "arch": "tiny-clip",
            "pretrained": str(TINY / "tiny-clip.safetensors"),
            "config_dir": str(TINY),
        }
    from bench_scan import random_weights

    return {"arch": name, "pretrained": str(random_weights(name))}


def child(name: str, photos: int, trim: bool) -> dict[str, tuple[float, float]]:
    from photoscribe.config import config_from_dict
    from photoscribe.progress import Progress
    from photoscribe.vision import ClipModel, Encoder, Tagger
    from photoscribe.vision.model import trim_heap

    found = {"start": rss()}
    import open_clip  # noqa: F401
    import torch  # noqa: F401

    found["torch"] = rss()
    with tempfile.TemporaryDirectory() as tmp:
        section = model_section(name) | {"threads": os.cpu_count() or 1}
        raw = {
            "index_path": f"{tmp}/index.sqlite3",
            "cache_dir": f"{tmp}/cache",
            "model": section,
            "llm": {"enabled": False},
        }
        if name == "tiny":
            raw["tagging"] = {"labels_file": str(TINY / "labels.txt")}
        config = config_from_dict(raw)
        model = ClipModel(config.model, trim=trim_heap if trim else lambda: None)
        tagger = Tagger(Encoder(model), config.tagging, config.cache_dir)
        tagger.encoder.model.load()
        tagger.label_matrix()
        found["loaded"] = rss()
        paths = make_photos(Path(tmp) / "photos", photos)
        pipeline, store = tag(config, tagger, paths, Progress(bar=False))
        found["tagged"] = rss()
        tagger.encoder.model.unload()
        found["unloaded"] = rss()
        tagger._label_matrix = None  # what a reload recomputes from the disk cache
        del pipeline
        store.close()
        gc.collect()
        if trim:
            trim_heap()
        found["dropped"] = rss()
    return found


def tag(config, tagger, paths: list[Path], progress):
    from photoscribe.pipeline import Pipeline
    from photoscribe.service import build_captions, build_writer_factory
    from photoscribe.store import open_store

    store = open_store(config.index_path)
    pipeline = Pipeline(
        store,
        tagger,
        build_captions(config),
        build_writer_factory(config, store),
        progress,
        batch_size=config.model.batch_size,
        decode_workers=config.scan.decode_workers,
    )
    pipeline.process(paths)
    pipeline.flush()
    return pipeline, store


def make_photos(folder: Path, count: int) -> list[Path]:
    from fixtures.daemon import write_photo

    return [write_photo(folder / f"p{i:03d}.jpg", i, size=(640, 480)) for i in range(count)]


def floor() -> dict[str, tuple[float, float]]:
    """A process that imports torch and open_clip and nothing else."""
    code = (
        "import open_clip, torch, json\n"
        "from pathlib import Path\n"
        "s = dict(l.split(':', 1) for l in Path('/proc/self/status').read_text().splitlines())\n"
        "print(json.dumps([int(s[k].split()[0]) / 1024 for k in ('VmRSS', 'RssAnon')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"torch": tuple(json.loads(out.stdout))}


def measure(column: str, photos: int) -> dict[str, tuple[float, float]]:
    name, _, variant = column.partition(" ")
    cmd = [sys.executable, __file__, "--child", name, "--photos", str(photos)]
    cmd += ["--no-trim"] if variant == "no-trim" else []
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name}: the measuring process failed:\n{out.stderr[-3000:]}")
    return {k: tuple(v) for k, v in json.loads(out.stdout.splitlines()[-1]).items()}


def print_table(results: dict[str, dict[str, tuple[float, float]]], photos: int) -> None:
    names = list(results)
    print(f"RSS in MiB (RssAnon), {photos} photos tagged, {os.cpu_count()} CPUs")
    print(f"{'stage':<30}" + "".join(f"{n:>20}" for n in names))
    for key, label in STAGES:
        cells = "".join(f"{_cell(results[n].get(key)):>20}" for n in names)
        print(f"{label:<30}{cells}")
    print(f"{'only import torch, open_clip':<30}{_cell(floor()['torch']):>20}")


def _cell(value: tuple[float, float] | None) -> str:
    return "-" if value is None else f"{value[0]:.0f} ({value[1]:.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,ViT-B-32")
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--no-trim", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.photos, not args.no_trim)))
        return 0
    columns = [f"{m}{v}" for m in args.models.split(",") for v in (" no-trim", "")]
    results = {column: measure(column, args.photos) for column in columns}
    print_table(results, args.photos)
    return 0


if __name__ == "__main__":
    sys.exit(main())
