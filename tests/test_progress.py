from __future__ import annotations

import io
import logging
import re

import pytest

from photoscribe.progress import Progress


def test_bar_on_a_terminal_redraws_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("photoscribe.progress.DRAW_EVERY_S", 3600.0)  # only the last is drawn
    out = io.StringIO()
    progress = Progress(out, bar=True)
    progress.start(3, "photos")
    for outcome in ("tagged", "failed", "skipped"):
        progress.advance(outcome)
    progress.finish()
    text = out.getvalue()
    assert text.startswith("\r") and text.endswith("\x1b[K\n")
    frames = text.removesuffix("\n").split("\r")[1:]
    # the last advance draws the full bar and finish() draws it once more, then ends the line
    assert len(frames) == 2
    for frame in frames:
        assert re.fullmatch(r"█{24} photos 3/3 · \d+\.\d/s · 1 failed\x1b\[K", frame), frame


def test_plain_log_lines_otherwise(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    out = io.StringIO()
    progress = Progress(out, bar=False)
    monkeypatch.setattr("photoscribe.progress.LOG_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="photoscribe.progress"):
        progress.start(2, "photos")
        progress.advance("tagged")
        progress.advance("tagged")
        progress.finish()
    assert out.getvalue() == ""
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    for count, line in enumerate(lines, 1):
        assert re.fullmatch(rf"photos {count}/2 · \d+\.\d/s", line), line
