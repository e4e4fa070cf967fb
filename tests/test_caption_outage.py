"""Zero captions lost when the LLM server goes away in the middle of a 200-photo scan.

The real CLI scans 200 small synthetic photos with the tiny CLIP, captions coming from
the fake OpenAI server on 127.0.0.1. The outage is driven by the scan's own progress:
the server goes down when photo ``DOWN_AT`` has been tagged and (case A) comes back at
photo ``BACK_AT``, or (case B) stays down until the scan has finished. Tagging is paced
at ``TAG_PACE_S`` a photo (a real CLIP on a small CPU is slower still), so the outage
lies inside the scan rather than racing it.
"""

from __future__ import annotations

import functools
import http.client
import json
import logging
import math
import re
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from photoscribe.caption import client
from photoscribe.cli import main
from photoscribe.config import LLMConfig
from photoscribe.records import Keyword, State
from photoscribe.vision.tagger import Tagger

from conftest import tiny_config_dict
from fakes.openai_server import FakeOpenAI
from fixtures.daemon import wait_until
from fixtures.synthetic import COLOURS, SHAPES, draw_shape

N_PHOTOS = 200
PNG_EVERY = 10  # every 10th photo is a PNG, the rest JPEGs
DOWN_AT, BACK_AT = 40, 140  # photos tagged when the server goes down / comes back
TAG_PACE_S = 0.025  # at least this long per photo tagged
COOLDOWN_S = 0.5  # llm.cooldown in case A (default: 60 s, longer than these scans)
LLM = {"timeout": 2, "retries": 1}
CONCURRENCY = LLMConfig().concurrency
SUMMARY_DONE = f"{N_PHOTOS} photos: {N_PHOTOS} tagged, 0 skipped (already done), 0 failed; "
SUMMARY = re.compile(
    r"(\d+) photos: (\d+) tagged, (\d+) skipped [^,]*, (\d+) failed; "
    r"(\d+) captions written, (\d+) waiting"
)


# -- the photos, the run, the outage ----------------------------------------------------------


def make_photos(folder: Path) -> dict[Path, np.ndarray]:
    """N_PHOTOS 96×96 photos; returns their pixels, to check the writes kept them."""
    folder.mkdir()
    colours = list(COLOURS)
    pixels = {}
    for i in range(N_PHOTOS):
        img = draw_shape(colours[i % len(colours)], SHAPES[i % len(SHAPES)], (96, 96), seed=i)
        path = folder / f"photo_{i:03d}.{'png' if i % PNG_EVERY == 0 else 'jpg'}"
        img.save(path, **({} if path.suffix == ".png" else {"quality": 90}))
        pixels[path] = read_pixels(path)
    return pixels


def read_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


class Outage:
    """Paces tagging and takes the server down / back at given numbers of photos tagged."""

    def __init__(self, llm: FakeOpenAI, mode: str, back_at: int | None) -> None:
        self.llm, self.mode, self.back_at = llm, mode, back_at
        self.tagged = 0
        self.down_at_s: float | None = None
        self.back_at_s: float | None = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = Tagger.tag

        def tag(tagger: Tagger, tensors: list) -> list:
            started = time.monotonic()
            result = original(tagger, tensors)
            if self._paced:
                time.sleep(max(0.0, TAG_PACE_S * len(tensors) - (time.monotonic() - started)))
            self.tagged += len(tensors)
            self._advance()
            return result

        monkeypatch.setattr(Tagger, "tag", tag)

    @property
    def _paced(self) -> bool:
        """Until the outage, and through it when the server is to come back in the scan."""
        return self.down_at_s is None or self.back_at is not None

    def _advance(self) -> None:
        if self.down_at_s is None and self.tagged >= DOWN_AT:
            self.llm.go_down(self.mode)
            self.down_at_s = time.monotonic()
        if self.back_at is not None and self.back_at_s is None and self.tagged >= self.back_at:
            self.come_back()

    def come_back(self) -> None:
        self.llm.come_back()
        self.back_at_s = time.monotonic()

    @property
    def seconds_down(self) -> float:
        assert self.down_at_s is not None and self.back_at_s is not None
        return self.back_at_s - self.down_at_s


class Run:
    """The real CLI in-process, with a config file for the fake server."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], llm: FakeOpenAI):
        self.capsys = capsys
        self.index = tmp_path / "state" / "index.sqlite3"
        self.config = tmp_path / "config.yaml"
        self.raw = tiny_config_dict(tmp_path, llm.base_url)
        self.configure()

    def configure(self, **llm: float) -> None:
        self.raw["llm"].update(LLM | llm)
        self.config.write_text(yaml.safe_dump(self.raw))

    def __call__(self, *args: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main(["--config", str(self.config), *args])
        return code, self.capsys.readouterr().out

    def rows(self) -> list[sqlite3.Row]:
        with sqlite3.connect(self.index) as conn:
            conn.row_factory = sqlite3.Row
            return conn.execute("SELECT path, state, keywords, caption FROM photos").fetchall()


@pytest.fixture
def scene(tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_llm: FakeOpenAI):
    folder = tmp_path / "photos"
    return folder, make_photos(folder), Run(tmp_path, capsys, fake_llm)


class ClientLog:
    """What the Captioner logged: each failed HTTP attempt once, each opening of the breaker."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def _count(self, text: str) -> int:
        records = self.caplog.records
        return sum(r.name == client.log.name and text in str(r.msg) for r in records)

    @property
    def failed_attempts(self) -> int:
        return self._count("LLM attempt")

    @property
    def breaker_openings(self) -> int:
        return self._count("LLM unavailable; no captions for")


@pytest.fixture
def client_log(caplog: pytest.LogCaptureFixture) -> ClientLog:
    caplog.set_level(logging.DEBUG, logger=client.log.name)
    return ClientLog(caplog)


# -- checks -------------------------------------------------------------------------------------


def read_folder(folder: Path) -> dict[Path, dict]:
    """Every photo's tags from one exiftool call over the folder."""
    out = subprocess.run(
        ["exiftool", "-j", "-G1", "-a", "-struct", "-ext", "jpg", "-ext", "png", str(folder)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {Path(entry["SourceFile"]): entry for entry in json.loads(out)}


def as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def check_index(run: Run) -> dict[Path, sqlite3.Row]:
    """Exactly one row per photo, each with keywords and no keyword twice."""
    rows = run.rows()
    assert len(rows) == N_PHOTOS
    by_path = {Path(r["path"]): r for r in rows}
    assert len(by_path) == N_PHOTOS
    for row in rows:
        labels = [label for label, _ in json.loads(row["keywords"])]
        assert labels and len(labels) == len(set(labels)), row["path"]
    return by_path


def check_files(folder: Path, run: Run, pixels: dict[Path, np.ndarray]) -> None:
    """The files hold what the index holds: keywords once each, the caption once or not yet."""
    index = check_index(run)
    tags = read_folder(folder)
    assert set(tags) == set(index) == set(pixels)
    for path, meta in tags.items():
        row = index[path]
        assert "ExifTool:Error" not in meta, (path, meta["ExifTool:Error"])
        assert np.array_equal(read_pixels(path), pixels[path]), f"pixels changed in {path}"
        labels = [label for label, _ in json.loads(row["keywords"])]
        subjects = as_list(meta.get("XMP-dc:Subject"))
        assert sorted(subjects) == sorted(labels), (path, subjects)
        if path.suffix == ".jpg":
            assert sorted(as_list(meta.get("IPTC:Keywords"))) == sorted(labels), path
        description = meta.get("XMP-dc:Description")
        if row["state"] == State.DONE:
            assert description == row["caption"] and isinstance(description, str), path
            assert description.count(".") == 1, f"caption written twice? {description!r}"
            assert meta.get("IFD0:ImageDescription", description) == description, path
        else:
            assert row["state"] == State.NEEDS_CAPTION and description is None, path


def states(run: Run) -> Counter:
    return Counter(State(r["state"]) for r in run.rows())


def summary_counts(out: str) -> tuple[int, int]:
    """(captions written, waiting) from a scan's summary line, checking that it adds up."""
    found = SUMMARY.search(out)
    assert found, out
    total, tagged, skipped, failed, captioned, waiting = map(int, found.groups())
    assert total == tagged + skipped + failed == N_PHOTOS, found.group(0)
    return captioned, waiting


def cheap_enough(seconds_down: float, cooldown: float) -> int:
    """The most HTTP attempts an outage may cost: the calls that open the breaker and the
    ones in flight with them, plus one trial a cooldown, each with its retries."""
    calls = client.FAILURES_TO_OPEN + CONCURRENCY + math.ceil(seconds_down / cooldown) + 1
    return calls * (LLM["retries"] + 1)


# -- the fake server's outages ------------------------------------------------------------------


def ask(llm: FakeOpenAI) -> int | str:
    """One chat request: the HTTP status, or 'refused' / 'dropped'."""
    body = json.dumps({"model": "Qwen3-1.7B", "messages": [{"role": "user", "content": "x: a"}]})
    request = urllib.request.Request(llm.base_url + "/chat/completions", body.encode())
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError as exc:
        return "refused" if isinstance(exc.reason, ConnectionRefusedError) else "dropped"
    except (http.client.RemoteDisconnected, ConnectionResetError):  # closed while it asked
        return "dropped"


@pytest.mark.parametrize(("mode", "down"), [("status", 503), ("refused", "refused")])
def test_fake_goes_down_after_n_requests_and_comes_back(
    fake_llm: FakeOpenAI, mode: str, down: int | str
) -> None:
    fake_llm.go_down(mode, after=2, status=503)
    assert [ask(fake_llm), ask(fake_llm)] == [200, 200]
    wait_until(lambda: fake_llm.is_down and fake_llm.outage_settled, 10, "the outage in place")
    assert [ask(fake_llm), ask(fake_llm)] == [down, down]  # "refused": it closed in a thread
    assert fake_llm.requests_while_down == (2 if mode == "status" else 0)
    fake_llm.come_back()
    assert not fake_llm.is_down and ask(fake_llm) == 200


# -- case A: back before the scan ends -------------------------------------------------------


@pytest.mark.parametrize("mode", ["refused", "status"])
def test_outage_healed_within_the_scan_loses_no_caption(
    scene, fake_llm: FakeOpenAI, client_log: ClientLog, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    folder, pixels, run = scene
    run.configure(cooldown=COOLDOWN_S)
    outage = Outage(fake_llm, mode, back_at=BACK_AT)
    outage.install(monkeypatch)

    code, out = run("scan", str(folder))

    assert code == 0, out
    assert outage.tagged == N_PHOTOS  # every photo tagged once
    assert SUMMARY_DONE + f"{N_PHOTOS} captions written, 0 waiting for the LLM" in out, out
    assert summary_counts(out) == (N_PHOTOS, 0)
    assert states(run) == {State.DONE: N_PHOTOS}
    check_files(folder, run, pixels)
    failed = client_log.failed_attempts
    assert client_log.breaker_openings >= 1, "the outage did not open the circuit breaker"
    assert failed <= cheap_enough(outage.seconds_down, COOLDOWN_S), failed
    if mode == "status":
        assert fake_llm.requests_while_down == failed


# -- case B: still down when the scan ends -----------------------------------------------------


@pytest.mark.parametrize(("mode", "then"), [("refused", "caption"), ("status", "scan")])
def test_outage_past_the_scan_leaves_keywords_then_fills_captions(
    scene,
    fake_llm: FakeOpenAI,
    client_log: ClientLog,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    then: str,
) -> None:
    folder, pixels, run = scene
    outage = Outage(fake_llm, mode, back_at=None)
    outage.install(monkeypatch)

    code, out = run("scan", str(folder))

    assert code == 0, out
    assert fake_llm.is_down and outage.tagged == N_PHOTOS
    captioned, waiting = summary_counts(out)
    assert captioned + waiting == N_PHOTOS and waiting >= N_PHOTOS - DOWN_AT, out
    assert states(run) == {State.DONE: captioned, State.NEEDS_CAPTION: waiting}
    check_files(folder, run, pixels)  # keywords in every photo, captions only in DONE ones
    failed = client_log.failed_attempts
    assert client_log.breaker_openings == 1  # and no trial within the 60 s cooldown
    assert failed <= cheap_enough(0.0, LLMConfig().cooldown), failed
    if mode == "status":
        assert fake_llm.requests_while_down == failed

    outage.come_back()
    before = len(fake_llm.requests)
    code, out = run("caption", "--retry-pending") if then == "caption" else run("scan", str(folder))

    assert code == 0, out
    assert outage.tagged == N_PHOTOS  # nothing tagged again
    if then == "caption":
        assert out.startswith(f"{waiting} captions written, 0 failed, 0 still waiting"), out
    else:
        assert summary_counts(out) == (waiting, 0)
        assert f"0 tagged, {N_PHOTOS} skipped" in out, out
    assert len(fake_llm.requests) - before == waiting  # one request per missing caption
    assert states(run) == {State.DONE: N_PHOTOS}
    check_files(folder, run, pixels)

    before = len(fake_llm.requests)
    code, out = run("scan", str(folder))
    assert code == 0 and f"0 tagged, {N_PHOTOS} skipped" in out, out
    assert summary_counts(out) == (0, 0)
    assert len(fake_llm.requests) == before  # nothing left to ask


# -- the backlog pass when the breaker's cooldown has just ended ----------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Collect:
    """Stands in for the writer and the store: what the backlog pass hands them."""

    def __init__(self) -> None:
        self.jobs: list = []
        self.problems: list[tuple[int, str]] = []

    def put(self, job: object) -> None:
        self.jobs.append(job)

    def note_caption_problem(self, row_id: int, reason: str) -> None:
        self.problems.append((row_id, reason))


def test_backlog_after_the_cooldown_fills_every_caption(fake_llm: FakeOpenAI) -> None:
    from photoscribe.backlog import fill_captions
    from photoscribe.captioning import CaptionStage
    from photoscribe.progress import Progress
    from photoscribe.store.photos import PhotoRow

    clock = Clock()
    cfg = LLMConfig(base_url=fake_llm.base_url, timeout=2, retries=0)
    captioner = client.Captioner(cfg, "", sleep=lambda _: None, clock=clock)
    keywords = (Keyword("red", 0.6), Keyword("circle", 0.4))
    fake_llm.go_down("status")
    for _ in range(client.FAILURES_TO_OPEN):
        with pytest.raises(client.CaptionUnavailable):
            captioner.caption(keywords)
    assert not captioner.available
    fake_llm.come_back()
    clock.now += cfg.cooldown + 1  # the server is back and the cooldown is over
    waiting = State.NEEDS_CAPTION
    row = functools.partial(PhotoRow, size=1, mtime_ns=1, content_hash="h", state=waiting)
    rows = [
        row(
            id=i,
            path=Path(f"/p/{i}.jpg"),
            model="m",
            keywords=keywords,
            caption=None,
            error=None,
            attempts=0,
            updated_at=0.0,
        )
        for i in range(10)
    ]
    stage, collect = CaptionStage(captioner, 2, 8), Collect()
    fill_captions(rows, stage, collect, collect, Progress(bar=False))  # type: ignore[arg-type]
    stage.drain()
    stage.close()
    assert (len(collect.jobs), collect.problems) == (len(rows), [])
