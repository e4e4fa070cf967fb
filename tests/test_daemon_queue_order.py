"""A move whose two queue rows are due together (a restart after the daemon was down, or
a busy daemon) is still followed as a move: the photo taken in the same batch is looked at
before the old path is forgotten, so its content hash finds the old row and its write
journal (what `photoscribe undo` takes back) moves with it. Found by the soak
(tests/test_soak.py): the old row was deleted first and the photo was adopted from its
file's record under a new row, leaving its journal behind at a path that no longer exists."""

from __future__ import annotations

from pathlib import Path

import yaml

from photoscribe.cli import main
from photoscribe.config import config_from_dict
from photoscribe.daemon import Controls, Daemon
from photoscribe.fsutil import file_stat
from photoscribe.store import open_store
from photoscribe.store.queue import GONE, PHOTO

from fixtures.daemon import RecordingNotifier, process_config, write_photo


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
        journal = store.query("SELECT path FROM journal ORDER BY id")
        assert [r[0] for r in journal] == [str(new), str(photos / "b.jpg")]
        daemon.pipeline.writer.close()
    finally:
        store.close()
