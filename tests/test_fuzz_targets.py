"""The fuzz targets under fuzz/ run briefly: atheris (libFuzzer) where it is installed,
the plain deterministic loop always. Any unexpected exception fails the run.

Long runs: see fuzz/README.md.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FUZZ = ROOT / "fuzz"
SEEDS = ROOT / "tests" / "data" / "fuzz"
RUNS = int(os.environ.get("PHOTOSCRIBE_FUZZ_RUNS", "3000"))
TARGETS = {  # target → (seed corpus, largest input libFuzzer makes)
    "fuzz_contenthash": (SEEDS, 65536),
    "fuzz_photoshop": (SEEDS, 65536),
    "fuzz_keywords": (FUZZ / "corpus" / "keywords", 1024),
}
HAVE_ATHERIS = importlib.util.find_spec("atheris") is not None


def run_target(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(FUZZ / f"{name}.py"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_plain_loop_finds_nothing(name: str, tmp_path: Path) -> None:
    done = run_target(name, "--plain", str(RUNS), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{RUNS} inputs, no failure" in done.stdout


@pytest.mark.skipif(not HAVE_ATHERIS, reason="atheris is not installed (pip install .[fuzz])")
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_atheris_finds_nothing(name: str, tmp_path: Path) -> None:
    seeds, max_len = TARGETS[name]
    corpus = tmp_path / "corpus"  # libFuzzer adds to its corpus: never the committed one
    shutil.copytree(seeds, corpus)
    flags = [f"-runs={RUNS}", "-seed=1", f"-max_len={max_len}", "-rss_limit_mb=2048"]
    done = run_target(name, *flags, f"-artifact_prefix={tmp_path}/", str(corpus), cwd=tmp_path)
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0, (crashes, done.stderr[-4000:])
    assert f"Done {RUNS} runs" in done.stderr
