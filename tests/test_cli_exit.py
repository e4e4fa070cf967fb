"""The exit codes and messages the README promises, from the real CLI in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import tiny_config_dict
from fixtures.synthetic import draw_shape

DAEMON = Path(__file__).parent.parent / "daemon"


def photoscribe(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    environ = {**os.environ, "PYTHONPATH": str(DAEMON), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "photoscribe", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        **kw,
    )


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = photoscribe(*args, env=env)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def write_config(tmp_path: Path, **top) -> Path:
    raw = {**tiny_config_dict(tmp_path), **top}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_an_index_folder_that_cannot_be_created_exits_4_naming_the_path(tmp_path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    index = tmp_path / "a-file" / "state" / "index.sqlite3"
    config = write_config(tmp_path, index_path=str(index))
    (tmp_path / "photos").mkdir()
    for args in (["scan", str(tmp_path / "photos")], ["caption", "--retry-pending"]):
        done = run("-c", str(config), *args)
        assert done.returncode == 4, done.stderr
        assert "Traceback" not in done.stderr
        assert str(index.parent) in done.stderr and "index_path" in done.stderr, done.stderr


def test_status_without_an_index_exits_4(tmp_path) -> None:
    config = write_config(tmp_path)
    done = run("-c", str(config), "status")
    assert done.returncode == 4
    assert "there is no index at" in done.stderr and "photoscribe scan" in done.stderr


def test_a_config_with_a_yaml_error_exits_2_naming_the_line(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("llm:\n  model: Qwen3\n   timeout: 5\n")
    done = run("-c", str(config), "status")
    assert done.returncode == 2
    assert done.stderr.startswith(f"photoscribe: error: cannot read config file {config}: ")
    assert "line 3, column 11" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_key_exits_2_naming_it(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("llm:\n  modle: Qwen3\n")
    done = run("-c", str(config), "status")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"photoscribe: error: config file {config}: llm: unknown key(s) modle; "
        "see config.example.yaml"
    )


def test_a_config_with_a_bad_value_exits_2_naming_the_key(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("llm:\n  timeout: soon\n")
    done = run("-c", str(config), "status")
    assert done.returncode == 2
    expected = f"photoscribe: error: config file {config}: llm.timeout: expected float, got 'soon'"
    assert done.stderr.strip() == expected


def test_photoscribe_config_naming_a_missing_file_exits_2(tmp_path) -> None:
    missing = tmp_path / "nope.yaml"
    done = run("status", env={"PHOTOSCRIBE_CONFIG": str(missing)})
    assert done.returncode == 2
    assert "$PHOTOSCRIBE_CONFIG" in done.stderr and str(missing) in done.stderr


def test_sigint_during_a_scan_exits_130(tmp_path, fake_llm) -> None:
    """Ctrl-C once the scan is at work: 'interrupted', exit 130, no traceback."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        draw_shape("red", "circle", size=(320, 240), seed=i).save(photos / f"p{i}.jpg")
    fake_llm.set_behavior("slow", delay=30.0)  # the scan waits in the caption stage
    raw = tiny_config_dict(tmp_path, fake_llm.base_url)
    raw["llm"]["timeout"] = 60.0
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    # Ctrl-C as from a terminal: a test run started in the background (no job control)
    # inherits SIGINT ignored, and so would the scan, which then never sees it.
    reset = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = photoscribe("-c", str(config), "scan", str(photos), preexec_fn=reset)
    try:
        deadline = time.monotonic() + 90
        while not fake_llm.requests:  # the scan has tagged a photo and asks for its caption
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the scan never asked for a caption"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert "photoscribe: interrupted" in err
    assert "Traceback" not in err
