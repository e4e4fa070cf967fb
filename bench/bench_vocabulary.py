"""How long loading the vocabulary takes (`photoscribe labels` and the daemon start pay it).

Writes a synthetic 2,500-concept TSV in the shipped format (3 levels of parents, en + zh
names, aliases) plus a 100-line user override file, then times, median of N runs:
- the bound: reading the file and splitting it into cells (no checks, no objects);
- load_vocabulary of the file alone, with the overrides and a blocklist;
- the `photoscribe labels` process end to end (python start + imports + load + listing),
  beside a bare python start.

    PYTHONPATH=daemon python bench/bench_vocabulary.py [--concepts 2500] [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name

HEADER = "id\tparents\tprompts\tname.en\tname.zh\taliases.en\taliases.zh\tthreshold\tgroup\tflags"


def zh(n: int) -> str:
    return "".join(chr(0x4E00 + (n * 7 + k * 131) % 20000) for k in range(3)) + str(n)


def synthetic(concepts: int) -> str:
    lines = ["# synthetic", HEADER]
    for n in range(concepts):
        parent = "" if n < 20 else f"c{n // 20 if n < 400 else 20 + n % 380}"
        flags = "parent_only" if n < 5 else ""
        prompts = "" if flags else f"thing {n};a photo of thing {n}"
        row = [
            f"c{n}",
            parent,
            prompts,
            f"thing {n}",
            zh(n),
            f"item {n}",
            zh(n + 99991),
            "",
            "",
            flags,
        ]
        lines.append("\t".join(row))
    return "\n".join(lines) + "\n"


def timed(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--concepts", type=int, default=2500)
    p.add_argument("--runs", type=int, default=9)
    args = p.parse_args()
    from photoscribe.vision.vocabulary import load_vocabulary

    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "vocabulary.tsv"
        table.write_text(synthetic(args.concepts), encoding="utf-8")
        mine = Path(tmp) / "mine.tsv"
        mine.write_text(
            "id\tname.zh\tthreshold\n" + "".join(f"c{n}\t我的{n}\t0.3\n" for n in range(100, 200)),
            encoding="utf-8",
        )
        config = Path(tmp) / "config.yaml"
        config.write_text(f"tagging:\n  labels_file: {table}\n", encoding="utf-8")

        def bound() -> None:
            text = table.read_text(encoding="utf-8")
            [line.split("\t") for line in text.splitlines()]

        cli = [sys.executable, "-m", "photoscribe", "-c", str(config), "labels", "thing 42"]
        rows = [
            ("read + split (bound)", timed(bound, args.runs)),
            ("load_vocabulary", timed(lambda: load_vocabulary(table), args.runs)),
            (
                "+ overrides + disable",
                timed(lambda: load_vocabulary(table, mine, ("c300", "c301")), args.runs),
            ),
            (
                "python start (process bound)",
                timed(
                    lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), args.runs
                ),
            ),
            (
                "`photoscribe labels` process",
                timed(lambda: subprocess.run(cli, check=True, capture_output=True), args.runs),
            ),
        ]
    base = rows[0][1]
    print(f"vocabulary load, {args.concepts} concepts, median of {args.runs}; CPU: {cpu_name()}")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'what':32} {'ms':>9} {'× bound':>9}")
    for name, seconds in rows:
        print(f"{name:32} {seconds * 1000:9.1f} {seconds / base:9.1f}")


if __name__ == "__main__":
    main()
