"""Writes per photo in one scan, at a fast and a slow LLM: counted from the journal.

    .venv/bin/python bench/bench_caption_writes.py [--photos 300] [--latency 0,0.02]
    .venv/bin/python bench/bench_caption_writes.py --photos 40 --latency 2   # slower than the wait

A real `scan` (the tiny CLIP of the tests, real metadata writes) of ``--photos`` JPEGs,
captions from the fake OpenAI server answering after each ``--latency`` (seconds), at
the default ``llm.concurrency`` and ``llm.caption_wait``. Prints, per latency, how many
photos were written once / twice, and when the last keyword write and the last write
happened (seconds from the scan's start).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).parent.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT / "tests")]


def one_scan(photos: int, latency: float) -> dict:
    from photoscribe.config import config_from_dict
    from photoscribe.progress import Progress
    from photoscribe.service import scan

    from conftest import tiny_config_dict
    from fakes.openai_server import FakeOpenAI
    from fixtures.daemon import write_photo

    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI() as llm:
        folder = Path(tmp) / "photos"
        for i in range(photos):
            write_photo(folder / f"p{i:04d}.jpg", i, size=(320, 240))
        if latency > 0:
            llm.set_behavior("slow", delay=latency)
        raw = tiny_config_dict(Path(tmp), llm.base_url)
        raw["llm"] |= {"timeout": 60 + latency, "retries": 0}
        config = config_from_dict(raw)
        started = time.time()
        summary = scan(config, [folder], progress=Progress(bar=False))
        with sqlite3.connect(config.index_path) as db:
            query = "SELECT path, changes, written_at FROM journal ORDER BY id"
            rows = db.execute(query).fetchall()
    per_photo = Counter(path for path, _, _ in rows)
    keyword_writes = [t for _, c, t in rows if "Xmp.dc.subject" in json.loads(c)]
    return {
        "latency": latency,
        "writes": Counter(per_photo.values()),
        "last_keywords_s": max(keyword_writes) - started,
        "last_write_s": max(t for _, _, t in rows) - started,
        "captioned": summary.captioned,
        "requests": len(llm.requests),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--latency", default="0,0.02")
    args = parser.parse_args()
    print(f"{args.photos} photos, tiny CLIP, fake LLM; writes per photo from the journal")
    print("latency | once | twice | more | captions | requests | last keywords | last write")
    for latency in (float(x) for x in args.latency.split(",")):
        r = one_scan(args.photos, latency)
        more = sum(n for k, n in r["writes"].items() if k > 2)
        print(
            f"{latency:6.2f}s | {r['writes'][1]:4d} | {r['writes'][2]:5d} | {more:4d} | "
            f"{r['captioned']:8d} | {r['requests']:8d} | {r['last_keywords_s']:11.1f} s | "
            f"{r['last_write_s']:8.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
