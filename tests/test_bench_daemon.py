"""bench/bench_daemon.py's card-import instrument: when each photo counts as written, and
the rates taken from those times. No timing is asserted; the bench prints the figures."""

from __future__ import annotations

import os
import random
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

BENCH = Path(__file__).parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from bench_daemon import WATCH_WINDOW, Timeline, card_import  # noqa: E402


def test_timeline_rates() -> None:
    # 9 photos: the first done at 2 s (start-up), then one every 0.5 s, the last at 6 s
    timeline = Timeline([2.0 + 0.5 * i for i in range(9)])
    assert timeline.first == 2.0
    assert timeline.rate == pytest.approx(9 / 6.0)
    # the middle half: photos 2 to 6 of the sorted times, 4 photos in 2 s
    assert timeline.middle == pytest.approx(2.0)
    shuffled = Timeline(random.Random(1).sample(timeline.done, 9))
    assert shuffled.middle == pytest.approx(2.0)


def _tagged(path: Path) -> None:
    """What the daemon does to a photo: keywords written into a copy that replaces it."""
    import pyexiv2

    temp = path.with_name(f".{path.name}.tmp")
    shutil.copyfile(path, temp)
    with pyexiv2.Image(str(temp)) as image:
        image.modify_xmp({"Xmp.dc.subject": ["test"]})
    os.replace(temp, path)


def test_card_import_finds_every_photo_written_in_any_order(tmp_path: Path) -> None:
    """A stand-in daemon writes the photos in reverse order, most of them outside the
    watched window at first: each is still found written, none before it is."""
    count = WATCH_WINDOW + 16
    sources = []
    for i in range(count):
        sources.append(tmp_path / "src" / f"IMG_{i:04d}.JPG")
        sources[-1].parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8), (i, 0, 0)).save(sources[-1], "JPEG")
    card = tmp_path / "card"
    written_at: dict[str, float] = {}
    started = time.monotonic()

    def daemon() -> None:
        targets = [card / s.name for s in sources]
        while not all(t.exists() for t in targets):
            time.sleep(0.01)
        time.sleep(0.1)  # the copier has recorded each one's inode
        for target in reversed(targets):
            _tagged(target)
            written_at[target.name] = time.monotonic() - started

    stand_in = threading.Thread(target=daemon)
    stand_in.start()
    timeline, copy = card_import(sources, card, timeout=60)
    stand_in.join()
    assert len(timeline.done) == count
    assert copy.seconds > 0
    # nothing counted before it was written (the copy itself gives no new inode)
    assert timeline.first >= min(written_at.values()) - 0.01
    assert max(timeline.done) >= max(written_at.values()) - 0.01
