"""File names that are not valid UTF-8 (Latin-1 from old Windows/Samba shares), Chinese,
emoji and 255-byte names: scanned, watched, indexed, written and undone like any other."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from photoscribe.cli import main
from photoscribe.records import State
from photoscribe.store import open_store
from photoscribe.store.paths import from_db, to_db

from conftest import tiny_config_dict
from fixtures.daemon import running_daemon, wait_until, write_photo
from fixtures.exiftool import read_tags

LATIN1 = os.fsdecode(b"caf\xe9.jpg")  # what `ls` shows as 'caf'$'\351''.jpg'
NAMES = (
    LATIN1,
    os.fsdecode(b"M\xfcnchen \xb4\x80\xff.jpg"),  # more undecodable bytes, one name
    "照片_长城.jpg",
    "🎉 party 🌅.jpg",
    "a" * 251 + ".jpg",  # 255 bytes: the longest name a file system allows
    "照" * 83 + ".jpg",  # 253 bytes of UTF-8
    "x\U0010fe80y.jpg",  # a genuine code point from the range the index codec uses
)
LATIN1_FOLDER = os.fsdecode(b"Urlaub M\xfcnchen")


def subjects(path: Path) -> list[str]:
    value = read_tags(path).get("XMP-dc:Subject")
    return value if isinstance(value, list) else [value] if value else []


def odd_photos(folder: Path) -> list[Path]:
    paths = [write_photo(folder / name, i) for i, name in enumerate(NAMES)]
    paths.append(write_photo(folder / LATIN1_FOLDER / LATIN1, len(NAMES)))
    return paths


def test_the_index_codec_is_bijective_and_keeps_valid_names_verbatim() -> None:
    every_byte = bytes(b for b in range(1, 256) if b != ord("/"))
    names = [os.fsencode(n) for n in NAMES] + [b"\xf4\x8f\xba\x80", b"\xff" * 4, every_byte]
    for raw in names:
        text = to_db(Path("/p", os.fsdecode(raw)))
        text.encode("utf-8")  # what SQLite needs
        assert os.fsencode(from_db(text)) == b"/p/" + raw
    for valid in ("/p/café.jpg", "/p/照片_长城.jpg", "/p/🎉.jpg"):
        assert to_db(Path(valid)) == valid  # indexes written before read the same
    folder = Path("/p", LATIN1_FOLDER)
    assert to_db(folder / LATIN1).startswith(to_db(folder) + "/")  # prefix queries work
    assert len({to_db(Path(os.fsdecode(r))) for r in names}) == len(names)


def tagged_rows(cli: Cli) -> set[Path]:
    store = open_store(cli.index, readonly=True)
    try:
        return {r.path for r in store.rows_under(Path("/")) if r.keywords}
    finally:
        store.close()


class Cli:
    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], **sections) -> None:
        raw = tiny_config_dict(tmp_path)
        raw["llm"]["enabled"] = False
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        self.config = tmp_path / "config.yaml"
        self.config.write_text(yaml.safe_dump(raw), encoding="utf-8")
        self.capsys = capsys
        self.index = tmp_path / "state" / "index.sqlite3"

    def indexed(self, folder: Path) -> set[Path]:
        """The paths the index holds under ``folder``."""
        store = open_store(self.index, readonly=True)
        try:
            return {r.path for r in store.rows_under(folder)}
        finally:
            store.close()

    def __call__(self, *args: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main(["-c", str(self.config), *args])
        out, err = self.capsys.readouterr()  # a surrogate printed to UTF-8 would raise
        return code, out + err


def test_scan_tags_every_odd_name_and_prints_them(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    paths = odd_photos(folder)
    cli = Cli(tmp_path, capsys)
    code, out = cli("scan", str(folder))
    assert code == 0, out
    assert f"{len(paths)} photos: {len(paths)} tagged, 0 skipped (already done), 0 failed" in out
    for path in paths:
        assert subjects(path), f"no keywords written into {os.fsencode(path)!r}"
    store = open_store(cli.index, readonly=True)
    rows = store.rows_under(folder)
    assert sorted(r.path for r in rows) == sorted(paths)
    assert all(r.state is State.NEEDS_CAPTION for r in rows)
    assert {r.path for r in store.rows_under(folder / LATIN1_FOLDER)} == {paths[-1]}
    store.close()

    code, out = cli("scan", str(folder))
    assert code == 0 and f"0 tagged, {len(paths)} skipped" in out
    code, out = cli("search", "--json", "a photo")
    assert code == 0
    assert "caf\\\\xe9.jpg" in out  # json of the printable form: caf\xe9.jpg
    assert {Path(h["path"]).name for h in json.loads(out)} >= {"照片_长城.jpg"}
    assert cli("status")[0] == 0 and cli("status", "--json")[0] == 0


def test_an_odd_name_that_cannot_be_tagged_is_a_recorded_failure(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    good = write_photo(folder / "good.jpg", 1)
    broken = folder / LATIN1
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    cli = Cli(tmp_path, capsys)
    code, out = cli("scan", str(folder))
    assert code == 1 and "1 tagged, 0 skipped (already done), 1 failed" in out, out
    assert "caf\\xe9.jpg" in out  # named in the summary, printably
    assert subjects(good)
    code, out = cli("status")
    assert code == 0 and "caf\\xe9.jpg" in out
    status = json.loads(cli("status", "--json")[1])
    assert [f["path"] for f in status["last_failures"]] == [str(folder) + "/caf\\xe9.jpg"]


def test_moves_and_undo_of_odd_names(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    photo = write_photo(folder / LATIN1, 3)
    raw = write_photo(folder / os.fsdecode(b"n\xe4me.jpg"), 4)
    cli = Cli(tmp_path, capsys)
    assert cli("scan", str(folder))[0] == 0
    store = open_store(cli.index, readonly=True)
    row_id = store.by_path(photo).id
    store.close()
    moved = folder / LATIN1_FOLDER / os.fsdecode(b"\xe9t\xe9.jpg")
    moved.parent.mkdir()
    photo.rename(moved)
    code, out = cli("scan", str(folder))
    assert code == 0 and "0 tagged" in out, out
    store = open_store(cli.index, readonly=True)
    assert store.by_path(moved).id == row_id and store.by_path(photo) is None
    store.close()
    code, out = cli("undo", "--all")
    assert code == 0, out
    assert subjects(moved) == [] and subjects(raw) == []


def test_sidecars_of_odd_names(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "photos"
    photo = write_photo(folder / LATIN1, 5)
    too_long = write_photo(folder / ("d" * 251 + ".jpg"), 6)  # NAME.jpg.xmp: 259 bytes
    before = photo.read_bytes()
    cli = Cli(tmp_path, capsys, metadata={"mode": "sidecar"})
    code, out = cli("scan", str(folder))
    assert code == 1 and "1 tagged, 0 skipped (already done), 1 failed" in out, out
    assert "longer than the 255 bytes a file name may have; shorten the photo's name" in out
    assert tagged_rows(cli) == {photo}
    assert not list(folder.glob(".*")) and too_long.exists()
    sidecar = folder / (LATIN1 + ".xmp")
    assert subjects(sidecar) and photo.read_bytes() == before
    assert cli("undo", "--all")[0] == 0
    assert not sidecar.exists()


def test_the_daemon_watches_and_catches_up_odd_names(make_config, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    early = write_photo(folder / os.fsdecode(b"vor dem Start \xe9.jpg"), 20)  # catch-up
    config = make_config(
        watch={"folders": [str(folder)], "settle_seconds": 0.3, "batch_wait": 0.2},
        llm={"enabled": False},
    )
    with running_daemon(config) as daemon:
        paths = [early, *odd_photos(folder)]
        wait_until(
            lambda: (
                len(daemon.store.rows_under(folder)) == len(paths) and daemon.queue.depth() == 0
            ),
            what="every odd name indexed",
        )
        assert daemon.activity.totals["failed"] == 0
    while_down = write_photo(folder / LATIN1_FOLDER / os.fsdecode(b"sp\xe4t.jpg"), 30)
    with running_daemon(config) as daemon:
        wait_until(lambda: daemon.store.by_path(while_down) is not None, what="caught up")
        wait_until(lambda: daemon.queue.depth() == 0, what="empty queue")
        assert daemon.activity.totals["failed"] == 0
        rows = {r.path: r for r in daemon.store.rows_under(folder)}
    assert set(rows) == {*paths, while_down}
    assert all(r.state is State.NEEDS_CAPTION for r in rows.values())
    for path in rows:
        assert subjects(path), f"no keywords written into {os.fsencode(path)!r}"
