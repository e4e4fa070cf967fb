"""Races the soak (tests/test_soak.py) found, each forced here in one order.

A move whose two queue rows are due together (a restart after the daemon was down, or a
busy daemon) is still followed as a move: the photo taken in the same batch is looked at
before the old path is forgotten, so its content hash finds the old row and its write
journal (what `photoscribe undo` takes back) moves with it. When the old row is dropped
first anyway, the photo adopted at its new name takes the journal along. Two captions
asked for one photo are written once."""

from __future__ import annotations

from pathlib import Path

import yaml

from photoscribe.cli import main
from photoscribe.config import config_from_dict
from photoscribe.daemon import Controls, Daemon
from photoscribe.fsutil import file_stat
from photoscribe.records import Tagging
from photoscribe.store import open_store
from photoscribe.store.queue import GONE, PHOTO
from photoscribe.writing import CaptionJob

from fixtures.daemon import RecordingNotifier, process_config, write_photo
from fixtures.exiftool import read_tags


def test_a_move_due_together_with_its_gone_row_keeps_row_and_journal(tmp_path: Path) -> None:
    photos, raw = process_config(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    old = write_photo(photos / "a.jpg", 1)
    write_photo(photos / "b.jpg", 2)  # indexed after a.jpg: a new row for a.jpg gets a new id
    assert main(["--config", str(cfg), "scan", str(photos)]) == 0
    new = photos / "album" / "renamed.jpg"
    new.parent.mkdir()
    old.rename(new)

    config = config_from_dict(raw)
    store = open_store(config.index_path)
    try:
        row_id = store.by_path(old).id
        daemon = Daemon(config, store, RecordingNotifier(), Controls())
        daemon.queue.add([(old, GONE, None), (new, PHOTO, file_stat(new))])  # both due now
        assert daemon._work()
        daemon.pipeline.flush()
        moved = store.by_path(new)
        assert store.by_path(old) is None
        assert moved is not None and moved.id == row_id  # followed, not adopted anew
        journal = store.query("SELECT path FROM journal")  # (written two at a time)
        assert sorted(r[0] for r in journal) == sorted([str(new), str(photos / "b.jpg")])
        daemon.pipeline.writer.close()
    finally:
        store.close()


def test_a_move_seen_after_its_old_row_was_dropped_takes_the_journal_along(
    tmp_path: Path,
) -> None:
    """The other order, which no queue order can rule out (a folder's delete handled before
    its new place was scanned): the old row is gone first, the photo is adopted at its new
    name from its file's record, and its write journal follows it there."""
    photos, raw = process_config(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    old = write_photo(photos / "trip" / "a.jpg", 1)
    kept = write_photo(photos / "b.jpg", 2)
    assert main(["--config", str(cfg), "scan", str(photos)]) == 0
    (photos / "trip").rename(photos / "旅行")
    new = photos / "旅行" / "a.jpg"

    store = open_store(config_from_dict(raw).index_path)
    try:
        daemon = Daemon(config_from_dict(raw), store, RecordingNotifier(), Controls())
        daemon.queue.add([(photos / "trip", GONE, None)])
        assert daemon._work()
        assert store.by_path(old) is None  # dropped: nothing under trip/ exists
        daemon.queue.add([(new, PHOTO, file_stat(new))])
        assert daemon._work()
        daemon.pipeline.flush()
        assert store.by_path(new) is not None
        journal = store.query("SELECT path FROM journal")  # (written two at a time)
        assert sorted(r[0] for r in journal) == sorted([str(kept), str(new)])
        daemon.pipeline.writer.close()
    finally:
        store.close()


def test_two_captions_for_one_photo_write_only_the_first(tmp_path: Path) -> None:
    """A late caption from the pipeline and one from the caption backlog for the same
    photo (both asked while it waited): the second is dropped, not written over the first.
    Found by the soak, whose fake LLM numbers its captions so that they differ."""
    photos, raw = process_config(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    photo = write_photo(photos / "a.jpg", 1)
    assert main(["--config", str(cfg), "scan", str(photos)]) == 0  # keywords, no caption
    store = open_store(config_from_dict(raw).index_path)
    try:
        daemon = Daemon(config_from_dict(raw), store, RecordingNotifier(), Controls())
        row = store.by_path(photo)
        tagging = Tagging(row.keywords, store.embedding_of(row.id), row.model or "")
        writer = daemon.pipeline.writer
        for caption in ("A first caption.", "A second caption."):
            writer.put(CaptionJob(row.id, photo, row.content_hash, tagging, caption))
        daemon.pipeline.flush()
        assert store.by_path(photo).caption == "A first caption."
        captions = store.query("SELECT id FROM journal WHERE instr(changes, 'caption.') > 0")
        assert len(captions) == 1
        assert read_tags(photo)["XMP-photoscribe:AddedDescription"] == "A first caption."
        writer.close()
    finally:
        store.close()
