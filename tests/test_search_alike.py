"""`photoscribe similar` and `photoscribe duplicates` on a real index (in-process CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from photoscribe.cli import main
from photoscribe.records import FileStat, Keyword, Tagging
from photoscribe.store import open_store
from photoscribe.vision.model import resolve_weights
from test_cli_exit import write_config

STAT = FileStat(1, 1, 1, 1)


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def config(tmp_path: Path, make_config) -> Path:
    path = write_config(tmp_path)
    model = resolve_weights(make_config().model).model_id
    store = open_store(tmp_path / "state" / "index.sqlite3")
    photos = [  # name, content hash, embedding
        ("beach.jpg", "h1", unit(1, 0, 0, 0)),
        ("beach-copy.jpg", "h1", unit(1, 0, 0, 0)),  # the same file, copied
        ("beach-edit.jpg", "h2", unit(1, 0.1, 0, 0)),  # cropped: near
        ("beach-other.jpg", "h3", unit(1, 0.6, 0, 0)),  # the same beach, another photo
        ("cat.jpg", "h4", unit(0, 0, 1, 0)),
        ("猫.jpg", "h5", unit(0, 0, 1, 0.05)),
    ]
    for name, digest, vector in photos:
        tagging = Tagging((Keyword("x", 0.9),), vector.astype("<f2").tobytes(), model)
        store.save_tagged(tmp_path / "p" / name, STAT, digest, tagging, "caption")
    store.close()
    return path


def cli(config: Path, capsys, *args: str) -> tuple[int, object]:
    capsys.readouterr()
    code = main(["-c", str(config), *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_similar_lists_look_alikes_best_first_without_the_photo(config, tmp_path, capsys) -> None:
    code, hits = cli(config, capsys, "similar", str(tmp_path / "p" / "beach-edit.jpg"), "-n", "3")
    assert code == 0
    names = [Path(h["path"]).name for h in hits]
    assert sorted(names[:2]) == ["beach-copy.jpg", "beach.jpg"] and names[2] == "beach-other.jpg"
    code, hits = cli(config, capsys, "similar", str(tmp_path / "p" / "猫.jpg"), "-n", "1")
    assert [Path(h["path"]).name for h in hits] == ["cat.jpg"]


def test_similar_of_a_photo_not_indexed_says_what_to_do(config, tmp_path, capsys) -> None:
    assert main(["-c", str(config), "similar", str(tmp_path / "nope.jpg")]) == 2
    assert "photoscribe scan" in capsys.readouterr().err


def test_duplicates_groups_exact_and_near_copies(config, tmp_path, capsys) -> None:
    code, groups = cli(config, capsys, "duplicates")
    assert code == 0
    found = sorted((g["kind"], sorted(Path(p).name for p in g["paths"])) for g in groups)
    assert found == [
        ("exact", ["beach-copy.jpg", "beach.jpg"]),
        ("near", ["beach-copy.jpg", "beach-edit.jpg", "beach.jpg"]),
        ("near", ["cat.jpg", "猫.jpg"]),
    ]
    code, groups = cli(config, capsys, "duplicates", "--threshold", "0.8")
    assert ["beach-other.jpg" in str(g["paths"]) for g in groups].count(True) == 1
    assert main(["-c", str(config), "duplicates", "--threshold", "1.5"]) == 2
