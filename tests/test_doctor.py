"""`photoscribe doctor` against a real HTTP server: what works, what to fix."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from photoscribe.cli import main

from conftest import tiny_config_dict


@pytest.fixture
def doctor(tmp_path, capsys):
    def run(base_url: str, **llm) -> tuple[int, list[dict]]:
        raw = tiny_config_dict(tmp_path, base_url)
        raw["llm"].update(llm)
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        capsys.readouterr()
        code = main(["-c", str(config), "doctor", "--json"])
        return code, json.loads(capsys.readouterr().out)

    return run


def by_name(checks: list[dict]) -> dict[str, dict]:
    return {c["check"]: c for c in checks}


def test_healthy_setup(doctor, fake_llm) -> None:
    code, checks = doctor(fake_llm.base_url)
    assert code == 0, checks
    found = by_name(checks)
    assert set(found) == {
        "index",
        "clip weights",
        "llm models",
        "llm caption",
        "llm thinking switch",
    }
    assert "first scan creates it" in found["index"]["detail"]
    assert fake_llm.requests[-1]["chat_template_kwargs"] == {"enable_thinking": False}


def test_server_down(doctor, fake_llm) -> None:
    with fake_llm.down():
        code, checks = doctor(fake_llm.base_url)
    assert code == 1
    found = by_name(checks)
    assert not found["llm models"]["ok"]
    assert "cannot reach the LLM server" in found["llm models"]["detail"]
    assert not found["llm caption"]["ok"]


def test_wrong_model_name(doctor, fake_llm) -> None:
    code, checks = doctor(fake_llm.base_url, model="qwen3-typo")
    assert code == 1
    detail = by_name(checks)["llm models"]["detail"]
    assert "does not list 'qwen3-typo'" in detail and "Qwen3-1.7B" in detail


def test_reasoning_despite_thinking_off_is_reported(doctor, fake_llm) -> None:
    fake_llm.set_behavior("think_tags")
    code, checks = doctor(fake_llm.base_url)
    assert code == 1
    found = by_name(checks)
    assert found["llm caption"]["ok"] and "<think>" not in found["llm caption"]["detail"]
    assert not found["llm thinking switch"]["ok"]


def test_missing_weights_file(doctor, fake_llm, tmp_path) -> None:
    raw = tiny_config_dict(tmp_path, fake_llm.base_url)
    raw["model"]["pretrained"] = str(tmp_path / "missing.safetensors")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    assert main(["-c", str(tmp_path / "c.yaml"), "doctor"]) == 1


def test_doctor_does_not_import_torch(tmp_path, fake_llm) -> None:
    import subprocess

    raw = tiny_config_dict(tmp_path, fake_llm.base_url)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    code = (
        "import sys; from photoscribe.cli import main; rc = main(['-c', sys.argv[1], 'doctor']);"
        "assert 'torch' not in sys.modules, 'torch imported'; raise SystemExit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
