"""The image tower kept as TorchScript (vision/quicktower.py): a later load reads it
alone, without importing open_clip or torchvision, and tags exactly as the full model
does; text still works (the full model is built on first use); a kept tower that is
damaged, or was made by another torch, is never used. The committed tiny CLIP, real
files in a temp cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from photoscribe.builders import build_tagger
from photoscribe.config import Config
from photoscribe.vision.loader import pixel_plan, shrink
from photoscribe.vision.model import ClipModel

from conftest import tiny_config_dict
from fixtures.synthetic import draw_shape

SHAPES = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "circle")]


def towers(config: Config) -> list[Path]:
    return sorted((config.cache_dir / "image-tower").glob("*.pt"))


def images():
    return [draw_shape(c, s, size=(96 + 16 * i, 80), seed=i) for i, (c, s) in enumerate(SHAPES)]


def model_inputs(tagger) -> list:
    """Photos as a scan hands them to the model: shrunk by the plan, then preprocessed."""
    encoder = tagger.encoder
    plan = encoder.input_plan().pixels
    from photoscribe.vision.loader import tensor_from

    return [tensor_from(shrink(image, plan), encoder.preprocess()) for image in images()]


@pytest.fixture(params=["fp32", "bf16"])
def config(request, make_config) -> Config:
    return make_config(model={"precision": request.param})


def test_a_second_load_uses_the_kept_tower_and_tags_alike(config: Config) -> None:
    first = build_tagger(config)
    first.start()
    assert not first.encoder.model.quick and len(towers(config)) == 1
    full_inputs = model_inputs(first)
    full = first.encoder.encode_images(full_inputs)
    full_tags = first.tag(full_inputs)

    second = build_tagger(config)
    second.start()
    assert second.encoder.model.quick
    quick_inputs = model_inputs(second)
    for a, b in zip(full_inputs, quick_inputs, strict=True):
        assert a.dtype == b.dtype and bool((a == b).all())  # the same normalised pixels
    quick = second.encoder.encode_images(quick_inputs)
    assert np.allclose(full, quick, atol=1e-6)
    assert second.tag(quick_inputs) == full_tags  # keywords, scores and embeddings
    assert second.encoder.model.quick  # nothing above needed the full model


def test_text_and_other_images_build_the_full_model_on_first_use(config: Config) -> None:
    first = build_tagger(config)
    first.start()
    texts = first.encoder.encode_texts(["a red circle", "一只狗"])
    big = draw_shape("red", "circle", size=(300, 200))
    whole = first.encoder.preprocess()(big)  # not model-sized: the full preprocessing

    second = build_tagger(config)
    second.start()
    assert second.encoder.model.quick
    assert np.allclose(second.encoder.encode_texts(["a red circle", "一只狗"]), texts, atol=1e-6)
    assert bool((second.encoder.preprocess()(big) == whole).all())
    plan = pixel_plan(second.encoder.preprocess())  # the transforms, from the full model
    assert plan == first.encoder.input_plan().pixels


def test_a_quick_start_imports_neither_open_clip_nor_torchvision(
    config: Config, tmp_path: Path
) -> None:
    build_tagger(config).start()  # a full load keeps the tower
    script = (
        "import json, sys\n"
        "from photoscribe.builders import build_tagger\n"
        "from pathlib import Path\n"
        "from photoscribe.config import load_config\n"
        f"tagger = build_tagger(load_config(Path({str(tmp_path / 'config.json')!r})))\n"
        "tagger.start()\n"
        "print(json.dumps([tagger.encoder.model.quick,\n"
        "    sorted(m for m in ('open_clip', 'torchvision', 'timm') if m in sys.modules)]))\n"
    )
    raw = tiny_config_dict(tmp_path)  # the fixture's config: same cache, same model
    raw["model"]["precision"] = config.model.precision
    (tmp_path / "config.json").write_text(json.dumps(raw))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == [True, []], out.stderr


def test_a_damaged_tower_is_not_used_and_is_kept_anew(config: Config, caplog) -> None:
    build_tagger(config).start()
    (kept,) = towers(config)
    kept.write_bytes(kept.read_bytes()[: kept.stat().st_size // 2])
    tagger = build_tagger(config)
    tagger.start()
    assert not tagger.encoder.model.quick
    assert "cannot read the kept image tower" in caplog.text
    again = build_tagger(config)
    again.start()
    assert again.encoder.model.quick  # the full load kept a sound one


def test_a_tower_made_by_another_torch_is_not_used(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    import photoscribe.vision.quicktower as quicktower

    build_tagger(config).start()
    monkeypatch.setattr(quicktower, "torch_version", lambda: "99.0")
    tagger = build_tagger(config)
    tagger.start()
    assert not tagger.encoder.model.quick
    assert len(towers(config)) == 1  # the old one was replaced, not kept beside


def test_quick_start_off_keeps_nothing(make_config) -> None:
    config = make_config(model={"quick_start": False})
    build_tagger(config).start()
    tagger = build_tagger(config)
    tagger.start()
    assert not tagger.encoder.model.quick and towers(config) == []


def test_unload_then_load_uses_the_tower(config: Config) -> None:
    build_tagger(config).start()
    model = ClipModel(config.model, cache_dir=config.cache_dir)
    model.load()
    assert model.quick
    model.unload()
    assert not model.loaded
    model.load()
    assert model.quick


def test_a_search_query_is_embedded_by_the_full_model_not_beside_a_kept_tower(
    make_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Text search needs the text tower: loading the kept image tower first would only
    add its memory and read time."""
    import photoscribe.service as service

    config = make_config()
    first = build_tagger(config)
    first.start()
    expected = first.encoder.encode_texts(["海边的狗"])
    built: list[Config] = []
    real = service.build_tagger
    monkeypatch.setattr(service, "build_tagger", lambda c: built.append(c) or real(c))
    store = type("Store", (), {"searchable_embeddings": lambda self, model_id: True})()
    _, encode_text = service.clip_search_tools(config, store)
    assert np.allclose(encode_text(["海边的狗"]), expected, atol=1e-6)
    assert [c.model.quick_start for c in built] == [False]
    assert towers(config)  # the tower is still kept for the next scan
