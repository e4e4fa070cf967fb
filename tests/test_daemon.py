"""`photoscribe run` in-process: real watchdog observers on temp folders, real SQLite,
real metadata writes, the tiny trained CLIP and a fake OpenAI server over HTTP."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from photoscribe.cli import main
from photoscribe.errors import ConfigError
from photoscribe.records import State
from photoscribe.store import open_store
from photoscribe.store.queue import read_state

from fixtures.daemon import running_daemon, wait_until, write_photo
from fixtures.exiftool import read_tags

FAST = {
    "settle_seconds": 0.3,
    "batch_wait": 0.2,
    "caption_retry_seconds": 0.5,
    "poll_interval": 0.5,
}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    return folder


def watch_config(make_config, folder: Path, base_url: str | None = None, **watch):
    llm = {"enabled": base_url is not None, "timeout": 3, "retries": 0, "cooldown": 0.5}
    return make_config(
        base_url or "http://127.0.0.1:9/v1",
        watch={"folders": [str(folder)], **FAST, **watch},
        llm=llm,
    )


def rows(daemon) -> dict[Path, object]:
    return {r.path: r for r in daemon.store.rows_under(daemon.watcher.roots[0])}


def idle(daemon) -> bool:
    """Nothing queued, in progress or being scanned."""
    return not daemon.catching_up and daemon.queue.depth() == 0 and not daemon._busy()


def looked_at(daemon, skipped: int):
    """The events of our own writes came back, were looked at and skipped (each write
    leaves the photo as the index knows it), and nothing else is pending."""
    return lambda: daemon.activity.totals["skipped"] >= skipped and idle(daemon)


def test_new_photos_are_tagged_written_and_indexed(make_config, photos: Path, fake_llm) -> None:
    config = watch_config(make_config, photos, fake_llm.base_url)
    with running_daemon(config) as daemon:
        paths = [write_photo(photos / f"p{i}.jpg", i) for i in range(3)]
        wait_until(
            lambda: (
                all(r.state is State.DONE for r in rows(daemon).values()) and len(rows(daemon)) == 3
            ),
            what="3 photos done",
        )
        wait_until(lambda: daemon.queue.depth() == 0, what="empty queue")
    tags = [read_tags(p) for p in paths]
    for entry in tags:
        assert entry["XMP-dc:Description"]
        assert entry["XMP-dc:Subject"]
    assert daemon.activity.totals["tagged+caption"] == 3
    assert any(m.startswith("STATUS watching 1 folder") for m in daemon.notifier.messages)
    assert "WATCHDOG" in daemon.notifier.messages
    assert daemon.notifier.messages[-1] == "STOPPING" or "STOPPING" in daemon.notifier.messages


def test_own_writes_do_not_retrigger_but_a_pixel_edit_does(make_config, photos: Path) -> None:
    config = watch_config(make_config, photos)
    with running_daemon(config) as daemon:
        wait_until(lambda: idle(daemon), what="the start-up scan")
        path = write_photo(photos / "a.jpg", 1)
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, what="tagged once")
        wait_until(looked_at(daemon, 1), what="our own write's events looked at")
        assert daemon.activity.totals["tagged"] == 1
        first = rows(daemon)[path]

        write_photo(path, 7)  # the user replaces the pixels
        wait_until(lambda: daemon.activity.totals["tagged"] == 2, what="re-tagged after edit")
        second = rows(daemon)[path]
        assert second.id == first.id and second.content_hash != first.content_hash
        wait_until(looked_at(daemon, 2), what="the second write's events looked at")
        assert daemon.activity.totals["tagged"] == 2


def test_a_file_written_slowly_is_read_once_complete(make_config, photos: Path) -> None:
    config = watch_config(make_config, photos, settle_seconds=0.8)
    source = write_photo(photos.parent / "src.jpg", 3, size=(400, 300))
    data = source.read_bytes()
    with running_daemon(config) as daemon:
        target = photos / "slow.jpg"
        with open(target, "wb") as out:
            for start in range(0, len(data), len(data) // 8 + 1):
                out.write(data[start : start + len(data) // 8 + 1])
                out.flush()
                time.sleep(0.25)
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, what="tagged")
        wait_until(looked_at(daemon, 1), what="our own write's events looked at")
    assert daemon.activity.totals["failed"] == 0
    assert daemon.activity.totals["tagged"] == 1


def test_500_files_dropped_at_once_are_each_processed_once(make_config, photos: Path) -> None:
    staging = photos.parent / "card"
    for i in range(500):
        write_photo(staging / f"IMG_{i:04d}.jpg", i, size=(64, 64))
    config = watch_config(make_config, photos)
    with running_daemon(config) as daemon:
        shutil.move(staging, photos / "card")  # one directory event: a rescan finds all
        for i in range(500, 520):  # and single files at the same time
            write_photo(photos / f"single_{i}.jpg", i, size=(64, 64))
        wait_until(lambda: daemon.activity.totals["tagged"] >= 520, 180, "520 tagged")
        wait_until(looked_at(daemon, 520), 120, "every photo's own write looked at")
        assert daemon.activity.totals["tagged"] == 520
        assert daemon.activity.totals["failed"] == 0
        assert len(rows(daemon)) == 520


def test_moves_follow_the_photo_and_deletes_leave_the_index(make_config, photos: Path) -> None:
    config = watch_config(make_config, photos)
    with running_daemon(config) as daemon:
        a = write_photo(photos / "a.jpg", 1)
        b = write_photo(photos / "b.jpg", 2)
        wait_until(lambda: daemon.activity.totals["tagged"] == 2, what="2 tagged")
        wait_until(lambda: daemon.queue.depth() == 0, what="empty queue")
        row_id = rows(daemon)[a].id
        (photos / "2024" / "trip").mkdir(parents=True)
        moved = photos / "2024" / "trip" / "renamed.jpg"
        a.rename(moved)
        b.unlink()
        wait_until(lambda: set(rows(daemon)) == {moved}, what="moved row, deleted row gone")
        assert rows(daemon)[moved].id == row_id
        assert daemon.activity.totals["tagged"] == 2  # no re-tagging for a move


def test_catch_up_at_start_finds_what_happened_while_down(make_config, photos: Path) -> None:
    config = watch_config(make_config, photos)
    kept, moved, deleted = (write_photo(photos / f"{n}.jpg", i) for i, n in enumerate("kmd"))
    main(["--config", str(write_yaml(config, photos.parent)), "scan", "--no-caption", str(photos)])
    store = open_store(config.index_path)
    moved_id = store.by_path(moved).id
    store.close()

    new = write_photo(photos / "new.jpg", 9)
    moved_to = photos / "sub" / "m2.jpg"
    moved_to.parent.mkdir()
    moved.rename(moved_to)
    deleted.unlink()
    with running_daemon(config) as daemon:
        wait_until(lambda: set(rows(daemon)) == {kept, new, moved_to}, what="caught up")
        assert rows(daemon)[moved_to].id == moved_id
        assert daemon.activity.totals["tagged"] == 1  # only the new photo needed the model


def test_llm_down_keywords_flow_and_captions_arrive_later(
    make_config, photos: Path, fake_llm
) -> None:
    config = watch_config(make_config, photos, fake_llm.base_url)
    with fake_llm.down(), running_daemon(config) as daemon:
        paths = [write_photo(photos / f"p{i}.jpg", i) for i in range(4)]
        wait_until(lambda: len(rows(daemon)) == 4, what="4 tagged without the LLM")
        assert all(r.state is State.NEEDS_CAPTION for r in rows(daemon).values())
        assert daemon.llm_state() == "down"  # its refusals were seen
        fake_llm.start()  # the server comes back
        wait_until(
            lambda: all(r.state is State.DONE for r in rows(daemon).values()),
            60,
            "captions filled after the LLM returned",
        )
    for entry in (read_tags(p) for p in paths):
        assert entry["XMP-dc:Description"]
        subjects = entry["XMP-dc:Subject"]
        subjects = subjects if isinstance(subjects, list) else [subjects]
        assert len(subjects) == len(set(subjects))


def test_idle_model_is_unloaded_and_loaded_again(make_config, photos: Path) -> None:
    config = watch_config(make_config, photos, idle_unload_minutes=0.01)  # 0.6 s
    with running_daemon(config) as daemon:
        model = daemon.tagger.encoder.model
        wait_until(lambda: not model.loaded, 10, "model unloaded when idle")
        write_photo(photos / "late.jpg", 4)
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, what="tagged after reload")


def test_polling_folder_sees_new_photos(make_config, photos: Path) -> None:
    config = make_config(watch={"poll_folders": [str(photos)], **FAST}, llm={"enabled": False})
    with running_daemon(config) as daemon:
        write_photo(photos / "nfs.jpg", 5)
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, 30, "polled photo tagged")


def test_sighup_reload_picks_up_a_new_folder(make_config, photos: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    config = watch_config(make_config, photos)
    new_config = make_config(
        watch={"folders": [str(photos), str(other)], **FAST}, llm={"enabled": False}
    )
    with running_daemon(config, reload_config=lambda: new_config) as daemon:
        daemon.controls.request_reload()
        wait_until(lambda: len(daemon.watcher.roots) == 2, what="reloaded")
        write_photo(other / "x.jpg", 6)
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, what="new folder watched")
        assert "RELOADING" in daemon.notifier.messages


def test_a_bad_config_on_reload_keeps_the_running_one(make_config, photos: Path) -> None:
    config = watch_config(make_config, photos)

    def broken():
        raise ConfigError("watch.settle_seconds must not be negative")

    with running_daemon(config, reload_config=broken) as daemon:
        daemon.controls.request_reload()
        wait_until(lambda: "READY-after-reload" in daemon.notifier.messages, what="reload done")
        write_photo(photos / "still.jpg", 2)
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, what="still working")


def test_status_reads_the_running_daemon(make_config, photos: Path, capsys) -> None:
    config = watch_config(make_config, photos)
    cfg_file = write_yaml(config, photos.parent)
    with running_daemon(config) as daemon:
        write_photo(photos / "s.jpg", 1)
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, what="tagged")
        wait_until(lambda: published(daemon).get("tagged") == 1, what="state published")
        capsys.readouterr()
        assert main(["--config", str(cfg_file), "status", "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
    assert status["daemon"]["running"] is True
    assert status["daemon"]["pid"] == os.getpid()
    assert status["daemon"]["status"].startswith("watching 1 folder")
    assert status["queued"] == 0
    assert main(["--config", str(cfg_file), "status"]) == 0
    assert "daemon: not running" in capsys.readouterr().out


def test_missing_folder_and_nothing_to_watch_are_clear_errors(make_config, tmp_path) -> None:
    nothing = make_config(llm={"enabled": False})
    with pytest.raises(ConfigError, match="nothing to watch"), running_daemon(nothing):
        pass
    missing = make_config(watch={"folders": [str(tmp_path / "nope")]}, llm={"enabled": False})
    with pytest.raises(ConfigError, match="does not exist"), running_daemon(missing):
        pass


def test_inotify_limit_names_the_folder_that_hit_it(
    make_config, photos: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """The real limit is machine-wide (lowering it would break other processes), so the
    kernel's answer is injected where watchdog asks it: inotify_add_watch fails with
    ENOSPC for the second folder, as when the first used up the watches."""
    from watchdog.observers import inotify_c

    second = tmp_path / "second"
    (second / "2024").mkdir(parents=True)
    real_add_watch = inotify_c.inotify_add_watch

    def add_watch(fd: int, path: bytes, mask: int) -> int:
        if Path(os.fsdecode(path)).is_relative_to(second):
            ctypes.set_errno(errno.ENOSPC)
            return -1
        return real_add_watch(fd, path, mask)

    monkeypatch.setattr(inotify_c, "inotify_add_watch", add_watch)
    config = watch_config(make_config, photos)
    config = dataclasses.replace(
        config, watch=dataclasses.replace(config.watch, folders=(photos, second))
    )
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        code = main(["--config", str(write_yaml(config, tmp_path)), "run"])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    message = capsys.readouterr().err
    assert code == 2
    assert f"cannot watch {second}: the inotify watch limit is reached" in message
    assert f"cannot watch {photos}" not in message
    assert "echo fs.inotify.max_user_watches=524288 | sudo tee" in message
    assert "sudo sysctl --system" in message and "watch.poll_folders" in message


def test_lost_inotify_events_trigger_a_rescan(make_config, photos: Path, caplog) -> None:
    """A real IN_Q_OVERFLOW: watchdog's reader is held while more events than the
    kernel queues for one inotify instance (fs.inotify.max_queued_events) pile up; the
    next photo's events are dropped by the kernel, only the rescan can find it."""
    from watchdog.observers.inotify_c import InotifyFD

    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    noise = photos / "noise"
    noise.mkdir()
    config = watch_config(make_config, photos)

    def readers() -> set[InotifyFD]:  # one reader thread per inotify observer
        return {t for t in threading.enumerate() if isinstance(t, InotifyFD)}

    earlier = readers()
    with running_daemon(config) as daemon, caplog.at_level(logging.WARNING):
        wait_until(lambda: not daemon.catching_up, what="the start-up scan")
        (reader,) = readers() - earlier
        # Held, its lock stops the daemon's reader before its next read: the one way to
        # pause it (max_queued_events itself is machine-wide).
        with reader._lock:
            for i in range(limit):  # 2 events each (create, close), more than the limit
                (noise / f"n{i:05d}.txt").touch()
            write_photo(photos / "unseen.jpg", 3)
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, what="rescan found it")
    lost = [r.getMessage() for r in caplog.records if r.name.startswith("watchdog")]
    assert "Inotify queue overflowed; filesystem events were lost" in lost
    assert any("file events were lost" in r.getMessage() for r in caplog.records)


def published(daemon) -> dict:
    """The totals the daemon last published for `photoscribe status`."""
    state = read_state(daemon.store, "daemon")
    return state[0]["totals"] if state else {}


def write_yaml(config, folder: Path) -> Path:
    import dataclasses

    import yaml

    from photoscribe.config import is_key

    def plain(value):  # the keys a file may set (not derived fields such as llm.base_urls)
        if dataclasses.is_dataclass(value):
            fields = [f for f in dataclasses.fields(value) if is_key(f)]
            return {f.name: plain(getattr(value, f.name)) for f in fields}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return str(value) if isinstance(value, Path) else value

    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(plain(config)), encoding="utf-8")
    return path


def test_temp_files_of_our_writes_are_not_photos(make_config, photos: Path) -> None:
    config = watch_config(make_config, photos)
    with running_daemon(config) as daemon:
        Image.new("RGB", (32, 32)).save(photos / ".a.jpg.0f0f0f0f.photoscribe-tmp", "JPEG")
        write_photo(photos / "real.jpg", 2)
        wait_until(lambda: daemon.activity.totals["tagged"] == 1, what="tagged")
        # the temporary file's events came first (one observer thread, in order)
        wait_until(looked_at(daemon, 1), what="our own write's events looked at")
        assert set(rows(daemon)) == {photos / "real.jpg"}
