"""A watched folder unmounted and mounted again (a NAS, a USB disk) is not a mass deletion.

Real mounts in a private mount namespace (fixtures.mountns): the photos live on a tmpfs
bound onto the watched folder, so that unmounting the folder leaves the photos on the
tmpfs and binding it again brings them back, as a share does. The daemon is a real
`photoscribe run` process inside that namespace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from photoscribe.cli import main
from photoscribe.errors import StoreError
from photoscribe.records import State
from photoscribe.store import open_store
from photoscribe.store.queue import queue_depth, read_state
from photoscribe.volumes import Volumes

from fixtures.daemon import process_config, wait_until, write_photo
from fixtures.mountns import MountNamespace


class Share:
    """The watched folder ``photos`` with a tmpfs (kept at ``backing``) bound onto it."""

    def __init__(self, tmp_path: Path, how: str) -> None:
        self.ns = MountNamespace()
        self.photos, raw = process_config(tmp_path)
        if how == "poll_folders":  # a network share polled: its files vanish from a poll
            raw["watch"].update({"folders": [], "poll_folders": [str(self.photos)]})
            raw["watch"]["poll_interval"] = 0.5
        self.index = Path(raw["index_path"])
        self.config = tmp_path / "config.yaml"
        self.config.write_text(yaml.safe_dump(raw), encoding="utf-8")
        self.backing = tmp_path / "backing"
        self.backing.mkdir()
        self.ns.mount_tmpfs(self.backing, "16m")
        self.mount()

    def mount(self) -> None:
        self.ns.run("mount", "--bind", str(self.backing), str(self.photos))

    def unmount(self) -> None:
        self.ns.run("umount", str(self.photos))

    def put(self, name: str, index: int) -> Path:
        """A new photo on the share, written from outside as a file server would."""
        write_photo(self.ns.inside(self.backing) / name, index)
        return self.photos / name

    def start(self, log: Path) -> subprocess.Popen:
        argv = [sys.executable, "-m", "photoscribe", "--config", str(self.config), "run"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        with open(log, "ab") as out:
            return subprocess.Popen(
                self.ns.command(*argv), stdout=out, stderr=subprocess.STDOUT, env=env
            )

    def rows(self) -> dict[str, State]:
        try:
            store = open_store(self.index, readonly=True)
        except StoreError:  # the daemon has not created (or migrated) it yet
            return {}
        try:
            return {r.path.name: r.state for r in store.rows_under(self.photos)}
        finally:
            store.close()

    def daemon_state(self) -> dict:
        try:
            store = open_store(self.index, readonly=True)
        except StoreError:
            return {}
        try:
            found = read_state(store, "daemon")
            return {} if found is None else {**found[0], "queued": queue_depth(store)}
        finally:
            store.close()


@pytest.fixture(params=["folders", "poll_folders"])
def share(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Share]:
    made = Share(tmp_path, request.param)
    try:
        yield made
    finally:
        made.ns.close()


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


def settled(share: Share, expected: set[str]) -> bool:
    rows = share.rows()
    return set(rows) == expected and all(s is State.NEEDS_CAPTION for s in rows.values())


def catch_ups(log: Path) -> int:
    return log.read_text(errors="replace").count("catch-up scan of")


def test_an_unmounted_share_keeps_its_rows_and_is_caught_up_when_back(
    share: Share, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "daemon.log"
    names = {"a.jpg", "b.jpg", "c.jpg"}
    for i, name in enumerate(sorted(names)):
        share.put(name, i)
    proc = share.start(log)
    try:
        wait_until(lambda: settled(share, names), 120, "the three photos tagged")
        os.unlink(share.ns.inside(share.backing) / "c.jpg")  # a real deletion
        names.discard("c.jpg")
        wait_until(lambda: set(share.rows()) == names, 60, "the deleted photo dropped")

        share.unmount()
        wait_until(lambda: share.daemon_state().get("unavailable"), 30, "the folder reported")
        capsys.readouterr()
        assert main(["--config", str(share.config), "status"]) == 0
        status = capsys.readouterr().out
        assert f"unavailable: {share.photos}: it is not mounted" in status, status
        stop(proc)  # a restart while the share is away: its catch-up must keep the rows

        scans = catch_ups(log)  # the log holds both runs
        proc = share.start(log)
        wait_until(lambda: catch_ups(log) > scans, 60, "the catch-up at the second start")
        wait_until(lambda: share.daemon_state().get("queued") == 0, 30, "an empty queue")
        assert settled(share, names), share.rows()
        assert proc.poll() is None

        share.mount()
        wait_until(
            lambda: "is available again" in log.read_text(errors="replace"),
            30,
            "the share seen back (and caught up)",
        )
        wait_until(lambda: not share.daemon_state().get("unavailable"), 30, "reported back")
        share.put("d.jpg", 7)  # seen only through the watch set up anew
        names.add("d.jpg")
        wait_until(lambda: settled(share, names), 60, "the new photo tagged")
        stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text(errors="replace")
    assert text.count("is unavailable: it is not mounted") == 2, text  # once per run
    assert "removed from the index (deleted)" in text and "c.jpg" in text
    assert f"watching {share.photos} again" in text, text


def test_scan_of_a_missing_folder_says_so_and_keeps_the_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos, raw = process_config(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    write_photo(photos / "a.jpg", 1)
    assert main(["--config", str(cfg), "scan", str(photos)]) == 0
    missing = tmp_path / "nas" / "Photos"
    capsys.readouterr()
    assert main(["--config", str(cfg), "scan", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing} does not exist" in err and "not mounted?" in err, err
    store = open_store(Path(raw["index_path"]), readonly=True)
    try:
        assert [r.path for r in store.rows_under(photos)] == [photos / "a.jpg"]
    finally:
        store.close()


def test_before_its_file_system_is_known_an_empty_folder_with_indexed_photos_is_kept(
    tmp_path: Path,
) -> None:
    """An index made by `photoscribe scan` alone has no record of the folder's file
    system: an empty folder that the index holds photos in then counts as unmounted."""
    store = open_store(tmp_path / "index.sqlite3")
    try:
        folder = tmp_path / "nas"
        folder.mkdir()
        store.save_failure(folder / "a.jpg", None, "test row")
        volumes = Volumes(store)
        assert "it is empty, yet the index holds photos there" in (volumes.absent(folder) or "")
        assert not volumes.gone(folder / "a.jpg", [folder])
        (folder / "b.jpg").write_bytes(b"x")  # a folder in use: a.jpg really was deleted
        assert volumes.absent(folder) is None and volumes.gone(folder / "a.jpg", [folder])
        volumes.record(folder)
        (folder / "b.jpg").unlink()  # empty, but on the file system it was recorded on
        again = Volumes(store)  # read back from the index
        assert again.absent(folder) is None and again.gone(folder / "a.jpg", [folder])
    finally:
        store.close()
