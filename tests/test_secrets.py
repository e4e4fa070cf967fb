"""The LLM API key never reaches a log, an error, the index or anything printed.

A recognisable key is configured (literal, from an environment variable and from a
file), the fake server answers with errors that quote it — as some real servers quote
the key they refused — and every byte photoscribe printed, logged or wrote is searched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from photoscribe.config import config_from_dict

from conftest import tiny_config_dict
from fixtures.synthetic import draw_shape

SECRET = "sk-ps-SECRET-7f3a9c1e5b"
PASSWORD = "hunter2-Pa55"


def run_cli(config: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "photoscribe", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
    )
    return done.stdout + done.stderr


def files_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


@pytest.fixture
def leaky_server(fake_llm):
    """A server that refuses every key and quotes it back, for every request."""
    fake_llm.set_behavior("status", status=401, message=f"Incorrect API key provided: {SECRET}")
    return fake_llm


@pytest.mark.parametrize("source", ["literal", "env", "file"])
def test_the_key_is_in_no_output_log_or_file(leaky_server, tmp_path: Path, source: str) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    draw_shape("red", "circle", size=(160, 120), seed=5).save(photos / "a.jpg")
    raw = tiny_config_dict(tmp_path, leaky_server.base_url)
    # credentials in the URL are secrets too
    raw["llm"]["base_url"] = leaky_server.base_url.replace("http://", f"http://me:{PASSWORD}@")
    raw["llm"]["retries"] = 0
    env = {}
    if source == "literal":
        raw["llm"]["api_key"] = SECRET
    elif source == "env":
        raw["llm"]["api_key_env"] = "PS_TEST_KEY"
        env["PS_TEST_KEY"] = SECRET
    else:
        (tmp_path / "key").write_text(SECRET + "\n")
        raw["llm"]["api_key_file"] = str(tmp_path / "key")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    printed = "".join(
        run_cli(config, *args, env=env)
        for args in (
            ["-v", "scan", str(photos)],
            ["-v", "doctor"],
            ["status"],
            ["-v", "describe", str(photos / "a.jpg")],
            ["caption", "--retry-pending"],
        )
    )
    assert "401" in printed  # the refusal itself is reported...
    assert SECRET not in printed  # ...without the key
    assert PASSWORD not in printed
    written = files_under(tmp_path / "state") + files_under(photos)
    assert SECRET.encode() not in written
    assert PASSWORD.encode() not in written


def test_config_repr_hides_the_key(tmp_path: Path) -> None:
    raw = tiny_config_dict(tmp_path)
    raw["llm"]["api_key"] = SECRET
    assert SECRET not in repr(config_from_dict(raw))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1"),
        ("https://me:pw@llm.example/v1", "https://llm.example/v1"),
        ("http://tok@[::1]:9/v1", "http://[::1]:9/v1"),
    ],
)
def test_public_url_drops_user_and_password(url: str, shown: str) -> None:
    from photoscribe.caption.secrets import public_url

    assert public_url(url) == shown


def test_redactor_hides_every_secret_but_not_short_or_placeholder_values() -> None:
    from photoscribe.caption.secrets import Redactor

    redact = Redactor([SECRET, "not-needed", "ab", PASSWORD])
    text = f"key {SECRET} pw {PASSWORD} ab not-needed"
    assert redact(text) == "key *** pw *** ab not-needed"
