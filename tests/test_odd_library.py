"""One library with every odd name and every kind of link at once (issue 10's done-when):
Latin-1, Chinese, emoji and 255-byte names beside file links, folder links, a loop and a
broken link (some of them with odd names too), scanned and watched without a traceback,
links left as links, photos outside the folders never touched."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from photoscribe.records import State
from test_odd_names import LATIN1, LATIN1_FOLDER, Cli, odd_photos, subjects
from test_symlinks import link

from fixtures.daemon import running_daemon, wait_until, write_photo

LINK_NAMES = {
    "to_inside": os.fsdecode(b"Verkn\xfcpfung \xe9.jpg"),  # Latin-1: a link to a photo inside
    "to_outside": "指向外面的照片 🔗.jpg",  # a link to a photo outside the folder
    "folder_in": "🎞 相册链接",  # a link to a folder inside
    "folder_out": os.fsdecode(b"externes Album \xe4"),  # a link to a folder outside
    "loop": "环",  # a link back to the library itself
    "broken": "b" * 251 + ".jpg",  # 255 bytes, pointing at nothing
}


def odd_library(tmp_path: Path) -> dict[str, object]:
    """photos/ as in test_odd_names plus links of every kind; outside/ with two photos."""
    photos = tmp_path / "photos"
    inside = odd_photos(photos)
    outside_dir = tmp_path / "outside"
    outside = [
        write_photo(outside_dir / "单张.jpg", 50),
        write_photo(outside_dir / "album" / os.fsdecode(b"sch\xf6n.jpg"), 51),
    ]
    targets = {
        "to_inside": inside[0],
        "to_outside": outside[0],
        "folder_in": photos / LATIN1_FOLDER,
        "folder_out": outside_dir / "album",
        "loop": photos,
        "broken": tmp_path / "nothing.jpg",
    }
    links = {key: link(photos / name, targets[key]) for key, name in LINK_NAMES.items()}
    return {"photos": photos, "inside": inside, "outside": outside, "links": links}


def untouched(lib: dict[str, object], before: dict[Path, bytes]) -> None:
    for key, path in lib["links"].items():  # type: ignore[union-attr]
        assert path.is_symlink(), f"the link {key} was replaced"
    for path, data in before.items():
        assert path.read_bytes() == data, f"{os.fsencode(path)!r} was written"


def no_tracebacks(records: list[logging.LogRecord]) -> None:
    raised = [r.getMessage() for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert raised == []


@pytest.mark.parametrize("follow", [False, True])
def test_scan_of_odd_names_and_links(tmp_path: Path, capsys, caplog, follow: bool) -> None:
    lib = odd_library(tmp_path)
    inside: list[Path] = lib["inside"]  # type: ignore[assignment]
    before = {p: p.read_bytes() for p in lib["outside"]}  # type: ignore[union-attr]
    cli = Cli(tmp_path, capsys, scan={"follow_symlinks": follow})
    with caplog.at_level(logging.INFO):
        code, out = cli("scan", str(lib["photos"]))
        assert code == 0, out
        n = len(inside)  # with links followed, each photo is still one photo
        assert f"{n} photos: {n} tagged, 0 skipped (already done), 0 failed" in out, out
        code, out = cli("scan", str(lib["photos"]))
        assert code == 0 and f"{n} photos: 0 tagged, {n} skipped (already done)" in out, out
    no_tracebacks(caplog.records)
    untouched(lib, before)
    for photo in inside:
        assert subjects(photo), f"no keywords in {os.fsencode(photo)!r}"
    assert cli.indexed(lib["photos"]) == set(inside)
    if follow:  # the links that lead outside were seen, logged and left alone
        outside_notes = [r.getMessage() for r in caplog.records if "outside the" in r.getMessage()]
        assert any(LINK_NAMES["to_outside"] in m for m in outside_notes), outside_notes


def test_a_link_named_on_the_command_line_is_followed(tmp_path: Path, capsys) -> None:
    """As `find -H`: the user named it, so its target is the photo (the link stays)."""
    lib = odd_library(tmp_path)
    alias: Path = lib["links"]["to_outside"]  # type: ignore[index]
    target: Path = lib["outside"][0]  # type: ignore[index]
    cli = Cli(tmp_path, capsys)
    code, out = cli("scan", str(alias))
    assert code == 0 and "1 photos: 1 tagged, 0 skipped (already done), 0 failed" in out, out
    assert alias.is_symlink() and os.path.realpath(alias) == str(target)
    assert subjects(target)
    assert cli.indexed(Path("/")) == {target}


def test_the_daemon_watches_odd_names_and_links(make_config, tmp_path: Path, caplog) -> None:
    lib = odd_library(tmp_path)  # all there before the start: the catch-up scan sees them
    photos: Path = lib["photos"]  # type: ignore[assignment]
    before = {p: p.read_bytes() for p in lib["outside"]}  # type: ignore[union-attr]
    config = make_config(
        watch={"folders": [str(photos)], "settle_seconds": 0.3, "batch_wait": 0.2},
        llm={"enabled": False},
    )
    with caplog.at_level(logging.INFO), running_daemon(config) as daemon:
        wait_until(lambda: not daemon.catching_up, what="the start-up scan")
        new = [
            write_photo(photos / os.fsdecode(b"neu \xe9\xff.jpg"), 60),
            write_photo(photos / "新的 🌸.jpg", 61),
            write_photo(photos / LATIN1_FOLDER / ("n" * 251 + ".jpg"), 62),
        ]  # then links made while it watches, odd names too
        late_links = [
            link(photos / os.fsdecode(b"sp\xe4ter Link.jpg"), new[0]),
            link(photos / "新链接 🔗.jpg", lib["outside"][1]),  # type: ignore[index]
            link(photos / "新相册链接", photos / LATIN1_FOLDER),
        ]
        expected = {*lib["inside"], *new}  # type: ignore[misc]
        wait_until(
            lambda: (
                {r.path for r in daemon.store.rows_under(photos)} == expected
                and daemon.queue.depth() == 0
            ),
            what="every odd photo indexed, no link",
        )
        assert daemon.activity.totals["failed"] == 0
        rows = daemon.store.rows_under(photos)
    no_tracebacks(caplog.records)
    untouched(lib, before)
    assert all(path.is_symlink() for path in late_links)
    assert all(r.state is State.NEEDS_CAPTION and r.keywords for r in rows)
    assert all(subjects(path) for path in new)
    assert LATIN1 in {p.name for p in photos.iterdir()}
