"""`photoscribe doctor` against a real HTTP server: what works, what to fix."""

from __future__ import annotations

import json
import sys

import pytest
import yaml

from photoscribe.cli import main

from conftest import TINY_CLIP, tiny_config_dict
from fixtures.synthetic import draw_shape


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
        "clip precision",
        "vocabulary",
        "llm models",
        "llm caption",
        "llm thinking switch",
    }
    assert "first scan creates it" in found["index"]["detail"]
    assert found["clip precision"]["detail"] == "fp32 (model.precision); 2 torch threads"
    assert (
        found["vocabulary"]["detail"]
        == "11 concepts (" + str(TINY_CLIP / "labels.txt") + "); keywords in en"
    )
    assert fake_llm.requests[-1]["chat_template_kwargs"] == {"enable_thinking": False}


def test_the_deprecated_llm_language_is_named(doctor, fake_llm) -> None:
    _, checks = doctor(fake_llm.base_url, language="zh")
    detail = by_name(checks)["vocabulary"]["detail"]
    assert (
        "keywords in zh; llm.language is deprecated: write the top-level `language: zh`" in detail
    )


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


def test_a_web_page_at_the_base_url_is_reported_not_a_crash(doctor, fake_llm) -> None:
    fake_llm.set_behavior("html")
    code, checks = doctor(fake_llm.base_url)
    assert code == 1
    found = by_name(checks)
    for name in ("llm models", "llm caption"):
        assert found[name]["ok"] is False
        assert "sent a reply that is cut off or not JSON" in found[name]["detail"], found[name]
        assert "llm.base_url points at an OpenAI-compatible /v1 endpoint" in found[name]["detail"]


def test_reasoning_despite_thinking_off_is_reported(doctor, fake_llm) -> None:
    fake_llm.set_behavior("think_tags")
    code, checks = doctor(fake_llm.base_url)
    assert code == 1
    found = by_name(checks)
    assert found["llm caption"]["ok"] and "<think>" not in found["llm caption"]["detail"]
    assert not found["llm thinking switch"]["ok"]


def test_an_index_folder_that_cannot_be_created_is_bad(tmp_path, capsys) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    raw = tiny_config_dict(tmp_path)
    raw["index_path"] = str(tmp_path / "a-file" / "state" / "index.sqlite3")
    raw["llm"]["enabled"] = False
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    assert main(["-c", str(tmp_path / "c.yaml"), "doctor", "--json"]) == 1
    index = by_name(json.loads(capsys.readouterr().out))["index"]
    assert index["ok"] is False
    assert index["detail"] == (
        f"{tmp_path / 'a-file' / 'state' / 'index.sqlite3'} does not exist yet and cannot be "
        f"created: {tmp_path / 'a-file'} is not a folder; set index_path to a file in a folder "
        "you can write to"
    )


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


OFFLINE_TAG = {"arch": "ViT-B-32", "pretrained": "laion2b_s34b_b79k"}
HUB_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


def doctor_subprocess(tmp_path, model: dict, hub_cache) -> tuple[int, dict[str, dict]]:
    """doctor --json in a fresh interpreter (the hub cache is read from the environment at
    import), asserting that it never imported torch."""
    import os
    import subprocess

    raw = tiny_config_dict(tmp_path)
    raw["model"] = model
    raw["llm"]["enabled"] = False
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    code = (
        "import sys; from photoscribe.cli import main; "
        "rc = main(['-c', sys.argv[1], 'doctor', '--json']); "
        "assert 'torch' not in sys.modules, 'torch imported'; raise SystemExit(rc)"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "c.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, by_name(json.loads(proc.stdout))


def test_offline_weights_not_on_this_machine_are_reported_as_scan_refuses_them(
    tmp_path,
) -> None:
    import os
    import subprocess
    from pathlib import Path

    code, found = doctor_subprocess(tmp_path, OFFLINE_TAG, tmp_path / "empty-hub")
    assert code == 1
    weights = found["clip weights"]
    assert weights["ok"] is False
    assert "are not on this machine and the model hub cannot be reached" in weights["detail"]
    assert "open_clip_model.safetensors" in weights["detail"]

    (tmp_path / "photos").mkdir()
    draw_shape("red", "circle").save(tmp_path / "photos" / "a.jpg")
    daemon = Path(__file__).parent.parent / "daemon"
    env = {
        **os.environ,
        "PYTHONPATH": str(daemon),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "empty-hub"),
    }
    args = ["-c", str(tmp_path / "c.yaml"), "scan", str(tmp_path / "photos")]
    scan = subprocess.run(
        [sys.executable, "-m", "photoscribe", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert scan.returncode == 3, scan.stderr
    assert f"photoscribe: error: {weights['detail']}" in scan.stderr  # the very same words


def test_offline_weights_in_the_hub_cache_are_ok(tmp_path) -> None:
    hub = tmp_path / "hub"
    repo = hub / f"models--{HUB_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    code, found = doctor_subprocess(tmp_path, OFFLINE_TAG, hub)
    assert code == 0, found
    assert found["clip weights"] == {
        "check": "clip weights",
        "ok": True,
        "detail": f"ViT-B-32 from pretrained tag 'laion2b_s34b_b79k': in the model hub cache "
        f"({HUB_REPO})",
    }


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"arch": "ViT-B-33", "pretrained": "laion2b_s34b_b79k"}, "no architecture 'ViT-B-33'"),
        ({"arch": "ViT-B-32", "pretrained": "laion_typo"}, "no pretrained tag 'laion_typo'"),
    ],
)
def test_a_wrong_arch_or_tag_is_bad(tmp_path, model: dict, message: str) -> None:
    code, found = doctor_subprocess(tmp_path, model, tmp_path / "hub")
    assert code == 1
    assert found["clip weights"]["ok"] is False
    assert message in found["clip weights"]["detail"]


def test_the_parsed_pretrained_table_is_open_clips_own() -> None:
    from photoscribe.vision.pretrained import _table, lookup_without_torch, open_clip_lookup

    table = _table()
    assert table is not None, "open_clip's pretrained.py could not be parsed"
    import open_clip.pretrained

    pairs = [(arch, tag) for arch, tags in open_clip.pretrained._PRETRAINED.items() for tag in tags]
    assert len(pairs) == sum(len(tags) for tags in table.values())
    for arch, tag in [*pairs, ("ViT-B-32", "LAION2B-S34B-B79K"), ("nope", "x")]:
        mine, real = lookup_without_torch(arch, tag), open_clip_lookup(arch, tag)
        keys = ("url", "hf_hub", "quick_gelu")
        assert {k: mine[0].get(k) for k in keys} == {k: real[0].get(k) for k in keys}, (arch, tag)
        assert mine[1] == real[1]


def test_an_unexpected_pretrained_source_is_not_guessed() -> None:
    from photoscribe.vision.pretrained import _Unparsable, parse_table

    with pytest.raises(_Unparsable):
        parse_table("_PRETRAINED = load_table()\n")
    with pytest.raises(_Unparsable):
        parse_table("TABLE = {}\n")
    table = parse_table(
        "_A = dict(x=_pcfg(hf_hub='o/r/', quick_gelu=True), y=_pcfg('u'))\n"
        "_PRETRAINED = {'A': _A}\n"
    )
    assert table == {
        "A": {
            "x": {"url": "", "hf_hub": "o/r/", "quick_gelu": True},
            "y": {"url": "u", "hf_hub": ""},
        },
        "A-quickgelu": {"x": {"url": "", "hf_hub": "o/r/", "quick_gelu": True}},
    }


def test_every_llm_server_is_checked(doctor, fake_llm) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on: a server that is down
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    code, checks = doctor([fake_llm.base_url, dead])
    assert code == 1
    found = by_name(checks)
    assert found["llm models #1"]["ok"] and found["llm caption #1"]["ok"]
    assert fake_llm.base_url in found["llm models #1"]["detail"]
    assert not found["llm models #2"]["ok"] and not found["llm caption #2"]["ok"]
    assert "cannot reach the LLM server" in found["llm models #2"]["detail"]
    assert "llm models" not in found  # several servers: every check names its server
