"""The committed tiny CLIP learned colours and shapes: zero-shot works on held-out images."""

from __future__ import annotations

import json

import pytest

from photoscribe.config import config_from_dict
from photoscribe.service import build_tagger

from conftest import TINY_CLIP, tiny_config_dict
from fixtures.synthetic import COLOURS, SHAPES, draw_shape

HELD_OUT_SEED = 77_000  # far from the training seeds (1_000_000 + k)


def test_fixture_files_are_small_and_valid() -> None:
    config = json.loads((TINY_CLIP / "tiny-clip.json").read_text())
    assert {"embed_dim", "vision_cfg", "text_cfg"} <= set(config)
    assert (TINY_CLIP / "tiny-clip.safetensors").stat().st_size < 4 * 1024 * 1024
    labels = (TINY_CLIP / "labels.txt").read_text().split()
    assert set(labels) == set(COLOURS) | set(SHAPES)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_held_out_images_get_their_colour_and_shape(tmp_path, precision: str) -> None:
    raw = tiny_config_dict(tmp_path)
    raw["model"]["precision"] = precision
    raw["tagging"] |= {"top_k": 2, "min_score": 0.05}
    tagger = build_tagger(config_from_dict(raw))
    preprocess = tagger.encoder.preprocess()
    cases, tensors = [], []
    sizes = [(640, 480), (256, 256), (480, 640)]
    for i in range(48):
        colour = list(COLOURS)[i % len(COLOURS)]
        shape = SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        image = draw_shape(colour, shape, size=sizes[i % 3], seed=HELD_OUT_SEED + i)
        cases.append((colour, shape))
        tensors.append(preprocess(image))
    taggings = tagger.tag(tensors)
    right = sum(
        {k.label for k in t.keywords} == set(case) and min(k.score for k in t.keywords) > 0.05
        for case, t in zip(cases, taggings, strict=True)
    )
    assert right / len(cases) >= 0.9, f"{right}/{len(cases)} held-out images tagged right"
