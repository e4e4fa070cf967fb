"""The catch-up of a big tree runs in memory that does not grow with the tree.

bench/bench_big_tree.py measures 200,000 photos; here a small tree (hard links to one
JPEG) and an index that holds them all: the catch-up's peak of Python allocations for a
tree four times as big must stay about the same (the catch-up before held every path of
the tree and every row of the index at once: four times the memory). And it must still
find what changed: a touched photo, a new one, a deleted one.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

from photoscribe import catchup
from photoscribe.config import ScanConfig
from photoscribe.store import PhotoStore, open_store
from photoscribe.store.paths import to_db

MODEL = "test:model"


def tree(root: Path, files: int) -> list[Path]:
    root.mkdir(parents=True)
    source = root / ".source.jpg"
    Image.new("RGB", (8, 8), (10, 200, 10)).save(source)
    paths = []
    for i in range(files):
        folder = root / f"{i // 200:03d}"
        folder.mkdir(exist_ok=True)
        paths.append(folder / f"IMG_{i:05d}.jpg")
        os.link(source, paths[-1])
    return paths


def indexed(store: PhotoStore, paths: list[Path]) -> None:
    st, now = os.stat(paths[0]), time.time()
    with store.transaction() as c:
        c.executemany(
            "INSERT INTO photos (path, size, mtime_ns, content_hash, state, model, keywords, "
            "keywords_text, attempts, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, 'done', ?, '[]', '', 0, ?, ?)",
            [
                (to_db(p), st.st_size, st.st_mtime_ns, f"jpeg:{i:064x}", MODEL, now, now)
                for i, p in enumerate(paths)
            ],
        )


def peak_bytes(root: Path, store: PhotoStore) -> int:
    tracemalloc.start()
    try:
        found = catchup.catch_up([root], store, ScanConfig(), MODEL, _fail, _fail)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (found.todo, found.gone) == (0, 0)
    return peak


def _fail(items: list) -> None:
    raise AssertionError(f"an unchanged tree queued {items[:3]}")


def test_catch_up_memory_does_not_grow_with_the_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catchup, "BATCH", 100)
    store = open_store(tmp_path / "index.sqlite3")
    try:
        peaks = {}
        for files in (600, 2400):
            root = tmp_path / f"tree{files}"
            indexed(store, tree(root, files))
            peak_bytes(root, store)  # warm: caches, the volumes record, lazy imports
            peaks[files] = peak_bytes(root, store)
    finally:
        store.close()
    assert peaks[2400] < 1.5 * peaks[600], peaks


def test_catch_up_in_batches_still_finds_every_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catchup, "BATCH", 7)  # changes in several batches and pages
    root = tmp_path / "photos"
    paths = tree(root, 60)
    store = open_store(tmp_path / "index.sqlite3")
    try:
        indexed(store, paths)
        touched, deleted = paths[3], paths[41]
        os.unlink(touched)  # its own inode now (not the shared one), so mtime differs
        Image.new("RGB", (8, 8), (1, 2, 3)).save(touched)
        os.unlink(deleted)
        new = root / "010" / "new.jpg"
        new.parent.mkdir()
        Image.new("RGB", (8, 8)).save(new)
        todo, gone = catchup.changes([root], store, ScanConfig(), MODEL)
    finally:
        store.close()
    assert sorted(p for p, _, _ in todo) == sorted([touched, new])
    assert [p for p, _, _ in gone] == [deleted]


def test_a_subfolder_moved_away_is_gone_not_unavailable(tmp_path: Path) -> None:
    """A rescan of a subfolder (after a folder move) that has since moved again or been
    deleted drops its photos' rows: only watched folders and mount points are
    remembered, so a vanished subfolder never reads as an unmounted drive (the soak
    found rows kept for folders moved twice)."""
    from photoscribe.volumes import Volumes

    root = tmp_path / "photos"
    paths = tree(root / "album", 3)  # photos/album/000/IMG_0000N.jpg
    store = open_store(tmp_path / "index.sqlite3")
    indexed(store, paths)
    volumes = Volumes(store)
    sub = root / "album" / "000"
    todo, gone = catchup.changes([sub], store, ScanConfig(), MODEL, within=[root], volumes=volumes)
    assert (todo, gone) == ([], [])
    (root / "album").rename(root / "renamed")  # moved away after its rescan was asked for
    todo, gone = catchup.changes([sub], store, ScanConfig(), MODEL, within=[root], volumes=volumes)
    assert todo == [] and sorted(item[0] for item in gone) == sorted(paths)
    assert volumes.holding(paths[0]) is None  # the subfolder was never remembered
    store.close()
