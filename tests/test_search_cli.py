"""`photoscribe search` from the real CLI in a subprocess: words that start with '-',
limits, filters, and output into a closed pipe (`| head`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from photoscribe.errors import ConfigError
from photoscribe.records import FileStat, Keyword, Tagging
from photoscribe.search import SearchQuery, search
from photoscribe.store import open_store
from photoscribe.store.photos import PhotoFacts
from test_cli_exit import DAEMON, run, write_config

STAT = FileStat(1, 1, 1, 1)
ENV = {**os.environ, "PYTHONPATH": str(DAEMON), "HF_HUB_OFFLINE": "1"}
ROWS = [  # name, caption, keywords, date taken, camera
    (
        "trip/cat.jpg",
        "A cat on a sofa. 一只猫坐在沙发上。",
        ("cat", "猫"),
        "2023-05-01T10:00",
        "Canon EOS R5",
    ),
    ("trip/dog.jpg", "A dog near a cat toy.", ("dog", "狗"), "2024-02-10T09:30", "Apple iPhone 13"),
    ("home/nearby.jpg", "A cat asleep in the sun.", ("cat",), "2024-07-04T18:00", "Canon EOS 80D"),
]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path)
    store = open_store(tmp_path / "state" / "index.sqlite3")
    for name, caption, labels, taken, camera in ROWS:
        kws = tuple(Keyword(x, 0.9) for x in labels)
        facts = PhotoFacts(taken, camera)
        store.save_tagged(Path("/p") / name, STAT, name, Tagging(kws, b"", "m"), caption, facts)
    filler = "A cat. " + "一只狗在跑。" * 40  # 600 photos of this: more than a pipe holds
    for i in range(600):
        store.save_tagged(
            Path(f"/p/many/cat-{i}.jpg"), STAT, f"h{i}", Tagging((), b"", "m"), filler
        )
    store.close()
    return path


def found(config: Path, *args: str) -> list[str]:
    done = run("-c", str(config), "search", "--text-only", "--json", *args)
    assert done.returncode == 0, done.stderr
    return sorted(Path(h["path"]).name for h in json.loads(done.stdout))


def test_a_word_with_a_leading_minus_is_left_out_not_an_option(config: Path) -> None:
    assert found(config, "cat", "-dog", "-many") == ["cat.jpg", "nearby.jpg"]
    assert found(config, "cat", "--", "-dog", "-many") == ["cat.jpg", "nearby.jpg"]
    assert found(config, "cat", "-near", "-many", "-n", "5") == ["cat.jpg", "nearby.jpg"]
    assert found(config, "猫", "-狗") == ["cat.jpg"]


@pytest.mark.parametrize("limit", ["0", "-5", "two"])
def test_a_limit_below_one_is_refused(config: Path, limit: str) -> None:
    done = run("-c", str(config), "search", "cat", "--text-only", "-n", limit)
    assert done.returncode == 2
    assert "-n/--limit" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""


def test_the_limit_is_kept(config: Path) -> None:
    assert len(found(config, "cat", "-n", "1")) == 1
    assert len(found(config, "cat", "--limit", "7")) == 7


def test_a_bad_date_says_how_to_write_it(config: Path) -> None:
    done = run("-c", str(config), "search", "cat", "--after", "May 2024")
    assert done.returncode == 2 and "YYYY-MM-DD" in done.stderr


def test_filters_from_the_command_line(config: Path) -> None:
    assert found(config, "cat", "--after", "2024-01-01", "--before", "2025-01-01") == [
        "dog.jpg",
        "nearby.jpg",
    ]
    assert found(config, "cat", "--camera", "canon") == ["cat.jpg", "nearby.jpg"]
    assert found(config, "cat", "--keyword", "猫") == ["cat.jpg"]
    assert found(config, "--folder", "/p/home") == ["nearby.jpg"]  # filters alone: a list


@pytest.mark.parametrize("args", [["search", "cat", "--text-only", "-n", "600"], ["status"]])
def test_output_into_a_closed_pipe_ends_quietly(config: Path, args: list[str]) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader (`head`) is gone before photoscribe writes
    proc = subprocess.Popen(
        [sys.executable, "-m", "photoscribe", "-c", str(config), *args],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    os.close(write)
    _, err = proc.communicate(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141


def test_output_into_a_pipe_closed_halfway_ends_quietly(config: Path) -> None:
    proc = subprocess.Popen(
        f"'{sys.executable}' -m photoscribe -c '{config}' search cat --text-only -n 600 "
        "| head -n 2",
        shell=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    out, err = proc.communicate(timeout=120)
    assert len(out.splitlines()) == 2 and "Traceback" not in err, err


def test_filters_in_the_search_module(config: Path, tmp_path: Path) -> None:
    store = open_store(tmp_path / "state" / "index.sqlite3", readonly=True)

    def names(**kw) -> list[str]:
        return sorted(h.path.name for h in search(store, SearchQuery(limit=50, **kw)))

    assert names(text="cat", before=date(2024, 2, 10)) == ["cat.jpg"]  # before: not that day
    assert names(text="cat", after=date(2024, 2, 10)) == ["dog.jpg", "nearby.jpg"]
    assert names(text="cat", folder=Path("/p/trip")) == ["cat.jpg", "dog.jpg"]
    assert names(text="cat", folder=Path("/p/tri")) == []  # a folder, not a name prefix
    assert names(text="cat", camera="EOS", keywords=("cat",)) == ["cat.jpg", "nearby.jpg"]
    assert names(camera="iphone") == ["dog.jpg"]
    with pytest.raises(ConfigError, match="at least 1"):
        SearchQuery("cat", limit=0)
    with pytest.raises(ConfigError, match="no photo could match"):
        SearchQuery("cat", after=date(2024, 1, 2), before=date(2024, 1, 1))
    store.close()
