"""Chinese segmentation for full-text search: photoscribe's two-character pieces vs jieba.

Prints, for each segmenter, the start-up cost (import + dictionary load, and the RSS it
adds), the indexing speed, and which queries find which captions in a real SQLite FTS5
table (unicode61 over the segmented text, as photoscribe stores it). jieba is optional:
``pip install jieba`` (or put it on PYTHONPATH) to include it.

    PYTHONPATH=daemon python bench/bench_segment.py
"""

from __future__ import annotations

import resource
import sqlite3
import time
from collections.abc import Callable

from machine import cpu_name
from photoscribe.segment import CJK_RUN, index_text, query_pieces

CAPTIONS = {
    "beach": "今天去海边玩了，天气很好。",
    "cat": "一只猫坐在沙发上。",
    "kitten": "小猫在地板上睡觉。",
    "sofa": "客厅里有一张灰色的沙发。",
    "border": "上海边境的一个小镇。",  # 上海|边境: 海边 is not a word here
    "dog": "一只狗在海滩上奔跑 with a red ball.",
}
# query → the captions a user expects
EXPECTED = {
    "海边": {"beach"},
    "猫": {"cat", "kitten"},
    "沙发": {"cat", "sofa"},
    "小猫": {"kitten"},
    "海滩": {"dog"},
    "狗 ball": {"dog"},
    "猫 沙发": {"cat"},
    "上海": {"border"},
    "边境": {"border"},
}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pieces_query(text: str) -> str:
    parts = []
    for word in text.split():
        runs = CJK_RUN.findall(word)
        parts += [f'"{query_pieces(r)}"' for r in runs] or [f'"{word}"']
    return " AND ".join(parts)


def run(name: str, index: Callable[[str], str], query: Callable[[str], str]) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(name UNINDEXED, text)")
    for key, caption in CAPTIONS.items():
        db.execute("INSERT INTO t VALUES (?, ?)", (key, index(caption)))
    right = 0
    for text, want in EXPECTED.items():
        got = {r[0] for r in db.execute("SELECT name FROM t WHERE t MATCH ?", (query(text),))}
        ok = got == want
        right += ok
        print(f"  {name:8} {text:8} {'ok ' if ok else 'BAD'} found {sorted(got)}")
    sample = "".join(CAPTIONS.values()) * 20
    start = time.perf_counter()
    for _ in range(200):
        index(sample)
    per_mb = (time.perf_counter() - start) / (200 * len(sample.encode()) / 1e6)
    print(f"  {name}: {right}/{len(EXPECTED)} queries right; indexing {1 / per_mb:.1f} MB/s")


def main() -> None:
    print(f"CPU: {cpu_name()}")
    base = rss_mb()
    run("pieces", index_text, pieces_query)
    try:
        start = time.perf_counter()
        import jieba

        jieba.setLogLevel(60)
        imported = time.perf_counter() - start
        jieba.initialize()
        loaded = time.perf_counter() - start
    except ImportError:
        print("jieba: not installed, skipped")
        return
    print(
        f"jieba {jieba.__version__}: import {imported * 1000:.0f} ms, import + dictionary "
        f"{loaded * 1000:.0f} ms, peak RSS +{rss_mb() - base:.0f} MB"
    )

    def jieba_index(text: str) -> str:
        return " ".join(w for w in jieba.cut_for_search(text) if w.strip())

    def jieba_query(text: str) -> str:
        words = [w for w in jieba.cut(text) if w.strip()]
        return " AND ".join(f'"{w}"' for w in words if any(c.isalnum() for c in w))

    run("jieba", jieba_index, jieba_query)


if __name__ == "__main__":
    main()
