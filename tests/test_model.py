"""Model resolution: clear errors before (and instead of) long retries or tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from photoscribe.config import ModelConfig
from photoscribe.errors import ModelError
from photoscribe.vision.model import ClipModel, looks_like_path, resolve_weights


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such file exists"):
        resolve_weights(ModelConfig(pretrained=str(tmp_path / "w.safetensors")))


def test_tag_or_path() -> None:
    assert looks_like_path("/x/y.bin") and looks_like_path("w.safetensors")
    assert not looks_like_path("laion2b_s34b_b79k")


def test_model_id_changes_with_weights(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    a.write_bytes(b"1" * 100)
    b.write_bytes(b"2" * 100)
    ida = resolve_weights(ModelConfig(pretrained=str(a))).model_id
    idb = resolve_weights(ModelConfig(pretrained=str(b))).model_id
    assert ida != idb and ida.startswith("ViT-B-32:a:")


def test_offline_pretrained_tag_fails_before_any_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused before open_clip builds the model or tries the hub (its time:
    bench/bench_bad_inputs.py)."""
    import open_clip

    built: list[object] = []
    monkeypatch.setattr(open_clip, "create_model_and_transforms", lambda *a, **k: built.append(a))
    model = ClipModel(ModelConfig(arch="ViT-B-32", pretrained="laion2b_s34b_b79k"))
    with pytest.raises(ModelError) as err:
        model.load()
    message = str(err.value)
    assert message.startswith(
        "the CLIP weights ViT-B-32/laion2b_s34b_b79k are not on this machine and the model hub "
        "cannot be reached (offline). To provide them: "
    )
    assert "model.pretrained" in message
    assert built == [] and not model.loaded


def test_unknown_tag_lists_known_ones() -> None:
    with pytest.raises(ModelError, match="no pretrained tag 'nonsense'"):
        ClipModel(ModelConfig(arch="ViT-B-32", pretrained="nonsense")).load()


def test_weights_that_do_not_fit_the_architecture(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelError, match="cannot load CLIP weights"):
        ClipModel(ModelConfig(arch="ViT-B-32", pretrained=str(bad))).load()


def test_cli_scan_without_weights_stops_with_one_clear_line(tmp_path: Path) -> None:
    """The README's main command on a machine without weights: a message, no traceback."""
    (tmp_path / "photos").mkdir()
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "photos" / "a.jpg")
    env = {"HF_HUB_OFFLINE": "1", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "photoscribe", "scan", str(tmp_path / "photos")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert "set model.pretrained" in proc.stderr
    assert (tmp_path / "photos" / "a.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_a_model_built_without_random_init_equals_one_built_with_it(tmp_path: Path) -> None:
    """Every parameter and buffer of the loaded model is the checkpoint's (or computed),
    none is left as the uninitialised memory the skipped random start leaves behind."""
    import open_clip
    import torch

    from conftest import TINY_CLIP

    open_clip.add_model_config(TINY_CLIP)
    weights = str(TINY_CLIP / "tiny-clip.safetensors")
    cfg = ModelConfig(
        arch="tiny-clip", pretrained=weights, config_dir=TINY_CLIP, precision="fp32", threads=1
    )
    ours = ClipModel(cfg, cache_dir=tmp_path).load()["model"]
    reference = open_clip.create_model_and_transforms("tiny-clip", pretrained=weights)[0].eval()
    theirs = dict(reference.named_parameters()) | dict(reference.named_buffers())
    mine = dict(ours.named_parameters()) | dict(ours.named_buffers())
    assert mine.keys() == theirs.keys()
    for name, tensor in mine.items():
        assert torch.equal(tensor, theirs[name]), name
    assert torch.nn.init.normal_.__name__ == "normal_"  # torch.nn.init is itself again
