"""A named pipe, socket or device that carries a photo's name never hangs photoscribe."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from photoscribe.errors import DecodeError
from photoscribe.fsutil import read_photo

from conftest import tiny_config_dict
from fixtures.synthetic import draw_shape

DAEMON = Path(__file__).parent.parent / "daemon"


def test_read_photo_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(DecodeError, match=r"pipe\.jpg is not a regular file \(a named pipe\)"):
        read_photo(tmp_path / "pipe.jpg")  # does not block waiting for a writer
    with pytest.raises(DecodeError, match=r"is not a regular file \(a character device\)"):
        read_photo(Path("/dev/null"))
    photo = tmp_path / "a.jpg"
    draw_shape("red", "circle", seed=1).save(photo)
    assert read_photo(photo) == photo.read_bytes()


def test_a_scan_with_a_fifo_and_a_socket_named_like_photos_finishes(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    draw_shape("red", "circle", size=(160, 120), seed=1).save(photos / "a.jpg")
    os.mkfifo(photos / "pipe.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(photos / "sock.png"))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path)))
    env = {**os.environ, "PYTHONPATH": str(DAEMON), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "photoscribe", "-c", str(config), "scan", "--no-caption"]
    try:
        done = subprocess.run(
            [*command, str(photos)],
            capture_output=True,
            text=True,
            timeout=120,  # before the fix: blocked for ever opening the pipe
            env=env,
        )
    finally:
        sock.close()
    assert done.returncode == 1, done.stderr  # two failures recorded, no hang
    assert done.stdout.splitlines()[0].startswith("3 photos: 1 tagged, 0 skipped"), done.stdout
    assert "pipe.jpg is not a regular file (a named pipe)" in done.stdout
    assert "sock.png is not a regular file (a socket)" in done.stdout
