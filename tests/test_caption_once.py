"""A photo is written once when its caption comes within ``llm.caption_wait``.

Real scans (tiny CLIP, real metadata writes) against the fake OpenAI server on
127.0.0.1; the writes per photo are counted from the journal (one row per write that
changed the file). A fast LLM: every photo written exactly once, keywords and caption
together. An LLM slower than the wait: every photo's keywords are written before the
first caption comes (tagging does not wait for the LLM), the caption is a second write.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from pathlib import Path

from photoscribe.progress import Progress
from photoscribe.records import State
from photoscribe.service import scan
from photoscribe.store import open_store

from fixtures.daemon import running_daemon, wait_until, write_photo
from fixtures.exiftool import read_tags


def make_photos(folder: Path, count: int) -> list[Path]:
    return [write_photo(folder / f"p{i:03d}.jpg", i, size=(64, 64)) for i in range(count)]


def writes(index: Path) -> dict[Path, list[dict]]:
    """Each photo's writes, oldest first: the keys each one changed."""
    found: dict[Path, list[dict]] = defaultdict(list)
    with sqlite3.connect(index) as db:
        for path, changes in db.execute("SELECT path, changes FROM journal ORDER BY id"):
            found[Path(path)].append(json.loads(changes))
    return dict(found)


def has_caption(changes: dict) -> bool:
    return any("description" in key.lower() for key in changes)


def has_keywords(changes: dict) -> bool:
    return any("subject" in key.lower() for key in changes)


def run_scan(make_config, fake_llm, folder: Path, **llm):
    llm = {"timeout": 30, "retries": 0, **llm}
    config = make_config(fake_llm.base_url, llm=llm)
    summary = scan(config, [folder], progress=Progress(bar=False))
    return config, summary


def test_a_fast_llm_means_one_write_per_photo(make_config, fake_llm, tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "photos", 120)
    # The premise: the LLM answers within the wait, even on a busy test machine.
    config, summary = run_scan(make_config, fake_llm, tmp_path / "photos", caption_wait=60)
    assert (summary.tagged, summary.captioned, summary.waiting) == (120, 120, 0)
    found = writes(config.index_path)
    assert set(found) == set(photos)
    twice = sorted(p.name for p, w in found.items() if len(w) != 1)
    assert twice == [], f"{len(twice)} photos written more than once"
    assert all(has_caption(w[0]) and has_keywords(w[0]) for w in found.values())
    assert len(fake_llm.requests) == 120
    assert read_tags(photos[-1])["XMP-dc:Description"].startswith("A photo showing")


def test_an_llm_slower_than_the_wait_never_holds_keywords_back(
    make_config, fake_llm, tmp_path: Path
) -> None:
    photos = make_photos(tmp_path / "photos", 8)  # one batch of the tiny config
    fake_llm.set_behavior("slow", delay=2.0)
    config, summary = run_scan(
        make_config, fake_llm, tmp_path / "photos", caption_wait=0.2, concurrency=4
    )
    assert (summary.tagged, summary.captioned, summary.waiting) == (8, 8, 0)
    found = writes(config.index_path)
    assert set(found) == set(photos)
    for path, each in found.items():
        assert len(each) == 2, path.name
        first, second = each
        assert has_keywords(first) and not has_caption(first), path.name
        assert has_caption(second), path.name
    # the journal's order: all 8 keyword writes happened before the first caption write
    with sqlite3.connect(config.index_path) as db:
        order = [json.loads(c) for (c,) in db.execute("SELECT changes FROM journal ORDER BY id")]
    assert [has_caption(c) for c in order] == [False] * 8 + [True] * 8
    # the requests that had started when the wait was over were not asked again
    assert len(fake_llm.requests) == 8
    store = open_store(config.index_path, readonly=True)
    try:
        assert {r.state for r in store.rows_under(tmp_path / "photos")} == {State.DONE}
    finally:
        store.close()


def test_no_wait_writes_keywords_first(make_config, fake_llm, tmp_path: Path) -> None:
    """caption_wait 0: keywords always first, captions from the backlog pass."""
    make_photos(tmp_path / "photos", 4)
    config, summary = run_scan(make_config, fake_llm, tmp_path / "photos", caption_wait=0)
    assert (summary.tagged, summary.captioned, summary.waiting) == (4, 4, 0)
    each = writes(config.index_path).values()
    assert [(has_caption(w[0]), has_caption(w[1])) for w in each] == [(False, True)] * 4


def test_the_daemon_writes_each_photo_once_with_a_fast_llm(
    make_config, fake_llm, tmp_path: Path
) -> None:
    """The daemon shares the caption stage: a photo dropped into a watched folder, and a
    card import of many at once, are each written once, keywords and caption together."""
    folder = tmp_path / "photos"
    folder.mkdir()
    config = make_config(
        fake_llm.base_url,
        llm={"timeout": 30, "retries": 0, "caption_wait": 60},
        watch={"folders": [str(folder)], "settle_seconds": 0.3, "batch_wait": 0.2},
    )
    with running_daemon(config) as daemon:
        wait_until(lambda: not daemon.catching_up, what="the start-up scan")
        single = [write_photo(folder / f"one{i}.jpg", 200 + i, size=(64, 64)) for i in range(3)]
        wait_until(lambda: len(daemon.store.rows_under(folder)) == 3, what="3 photos")
        card = make_photos(folder / "DCIM", 40)
        wait_until(
            lambda: (
                sum(r.state is State.DONE for r in daemon.store.rows_under(folder)) == 43
                and daemon.queue.depth() == 0
            ),
            what="43 photos captioned",
        )
    found = writes(config.index_path)
    assert set(found) == {*single, *card}
    twice = sorted(p.name for p, w in found.items() if len(w) != 1)
    assert twice == [], f"{len(twice)} photos written more than once"
    assert all(has_caption(w[0]) and has_keywords(w[0]) for w in found.values())
    assert len(fake_llm.requests) == 43
