"""Soak: the real daemon for N minutes while the library and the LLM misbehave.

    .venv/bin/python bench/soak.py [--minutes 20] [--seed N] [--rate 2] [--kills 3]

`photoscribe run` (a subprocess, the committed tiny CLIP) watches a temp folder while a
generator adds, edits (pixels, and keywords with exiftool), moves, renames and deletes
photos and whole folders and imports slow "camera cards"; the fake LLM server goes down,
answers 500s and answers slowly by turns; the daemon is SIGKILLed ``--kills`` times over
the first half and SIGTERMed once at the half, restarted each time. When the generator
stops and the daemon has drained, every invariant of tests/fixtures/soak.py is checked
and one table is printed (exit status 1 when an invariant failed). The driver is shared
with tests/test_soak.py (about a minute, in CI).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT / "tests")]

from fixtures.soak import Soak, table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--rate", type=float, default=2.0, help="generator events per second")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs in the first half")
    parser.add_argument("--max-photos", type=int, default=250)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    work = Path(tempfile.mkdtemp(prefix="photoscribe-soak-"))
    print(f"soak: {args.minutes:g} min, seed {seed}, work folder {work}", flush=True)
    soak = Soak(
        work,
        minutes=args.minutes,
        seed=seed,
        events_per_second=args.rate,
        max_photos=args.max_photos,
        kills=args.kills,
    )
    result = soak.run(log=lambda line: print(line, flush=True))
    print(table(result))
    if not result.ok:
        print(f"FAILED (seed {seed}; work folder kept: {work}):\n{result.failures()}")
        return 1
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
