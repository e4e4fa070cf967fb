"""Search at scale: synthetic indexes of N photos (random unit embeddings, generated
Chinese/English captions and keywords, folder names, cameras, dates) built through the
real migrations, then text, CLIP and fused search timed on them.

    PYTHONPATH=daemon nice python bench/bench_search.py --photos 100000 1000000

For each size: build time (rows + full-text; then the embedding cache), index and cache
size on disk, query p50/p95 (ms) for text, CLIP and fused top 50 with the query embedding
excluded, recall@50 of the cached CLIP ranking against an exact scan, and the peak RSS of
a fresh process that loads the cache and runs the queries. Speed targets are printed as
the ratio measured/target (≤ 1 meets it) because the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from machine import cpu_name
from photoscribe.records import Keyword
from photoscribe.search import SearchQuery, search
from photoscribe.search.cache import VectorCache
from photoscribe.store import fulltext, open_store
from photoscribe.store.photos import keywords_json

TARGET_P95_MS = {100_000: 30.0, 1_000_000: 100.0}
TARGET_RSS_MB = {1_000_000: 600.0}
SUBJECTS = [
    ("猫", "cat"),
    ("狗", "dog"),
    ("孩子", "child"),
    ("汽车", "car"),
    ("花", "flower"),
    ("山", "mountain"),
    ("海滩", "beach"),
    ("沙发", "sofa"),
    ("鸟", "bird"),
    ("船", "boat"),
]
PLACES = [
    ("海边", "by the sea"),
    ("公园里", "in the park"),
    ("客厅里", "in the living room"),
    ("街上", "in the street"),
    ("山上", "on the mountain"),
    ("湖边", "by the lake"),
]
ACTIONS = [("玩耍", "playing"), ("睡觉", "sleeping"), ("奔跑", "running"), ("休息", "resting")]
CAMERAS = ["Canon EOS R5", "Apple iPhone 13", "NIKON D750", "SONY ILCE-7M3", "FUJIFILM X-T4"]
TEXT_QUERIES = [
    "猫",
    "海边",
    "沙发",
    "猫 沙发",
    "dog beach",
    "running",
    "狗在海边",
    "flower park",
    "孩子 -汽车",
    "mountain*",
]
BATCH = 10_000


def rss_mb() -> float:
    """Peak RSS of this process image. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    an exec, so a child of the (big) building process would report the builder's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def caption(rng: random.Random) -> tuple[str, list[str]]:
    (zs, es), (zp, ep), (za, ea) = rng.choice(SUBJECTS), rng.choice(PLACES), rng.choice(ACTIONS)
    if rng.random() < 0.5:
        return f"一只{zs}在{zp}{za}，阳光很好。", [zs, es]
    return f"A {es} {ea} {ep} on a sunny day.", [es, zs]


def build(path: Path, n: int, dim: int, seed: int = 0) -> float:
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    start = time.perf_counter()
    store = open_store(path)  # the real migrations
    day0 = datetime(2015, 1, 1)
    cols = (
        "path, size, mtime_ns, content_hash, state, model, keywords, keywords_text, "
        "caption, embedding, attempts, created_at, updated_at, date_taken, camera"
    )
    for first in range(0, n, BATCH):
        count = min(BATCH, n - first)
        vectors = nrng.standard_normal((count, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors.astype("<f2")
        rows = []
        for j in range(count):
            i = first + j
            text, labels = caption(rng)
            folder = f"/photos/{2015 + i % 10}/{rng.choice(['旅行', 'family', '日常', 'trips'])}"
            taken = (day0 + timedelta(minutes=i * 5)).strftime("%Y-%m-%dT%H:%M")
            kws = [Keyword(label, 0.9) for label in labels]
            rows.append(
                (
                    f"{folder}/IMG_{i:07d}.jpg",
                    1,
                    1,
                    f"h{i}",
                    "done",
                    "bench",
                    keywords_json(kws),
                    " ".join(labels),
                    text,
                    vectors[j].tobytes(),
                    0,
                    1.0,
                    1.0 + i,
                    taken,
                    rng.choice(CAMERAS),
                )
            )
        with store.transaction() as conn:
            conn.executemany(f"INSERT INTO photos ({cols}) VALUES ({', '.join('?' * 15)})", rows)
            fulltext.refresh(conn, "id > ?", (first,))
    store.close()
    return time.perf_counter() - start


def size_mb(*paths: Path) -> float:
    total = 0
    for p in paths:
        files = [p] if p.is_file() else (list(p.rglob("*")) if p.exists() else [])
        total += sum(f.stat().st_size for f in files if f.is_file())
    return total / 2**20


def percentiles(times: list[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 95) * 1000)


def exact_top(store, queries: np.ndarray, k: int) -> list[set[int]]:
    """The true top k of each query by a full scan of the stored float16 embeddings."""
    best_ids = [np.zeros(0, dtype=np.int64)] * len(queries)
    best_sims = [np.zeros(0, dtype=np.float32)] * len(queries)
    for rows in store.all_embeddings("bench"):
        ids = np.array([r[0] for r in rows])
        m = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f2").astype(np.float32)
        sims = m.reshape(len(ids), -1) @ queries.T
        for q in range(len(queries)):
            all_ids = np.concatenate([best_ids[q], ids])
            all_sims = np.concatenate([best_sims[q], sims[:, q]])
            keep = np.argsort(-all_sims)[:k]
            best_ids[q], best_sims[q] = all_ids[keep], all_sims[keep]
    return [set(b.tolist()) for b in best_ids]


def measure(path: Path, cache: Path, dim: int, queries: int) -> dict:
    """Runs in a fresh process: load the saved cache, time the queries, report peak RSS."""
    store = open_store(path, readonly=True)
    start = time.perf_counter()
    vectors = VectorCache(store, "bench", cache)
    vectors.refresh()
    loaded = time.perf_counter() - start
    rng = np.random.default_rng(99)
    qv = rng.standard_normal((queries, dim), dtype=np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    out: dict = {"cache_load_s": loaded, "cache_rebuilt": vectors.rebuilt}
    text, clip, fused = [], [], []
    for i in range(queries):
        words = TEXT_QUERIES[i % len(TEXT_QUERIES)]
        t = time.perf_counter()
        search(store, SearchQuery(words, 50, use_clip=False))
        text.append(time.perf_counter() - t)
        t = time.perf_counter()
        found = vectors.nearest(qv[i], 50)
        clip.append(time.perf_counter() - t)
        t = time.perf_counter()
        search(
            store,
            SearchQuery(words, 50),
            vectors=vectors,
            encode_text=lambda _t, v=qv[i]: v[None],
            min_similarity=-1.0,
        )
        fused.append(time.perf_counter() - t)
        out.setdefault("found", []).append([h[0] for h in found])
    out["text"], out["clip"], out["fused"] = (
        percentiles(text),
        percentiles(clip),
        percentiles(fused),
    )
    out["rss_mb"] = rss_mb()
    truth = exact_top(store, qv, 50)
    out["recall"] = float(
        np.mean([len(t & set(f)) / 50 for t, f in zip(truth, out.pop("found"), strict=True)])
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, nargs="+", default=[100_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/photoscribe-bench-search"))
    ap.add_argument("--measure", nargs=2, metavar=("DB", "CACHE"), help=argparse.SUPPRESS)
    ap.add_argument("--build-cache", nargs=2, metavar=("DB", "CACHE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_cache:  # in a fresh process, for its peak RSS
        t = time.perf_counter()
        store = open_store(Path(args.build_cache[0]), readonly=True)
        VectorCache(store, "bench", Path(args.build_cache[1])).refresh()
        print(json.dumps([time.perf_counter() - t, rss_mb()]))
        return
    if args.measure:
        print(
            json.dumps(
                measure(Path(args.measure[0]), Path(args.measure[1]), args.dim, args.queries)
            )
        )
        return
    print(
        f"CPU: {cpu_name()}; Python {platform.python_version()}; dim {args.dim}; "
        f"{args.queries} queries; top 50; query embedding excluded"
    )
    header = (
        "photos",
        "build s",
        "cache s",
        "cache RSS MB",
        "db MB",
        "cache MB",
        "text p50/p95",
        "load s",
        "clip p50/p95",
        "fused p50/p95",
        "p95/target",
        "recall@50",
        "RSS MB",
        "RSS/target",
    )
    print(" | ".join(header))
    for n in args.photos:
        folder = args.dir / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        db, cache = folder / "index.sqlite3", folder / "cache"
        built = build(db, n, args.dim) if not db.exists() else float("nan")  # nan: reused
        shutil.rmtree(cache, ignore_errors=True)
        done = subprocess.run(
            [sys.executable, __file__, "--build-cache", str(db), str(cache)],
            check=True,
            capture_output=True,
            text=True,
        )
        cached, cache_rss = json.loads(done.stdout.strip().splitlines()[-1])
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--dim",
                str(args.dim),
                "--queries",
                str(args.queries),
                "--measure",
                str(db),
                str(cache),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        m = json.loads(done.stdout.strip().splitlines()[-1])
        p95 = m["fused"][1]
        target = TARGET_P95_MS.get(n)
        rss_target = TARGET_RSS_MB.get(n)
        cells = (
            f"{n:,}",
            f"{built:.0f}",
            f"{cached:.1f}",
            f"{cache_rss:.0f}",
            f"{size_mb(db, db.with_name(db.name + '-wal')):.0f}",
            f"{size_mb(cache):.0f}",
            "{:.1f}/{:.1f}".format(*m["text"]),
            f"{m['cache_load_s']:.1f}{'*' if m['cache_rebuilt'] else ''}",
            "{:.1f}/{:.1f}".format(*m["clip"]),
            "{:.1f}/{:.1f}".format(*m["fused"]),
            f"{p95 / target:.2f}" if target else "-",
            f"{m['recall']:.3f}",
            f"{m['rss_mb']:.0f}",
            f"{m['rss_mb'] / rss_target:.2f}" if rss_target else "-",
        )
        print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
