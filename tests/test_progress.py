from __future__ import annotations

import io
import logging

import pytest

from photoscribe.progress import Progress


def test_bar_on_a_terminal_redraws_one_line() -> None:
    out = io.StringIO()
    progress = Progress(out, bar=True)
    progress.start(3, "photos")
    for outcome in ("tagged", "failed", "skipped"):
        progress.advance(outcome)
    progress.finish()
    text = out.getvalue()
    assert "\r" in text and text.endswith("\n")
    assert "photos 3/3" in text and "1 failed" in text


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
    assert "photos 2/2" in caplog.text
