"""A photo is written once, even when photoscribe is killed at the worst moment.

The worst moments are forced, not hoped for: a child process runs the real `photoscribe
scan` with one store (or journal, or file-writing) call replaced by one that SIGKILLs the
child from inside, right before or right after the real call. Then a second scan runs
as usual and must neither tag nor write any photo a second time: a photo whose file
already holds photoscribe's write (same pixels, same model, recorded in photoscribe's XMP
namespace) is adopted into the index from what the file says.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from photoscribe.cli import main
from photoscribe.fsutil import is_temp_name
from photoscribe.records import State
from photoscribe.store import open_store

from conftest import TESTS, tiny_config_dict
from fixtures.daemon import write_photo
from fixtures.exiftool import read_tags

KILLER = r"""
import functools, os, signal, sys

sys.path.insert(0, TESTS)
where, name, when, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if where == "worker":  # files are written in a worker process: the kill comes from there
    from photoscribe import service
    from fixtures import crashers

    service.scan = functools.partial(service.scan, write=getattr(crashers, name))
    from photoscribe.cli import main
    sys.exit(main(sys.argv[5:]))
if where == "store":
    from photoscribe.store.photos import PhotoStore as owner
elif where == "journal":
    from photoscribe.store.journal import Journal as owner
else:
    import photoscribe.fsutil as owner
real = getattr(owner, name)
calls = 0

def deadly(*args, **kwargs):
    global calls
    calls += 1
    if calls == nth:
        if when == "after":
            real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)

setattr(owner, name, deadly)
from photoscribe.cli import main
sys.exit(main(sys.argv[5:]))
"""
N = 5


def configure(tmp_path: Path, base_url: str | None = None, mode: str = "auto") -> Path:
    raw = tiny_config_dict(tmp_path, base_url or "http://127.0.0.1:9/v1")
    if base_url is None:
        raw["llm"] = {"enabled": False}
    raw["metadata"] = {"mode": mode}
    # One write at a time: the kill lands at the nth call of a function, and each test
    # knows which photos were written before it (the soak test kills parallel writers).
    raw.setdefault("scan", {})["write_workers"] = 1
    cfg = tmp_path / f"config-{'llm' if base_url else 'nollm'}.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return cfg


def killed_scan(tmp_path: Path, cfg: Path, folder: Path, at: str, nth: int) -> None:
    """`photoscribe scan` in a child SIGKILLed at the ``nth`` call of ``at``
    ("store.save_tagged:before", "journal.record:after", ...)."""
    target, when = at.split(":")
    where, name = target.split(".")
    script = tmp_path / "killer.py"
    script.write_text(KILLER.replace("TESTS", repr(str(TESTS))), encoding="utf-8")
    args = ["-c", str(cfg), "scan", str(folder)]
    child = subprocess.run(
        [sys.executable, str(script), where, name, when, str(nth), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr


def scan(cfg: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    main(["-c", str(cfg), "scan", str(folder)])
    out, err = capsys.readouterr()
    return out + err


def store_of(tmp_path: Path):
    return open_store(tmp_path / "state" / "index.sqlite3")


def writes(tmp_path: Path) -> dict[str, int]:
    store = store_of(tmp_path)
    try:
        rows = store.query("SELECT path, count(*) FROM journal GROUP BY path")
        return {Path(r[0]).name: r[1] for r in rows}
    finally:
        store.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


@pytest.fixture
def photos(tmp_path: Path) -> dict[Path, np.ndarray]:
    folder = tmp_path / "photos"
    paths = [write_photo(folder / f"p{i}.jpg", i, size=(200, 150)) for i in range(N)]
    return {p: pixels(p) for p in paths}


@pytest.mark.parametrize("mode", ["auto", "sidecar"])
def test_a_kill_between_the_rename_and_the_index_commit_adopts_not_redoes(
    tmp_path: Path, photos: dict[Path, np.ndarray], capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    cfg = configure(tmp_path, mode=mode)
    folder = tmp_path / "photos"
    third = folder / "p2.jpg"
    target = third if mode == "auto" else folder / "p2.jpg.xmp"  # where the write goes
    killed_scan(tmp_path, cfg, folder, "store.save_tagged:before", 3)
    store = store_of(tmp_path)
    assert store.by_path(third) is None  # the file was replaced, the index never learned it
    store.close()
    in_file = read_tags(target)
    assert in_file.get("XMP-photoscribe:ContentHash"), in_file
    written = digest(target)
    assert writes(tmp_path) == {"p0.jpg": 1, "p1.jpg": 1, "p2.jpg": 1}

    out = scan(cfg, folder, capsys)
    assert f"{N} photos: {N - 3} tagged, 3 skipped (already done), 0 failed" in out, out
    assert digest(target) == written  # not written again
    assert writes(tmp_path) == {p.name: 1 for p in photos}
    store = store_of(tmp_path)
    row = store.by_path(third)
    assert row.state is State.NEEDS_CAPTION and row.content_hash
    assert [k.label for k in row.keywords] == as_list(in_file.get("XMP-dc:Subject"))
    assert store.embedding_of(row.id)  # searchable like any other photo
    store.close()
    for path, before in photos.items():
        assert np.array_equal(pixels(path), before), path


def test_a_kill_after_the_journal_entry_but_before_the_rename_leaves_one_entry(
    tmp_path: Path, photos: dict[Path, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = configure(tmp_path)
    folder = tmp_path / "photos"
    third = folder / "p2.jpg"
    untouched = digest(third)
    killed_scan(tmp_path, cfg, folder, "journal.record:after", 3)
    assert digest(third) == untouched  # recorded, never written
    assert writes(tmp_path)["p2.jpg"] == 1

    out = scan(cfg, folder, capsys)
    assert f"{N} photos: {N - 2} tagged, 2 skipped (already done), 0 failed" in out, out
    assert digest(third) != untouched
    assert writes(tmp_path) == {p.name: 1 for p in photos}  # the entry that never landed went


def test_a_kill_while_the_temp_file_is_written_leaves_no_temp_file(
    tmp_path: Path, photos: dict[Path, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = configure(tmp_path)
    folder = tmp_path / "photos"
    killed_scan(tmp_path, cfg, folder, "worker.kill_scan_mid_write:-", 0)
    left = [p.name for p in folder.iterdir() if is_temp_name(p.name)]
    assert len(left) == 1, left  # the killed write's half-written copy

    scan(cfg, folder, capsys)
    assert [p.name for p in folder.iterdir() if is_temp_name(p.name)] == []
    assert writes(tmp_path) == {p.name: 1 for p in photos}
    for path, before in photos.items():
        assert np.array_equal(pixels(path), before), path


def test_a_kill_between_a_caption_write_and_its_commit_adopts_the_caption(
    tmp_path: Path, photos: dict[Path, np.ndarray], capsys: pytest.CaptureFixture[str], fake_llm
) -> None:
    folder = tmp_path / "photos"
    scan(configure(tmp_path), folder, capsys)  # keywords only: the LLM is off
    with_llm = configure(tmp_path, fake_llm.base_url)
    killed_scan(tmp_path, with_llm, folder, "store.save_caption:before", 1)
    store = store_of(tmp_path)
    waiting = [r for r in store.rows_under(folder) if r.state is State.NEEDS_CAPTION]
    store.close()
    assert len(waiting) == N
    captioned = [p for p in photos if read_tags(p).get("XMP-photoscribe:AddedDescription")]
    assert len(captioned) == 1, captioned  # in the file, not in the index
    (photo,) = captioned
    written, asked = digest(photo), len(fake_llm.requests)

    out = scan(with_llm, folder, capsys)
    assert f"{N - 1} captions written" in out, out
    assert len(fake_llm.requests) - asked == N - 1  # the adopted one was not asked again
    assert digest(photo) == written
    store = store_of(tmp_path)
    row = store.by_path(photo)
    assert row.state is State.DONE
    assert row.caption == read_tags(photo)["XMP-photoscribe:AddedDescription"]
    store.close()
    assert writes(tmp_path) == {p.name: 2 for p in photos}  # keywords, then the caption
