"""Shared runner for the fuzz targets: atheris (libFuzzer) when installed, else a plain
deterministic loop over mutants of the seed corpus (tests/data/fuzz) and random bytes.

    python fuzz/fuzz_photoshop.py -runs=100000 CORPUS_DIR   # atheris, libFuzzer flags
    python fuzz/fuzz_photoshop.py --plain 5000              # no atheris: N inputs
"""

from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "tests" / "data" / "fuzz"
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT / "tests")]

try:
    import atheris
except ImportError:  # the plain loop below stands in
    atheris = None


def instrumented() -> contextlib.AbstractContextManager[object]:
    """Wrap the imports of the code under test (coverage feedback for atheris)."""
    return atheris.instrument_imports() if atheris is not None else contextlib.nullcontext()


def run(
    target: Callable[[bytes], None], argv: list[str], seeds: Path = SEEDS, max_len: int = 0
) -> None:
    """``max_len``: plain inputs are cut to this many bytes (0: as long as they come)."""
    if atheris is None or "--plain" in argv:
        runs = int(argv[argv.index("--plain") + 1]) if "--plain" in argv else 5000
        for data in plain_inputs(runs, seeds):
            target(data[:max_len] if max_len else data)
            target(data)
        print(f"{runs} inputs, no failure")
        return
    atheris.Setup(argv, target)
    atheris.Fuzz()


def plain_inputs(runs: int, folder: Path = SEEDS, seed: int = 0) -> Iterator[bytes]:
    """Mutants of the seed files in ``folder``, and every fourth input random bytes."""
    from fixtures.mutate import mutant

    rng = random.Random(seed)
    seeds = [p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()]
    for number in range(runs):
        choice = number % 4
        if choice == 3:
            yield rng.randbytes(rng.randint(0, 512))
        else:
            yield mutant(seeds[number % len(seeds)], number)
