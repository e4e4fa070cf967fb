"""A repeated CLIP search needs no text tower: its query embedding comes from cache_dir
(real scan with the tiny CLIP, real CLI in a fresh interpreter each time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_cli_exit import DAEMON, write_config

from fixtures.synthetic import draw_shape

PROBE = """
import json, sys
from photoscribe.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "torch": "torch" in sys.modules}))
"""


def search_in_fresh_process(config: Path, *words: str) -> tuple[list[str], bool]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "-c", str(config), "search", "--json", *words],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(DAEMON), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    *hits, probe = done.stdout.strip().splitlines()
    result = json.loads(probe)
    assert result["code"] == 0
    return [Path(h["path"]).name for h in json.loads("\n".join(hits))], result["torch"]


def test_the_second_search_loads_no_model(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for colour, shape in (("red", "circle"), ("blue", "square"), ("green", "triangle")):
        draw_shape(colour, shape, size=(320, 240)).save(photos / f"{colour}_{shape}.png")
    config = write_config(tmp_path)
    scan = subprocess.run(
        [
            sys.executable,
            "-m",
            "photoscribe",
            "-c",
            str(config),
            "scan",
            "--no-caption",
            str(photos),
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(DAEMON), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert scan.returncode == 0, scan.stderr
    first, loaded_first = search_in_fresh_process(config, "a photo of a blue square")
    again, loaded_again = search_in_fresh_process(config, "a photo of a blue square")
    assert loaded_first and not loaded_again
    assert again == first and first[0] == "blue_square.png"
    cache = tmp_path / "cache" / "search"
    assert list(cache.glob("*/*.faiss")) and list((cache / "queries").glob("*.npy"))
