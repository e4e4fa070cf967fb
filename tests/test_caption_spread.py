"""Captions spread over several LLM servers (``llm.base_url`` a list), over real HTTP.

Real ``Captioner``s (the real ``openai`` client) against fake OpenAI-compatible servers
on 127.0.0.1, some healthy, some down (a dead port, or an outage answering 503).
"""

from __future__ import annotations

import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from photoscribe.builders import build_captions
from photoscribe.caption import Captioner
from photoscribe.caption.client import FAILURES_TO_OPEN
from photoscribe.caption.spread import Spread
from photoscribe.cli import main
from photoscribe.config import LLMConfig
from photoscribe.errors import CaptionRejected, CaptionUnavailable
from photoscribe.records import Keyword
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fakes.openai_server import FakeOpenAI, english_caption
from fixtures.exiftool import read_tags
from fixtures.synthetic import draw_shape

KEYWORDS = [Keyword("red", 0.62), Keyword("circle", 0.31)]
CAPTION = "A photo showing red and circle."
N = 20
COOLDOWN = 600.0  # no breaker reopens by itself during a test


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def dead_url() -> str:
    """A URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def captioner(url: str, clock: Clock | None = None, **llm) -> Captioner:
    cfg = LLMConfig(base_url=url, **{"timeout": 5.0, "retries": 1, "cooldown": COOLDOWN, **llm})
    extra = {"clock": clock} if clock is not None else {}
    return Captioner(cfg, "", sleep=lambda s: None, **extra)


@pytest.fixture
def servers():
    """Two fake servers, started; stopped after the test."""
    with FakeOpenAI() as one, FakeOpenAI() as two:
        yield one, two


def skips(caplog: pytest.LogCaptureFixture, url: str) -> int:
    """How often the spread skipped ``url`` because it failed (its INFO log)."""
    return sum(
        1
        for r in caplog.records
        if r.name == "photoscribe.caption.spread"
        and r.levelno == logging.INFO
        and "failed, skipping it" in r.getMessage()
        and url in r.getMessage()
    )


def test_two_healthy_servers_share_the_captions(servers) -> None:
    one, two = servers
    for server in servers:
        server.set_behavior("slow", delay=0.05)  # requests overlap: in flight counts
    spread = Spread([captioner(one.base_url), captioner(two.base_url)])
    with ThreadPoolExecutor(4) as pool:
        captions = list(pool.map(lambda _: spread.caption(KEYWORDS), range(N)))
    spread.close()
    assert captions == [CAPTION] * N
    asked = (len(one.requests), len(two.requests))
    assert sum(asked) == N, asked  # each caption asked once, of one server
    assert min(asked) >= N // 4, f"not balanced: {asked}"
    assert spread.in_flight() == (0, 0)


def test_one_at_a_time_the_servers_take_turns(servers) -> None:
    one, two = servers
    spread = Spread([captioner(one.base_url), captioner(two.base_url)])
    for _ in range(6):
        assert spread.caption(KEYWORDS) == CAPTION
    spread.close()
    assert (len(one.requests), len(two.requests)) == (3, 3)


def test_a_dead_server_is_skipped_then_no_longer_asked(
    fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="photoscribe.caption.spread")
    dead = dead_url()
    spread = Spread([captioner(dead), captioner(fake_llm.base_url)])  # the dead one first
    captions = [spread.caption(KEYWORDS) for _ in range(N)]
    spread.close()
    assert captions == [CAPTION] * N  # every caption arrives
    assert len(fake_llm.requests) == N
    # asked until its circuit breaker opened, then never again
    assert skips(caplog, dead) == FAILURES_TO_OPEN
    assert not spread.endpoints[0].available and spread.available


def test_a_server_in_an_outage_is_asked_until_its_breaker_opens(servers) -> None:
    down, up = servers
    down.go_down("status", status=503)
    retries = 1
    spread = Spread([captioner(down.base_url, retries=retries), captioner(up.base_url)])
    captions = [spread.caption(KEYWORDS) for _ in range(N)]
    assert captions == [CAPTION] * N
    # each of the captions that opened the breaker tried the server 1 + retries times;
    # after that the server got no request at all
    assert down.requests_while_down == FAILURES_TO_OPEN * (1 + retries)
    assert len(up.requests) == N
    spread.close()


def test_a_server_back_after_the_cooldown_gets_captions_again(servers) -> None:
    flaky, steady = servers
    clock = Clock()
    spread = Spread([captioner(flaky.base_url, clock), captioner(steady.base_url, clock)])
    flaky.go_down("status", status=503)
    for _ in range(N // 2):
        assert spread.caption(KEYWORDS) == CAPTION
    assert not spread.endpoints[0].available
    flaky.come_back()
    before = len(flaky.requests)
    clock.now += COOLDOWN + 1  # the health check asks again (one trial, then as before)
    for _ in range(N // 2):
        assert spread.caption(KEYWORDS) == CAPTION
    spread.close()
    assert len(flaky.requests) - before >= N // 4


def test_all_servers_down_is_unavailable_and_says_so() -> None:
    urls = [dead_url(), dead_url()]
    spread = Spread([captioner(url, retries=0) for url in urls])
    with pytest.raises(CaptionUnavailable, match="all 2 LLM servers failed; the last: ") as err:
        spread.caption(KEYWORDS)
    assert "cannot reach the LLM server" in str(err.value)
    for _ in range(FAILURES_TO_OPEN - 1):  # until both breakers are open
        with pytest.raises(CaptionUnavailable):
            spread.caption(KEYWORDS)
    assert not spread.available
    with pytest.raises(CaptionUnavailable, match="all 2 LLM servers failed and are not asked"):
        spread.caption(KEYWORDS)
    spread.close()


def test_a_rejected_reply_is_not_asked_of_another_server(servers) -> None:
    bad, good = servers
    bad.set_behavior("empty")  # a reply, but no caption in it
    spread = Spread([captioner(bad.base_url), captioner(good.base_url)])
    with pytest.raises(CaptionRejected):
        spread.caption(KEYWORDS)
    assert len(bad.requests) == 2  # the Captioner's own second, stricter try
    assert len(good.requests) == 0
    assert spread.in_flight() == (0, 0)
    spread.close()


class Stub:
    """An endpoint without a server: available or not, on trial or not."""

    def __init__(self, url: str, available: bool = True, on_trial: bool = False) -> None:
        self.url, self.available, self.on_trial = url, available, on_trial
        self.asked = 0
        self.gate: threading.Event | None = None

    def caption(self, keywords, context=None) -> str:
        self.asked += 1
        if self.gate is not None:
            self.gate.wait(5)
        return f"from {self.url}"

    def close(self) -> None:
        pass


def test_an_open_breaker_is_passed_over_and_a_trial_avoided() -> None:
    closed, trial, ok = Stub("a", available=False), Stub("b", on_trial=True), Stub("c")
    spread = Spread([closed, trial, ok])
    assert [spread.caption(KEYWORDS) for _ in range(3)] == ["from c"] * 3
    ok.available = False  # only the one on trial is left: ask it (it waits for the trial)
    assert spread.caption(KEYWORDS) == "from b"


def test_the_least_busy_server_is_asked() -> None:
    busy, idle = Stub("busy"), Stub("idle")
    busy.gate = threading.Event()
    spread = Spread([busy, idle])
    with ThreadPoolExecutor(2) as pool:
        stuck = pool.submit(spread.caption, KEYWORDS)  # busy: one in flight
        while spread.in_flight() != (1, 0):
            threading.Event().wait(0.01)
        assert [spread.caption(KEYWORDS) for _ in range(3)] == ["from idle"] * 3
        busy.gate.set()
        assert stuck.result() == "from busy"


def test_build_captions_spreads_over_a_list_of_servers(make_config) -> None:
    urls = ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
    stage = build_captions(make_config(base_url=urls))
    try:
        assert isinstance(stage.source, Spread)
        assert [e.cfg.base_url for e in stage.source.endpoints] == urls
        assert all(len(e.cfg.base_urls) == 1 for e in stage.source.endpoints)
    finally:
        stage.close()
    stage = build_captions(make_config(base_url=urls[0]))
    try:
        assert isinstance(stage.source, Captioner)
    finally:
        stage.close()


def test_scan_with_a_dead_server_listed_first_captions_every_photo(
    tmp_path: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shapes = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "circle")]
    for i, (colour, shape) in enumerate(shapes):
        draw_shape(colour, shape, size=(320, 240), seed=2000 + i).save(photos / f"{i}.jpg")
    raw = tiny_config_dict(tmp_path, [dead_url(), fake_llm.base_url])  # type: ignore[arg-type]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    code = main(["-c", str(config), "scan", str(photos)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "4 captions written, 0 waiting for the LLM" in out.splitlines()[0], out
    store = open_store(tmp_path / "state" / "index.sqlite3", readonly=True)
    for i in range(len(shapes)):
        row = store.by_path(photos / f"{i}.jpg")
        assert row.caption == english_caption([k.label for k in row.keywords]), row
        assert read_tags(photos / f"{i}.jpg")["XMP-dc:Description"] == row.caption
    assert len(fake_llm.requests) >= len(shapes)
