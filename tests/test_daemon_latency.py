"""What keeps a lone photo quick (issue 13's latency target; its timing is in
bench/bench_daemon.py): a photo renamed into place counts as complete, like one its
writer closed; a due photo waits for a fuller batch only while another photo is on its
way, never for the event of photoscribe's own write; while it waits the main loop
sleeps instead of spinning; and the worker processes and the image tower are warm before
READY."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from photoscribe.cli import main
from photoscribe.config import ScanConfig, config_from_dict
from photoscribe.daemon import Controls, Daemon
from photoscribe.fsutil import file_stat
from photoscribe.service import build_tagger
from photoscribe.store import open_store
from photoscribe.store.queue import PHOTO
from photoscribe.watcher import FolderWatcher, Inbox

from fixtures.daemon import (
    RecordingNotifier,
    process_config,
    running_daemon,
    wait_until,
    write_photo,
)
from fixtures.exiftool import read_tags

LONG_WAIT = 600.0  # batch_wait: long enough that it never runs out while a test runs


def test_a_photo_renamed_into_place_is_complete_like_a_closed_one(tmp_path: Path) -> None:
    """rsync and most copy tools write a hidden temp file and rename it to its name."""
    inbox = Inbox()
    watcher = FolderWatcher([tmp_path], [], ScanConfig(), inbox, poll_interval=1.0)
    watcher.start()
    try:
        source = write_photo(tmp_path.parent / "source.jpg", 1)
        temp = tmp_path / ".照片.jpg.x7Qe2a"
        temp.write_bytes(source.read_bytes())
        target = tmp_path / "照片.jpg"
        temp.rename(target)
        seen: list = []
        wait_until(lambda: seen.extend(inbox.drain()) or any(c.path == target for c in seen))
    finally:
        watcher.stop()
    assert [c.kind for c in seen if c.path == target] == ["closed"]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Daemon, Path, Path]]:
    """A daemon (not running: its steps are called one by one) whose batch wait never
    runs out, a photo already scanned (indexed and written) and its folder."""
    photos, raw = process_config(tmp_path)
    raw["watch"]["batch_wait"] = LONG_WAIT
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    known = write_photo(photos / "known.jpg", 1)
    assert main(["--config", str(cfg), "scan", str(photos)]) == 0
    config = config_from_dict(raw)
    store = open_store(config.index_path)
    made = Daemon(config, store, RecordingNotifier(), Controls())
    try:
        yield made, photos, known
    finally:
        with contextlib.suppress(Exception):
            made.pipeline.writer.close()
        made.workers.close()
        store.close()


def arrives(d: Daemon, path: Path, *, delay: float = 0.0) -> None:
    """An event for ``path`` was just ingested; its row falls due after ``delay``."""
    d._last_event = time.monotonic()
    d.queue.add([(path, PHOTO, file_stat(path))], delay=delay)


def assert_tagged(d: Daemon, path: Path) -> None:
    """Keywords written into the photo (read back by exiftool) and into the index."""
    row = d.store.by_path(path)
    assert row is not None and row.keywords
    assert read_tags(path)["XMP-dc:Subject"]


def test_a_lone_photo_is_taken_at_once_not_held_for_a_batch(daemon) -> None:
    d, photos, _known = daemon
    lone = write_photo(photos / "lone.jpg", 2)
    arrives(d, lone)
    assert d._work()  # taken although the batch wait has not run out
    d.pipeline.flush()
    assert_tagged(d, lone)


def test_the_event_of_our_own_write_does_not_hold_a_photo(daemon) -> None:
    d, photos, known = daemon
    arrives(d, known, delay=LONG_WAIT / 2)  # the file as the index knows it: our write
    lone = write_photo(photos / "lone.jpg", 2)
    arrives(d, lone)
    assert d._work()
    d.pipeline.flush()
    assert_tagged(d, lone)


def test_a_photo_waits_for_the_next_one_on_its_way_and_the_loop_sleeps(daemon) -> None:
    d, photos, _known = daemon
    first, second = (write_photo(photos / f"{n}.jpg", i) for i, n in ((2, "a"), (3, "b")))
    arrives(d, first)
    arrives(d, second, delay=LONG_WAIT / 2)  # still being copied: due within the wait
    assert not d._work()  # held for a fuller batch
    assert d.queue.due_count() == 1
    assert d._sleep_time() > 0  # until the next one comes due (or an event): no busy loop


def test_workers_and_the_image_tower_are_warm_before_ready(tmp_path: Path) -> None:
    """The first photo after a start does not wait for worker processes to start or for
    the model's first run."""
    photos, raw = process_config(tmp_path)
    config = config_from_dict(raw)
    tagger = build_tagger(config)
    runs: list[int] = []
    encode = tagger.encoder.encode_images

    def counted(tensors):
        runs.append(len(tensors))
        return encode(tensors)

    tagger.encoder.encode_images = counted
    with running_daemon(config, tagger=tagger) as d:
        assert d.notifier.ready_event.is_set()
        assert runs == [1]  # before READY, with no photo yet
        assert len(d.workers._workers) == d.workers.size
        assert all(w.alive for w in d.workers._workers)
        assert not list(photos.iterdir())


def test_photos_that_come_due_during_a_run_join_it(daemon) -> None:
    """A card import is one pipeline run, as in a scan (its decode pool is not emptied and
    restarted every take): more than one take of due photos, one `process` call."""
    d, photos, _known = daemon
    many = [
        write_photo(photos / "DCIM" / f"IMG_{i:04d}.JPG", i, size=(64, 64)) for i in range(5 * 8)
    ]
    d.queue.add([(p, PHOTO, file_stat(p)) for p in many])
    assert d.config.model.batch_size * 4 < len(many)  # more than one take
    calls: list[int] = []
    process = d.pipeline.process

    def counted(paths) -> None:
        calls.append(1)
        process(paths)

    d.pipeline.process = counted
    assert d._work()
    d.pipeline.flush()
    assert calls == [1]
    assert all(d.store.by_path(p) is not None and d.store.by_path(p).keywords for p in many)
    assert d.queue.due_count() == 0
