"""`photoscribe index rebuild`: a lost or damaged index loses no work.

After a scan, the index is deleted (or damaged) and rebuilt from what photoscribe wrote
into the photos and sidecars: every photo comes back done, with its keywords and caption,
without CLIP or the LLM; a following scan has nothing to do.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from photoscribe.cli import main
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures.raw import lossless_jpeg, sensor_mosaic, tiff_raw
from fixtures.synthetic import draw_shape


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def library(tmp_path: Path, fake_llm):
    import io

    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    draw_shape("red", "circle", size=(320, 240), seed=1).save(photos / "a.jpg", quality=92)
    draw_shape("blue", "square", size=(320, 240), seed=2).save(photos / "sub" / "b.png")
    draw_shape("green", "triangle", size=(320, 240), seed=3).save(photos / "猫 海边.webp")
    buf = io.BytesIO()
    draw_shape("yellow", "star", size=(320, 240), seed=4).save(buf, "JPEG", quality=90)
    raw = tiff_raw(buf.getvalue(), (320, 240), lossless_jpeg(sensor_mosaic(96, 64)), (96, 64))
    (photos / "IMG_1.DNG").write_bytes(raw)  # tagged into a sidecar
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, fake_llm.base_url)))
    assert main(["-c", str(config), "scan", str(photos)]) == 0
    return config, photos, tmp_path / "state" / "index.sqlite3"


def rows(index: Path) -> dict[str, tuple]:
    store = open_store(index, readonly=True)
    try:
        found = store.rows_under(index.parent.parent / "photos")
    finally:
        store.close()
    return {
        r.path.name: (
            r.state.value,
            r.model,
            r.content_hash,
            sorted(k.label for k in r.keywords),
            r.caption,
        )
        for r in found
    }


def forget(index: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        index.with_name(index.name + suffix).unlink(missing_ok=True)


def no_model(*_args, **_kw):
    raise AssertionError("the rebuild must not load CLIP")


def test_a_deleted_index_comes_back_from_the_photos(library, fake_llm, monkeypatch, capsys):
    config, photos, index = library
    before, files = rows(index), {p: digest(p) for p in photos.rglob("*") if p.is_file()}
    assert len(before) == 4 and all(v[0] == "done" and v[4] for v in before.values()), before
    asked = len(fake_llm.requests)
    forget(index)
    monkeypatch.setattr("photoscribe.service.build_tagger", no_model)
    capsys.readouterr()
    assert main(["-c", str(config), "index", "rebuild", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "4 photos: 4 restored from their metadata (4 with a caption)" in out, out
    after = rows(index)
    assert after == before  # states, models, hashes, keywords and captions
    assert len(fake_llm.requests) == asked  # no LLM
    assert {p: digest(p) for p in photos.rglob("*") if p.is_file()} == files  # nothing written
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["-c", str(config), "scan", str(photos)]) == 0
    assert "4 photos: 0 tagged, 4 skipped" in capsys.readouterr().out
    assert len(fake_llm.requests) == asked
    assert {p: digest(p) for p in photos.rglob("*") if p.is_file()} == files


def test_photos_changed_or_never_tagged_are_left_for_the_next_scan(library, capsys):
    config, photos, index = library
    draw_shape("purple", "circle", size=(320, 240), seed=9).save(photos / "new.jpg")
    edited = photos.parent / "edited.jpg"  # new pixels, a.jpg's XMP (an editor's "save as")
    draw_shape("black", "square", size=(320, 240), seed=8).save(edited)
    copy = ["exiftool", "-q", "-overwrite_original", "-tagsfromfile", str(photos / "a.jpg")]
    subprocess.run([*copy, "-xmp", str(edited)], check=True)
    edited.replace(photos / "a.jpg")
    forget(index)
    capsys.readouterr()
    assert main(["-c", str(config), "index", "rebuild", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "5 photos: 3 restored" in out and "1 never tagged" in out and "1 changed" in out, out
    assert sorted(rows(index)) == ["IMG_1.DNG", "b.png", "猫 海边.webp"]


def test_embeddings_are_computed_on_request(library, capsys):
    config, photos, index = library
    forget(index)
    assert main(["-c", str(config), "index", "rebuild", str(photos)]) == 0
    store = open_store(index, readonly=True)
    model = store.by_path(photos / "a.jpg").model
    assert store.embeddings_count(model) == 0
    store.close()
    capsys.readouterr()
    assert main(["-c", str(config), "index", "rebuild", "--embeddings", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "0 restored" in out and "4 already in the index" in out, out
    assert "4 CLIP embeddings computed" in out, out
    store = open_store(index, readonly=True)
    assert store.embeddings_count(model) == 4
    store.close()


def test_a_damaged_index_is_set_aside_not_deleted(library, capsys):
    config, photos, index = library
    before = rows(index)
    forget(index)
    index.write_bytes(os.urandom(64 * 1024))  # e.g. a disk error wrote over it
    garbage = digest(index)
    capsys.readouterr()
    assert main(["-c", str(config), "index", "rebuild", str(photos)]) == 0
    out = capsys.readouterr().out
    kept = [p for p in index.parent.iterdir() if ".damaged-" in p.name]
    assert len(kept) == 1 and digest(kept[0]) == garbage
    assert f"the damaged index was kept as {kept[0]}" in out
    assert rows(index) == before
