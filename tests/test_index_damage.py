"""A damaged or locked index: a clear message, exit 4, and the file left as it is."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures.synthetic import draw_shape

DAEMON = Path(__file__).parent.parent / "daemon"


def run(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(DAEMON), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "photoscribe", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    raw = tiny_config_dict(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    index = Path(raw["index_path"])
    open_store(index).close()  # a sound, empty index
    return config, index


def damage(index: Path, how: str) -> None:
    data = index.read_bytes()
    if how == "garbage":
        index.write_bytes(os.urandom(len(data)))
    elif how == "truncated":
        index.write_bytes(data[: len(data) // 2])
    else:  # a page in the middle overwritten
        index.write_bytes(data[:4096] + os.urandom(512) + data[4096 + 512 :])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_damaged_index_is_named_with_the_way_out_and_left_alone(setup, how: str) -> None:
    config, index = setup
    damage(index, how)
    before = digest(index)
    (index.parent / "photos").mkdir()
    for args in (
        ["status"],
        ["scan", str(index.parent / "photos")],
        ["search", "x", "--text-only"],
    ):
        done = run(config, *args)
        assert done.returncode == 4, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert f"the index {index} is damaged" in done.stderr, done.stderr
        assert "photoscribe index rebuild" in done.stderr
    assert digest(index) == before  # photoscribe never "repairs" it by writing over it


def test_doctor_finds_a_damaged_page(setup) -> None:
    config, index = setup
    damage(index, "page")
    done = run(config, "doctor")
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if "index" in x)
    assert "is damaged" in line and "photoscribe index rebuild" in line, done.stdout


def test_a_locked_index_says_who_to_ask(setup) -> None:
    config, index = setup
    holder = sqlite3.connect(index, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    photos = index.parent / "photos"
    photos.mkdir()
    draw_shape("red", "circle", size=(160, 120), seed=3).save(photos / "a.jpg")
    before = digest(photos / "a.jpg")
    try:
        done = run(config, "scan", str(photos))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert done.returncode == 1, done.stderr  # the photo failed, nothing was written
    assert "Traceback" not in done.stderr, done.stderr
    assert f"the index {index} is locked by another program" in done.stderr, done.stderr
    assert digest(photos / "a.jpg") == before
