"""The committed tiny CLIP learned colours and shapes: zero-shot works on held-out images."""

from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before open_clip is imported anywhere

import pytest

from photoscribe.config import config_from_dict
from photoscribe.service import build_tagger

from conftest import TINY_CLIP, tiny_config_dict
from fixtures.synthetic import COLOURS, SHAPES, draw_shape

HELD_OUT_SEED = 77_000  # far from the training seeds (1_000_000 + k)
TEMPLATES = ("a photo of {}.", "a photo of the {}.", "{}")
SIZES = [(640, 480), (256, 256), (480, 640), (300, 200)]


def held_out(n: int = 48, seed0: int = HELD_OUT_SEED):
    """(colour, shape, image) for n fresh images covering every colour and shape."""
    for i in range(n):
        colour = list(COLOURS)[i % len(COLOURS)]
        shape = SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        yield colour, shape, draw_shape(colour, shape, size=SIZES[i % len(SIZES)], seed=seed0 + i)


def test_fixture_files_are_small_and_valid() -> None:
    config = json.loads((TINY_CLIP / "tiny-clip.json").read_text())
    assert {"embed_dim", "vision_cfg", "text_cfg"} <= set(config)
    assert config["text_cfg"]["vocab_size"] == 49408  # the standard open_clip BPE tokenizer
    assert (TINY_CLIP / "tiny-clip.safetensors").stat().st_size < 4 * 1024 * 1024
    labels = (TINY_CLIP / "labels.txt").read_text().split()
    assert set(labels) == set(COLOURS) | set(SHAPES)


@pytest.fixture(scope="module")
def clip():
    """(model, preprocess, tokenizer) loaded straight with open_clip from the fixture."""
    import open_clip

    open_clip.add_model_config(TINY_CLIP)
    model, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-clip", pretrained=str(TINY_CLIP / "tiny-clip.safetensors")
    )
    return model.eval(), preprocess, open_clip.get_tokenizer("tiny-clip")


def test_tokenizer_uses_the_fixture_context_length(clip) -> None:
    model, _, tokenizer = clip
    config = json.loads((TINY_CLIP / "tiny-clip.json").read_text())
    tokens = tokenizer(["a photo of a red."])
    assert tokens.shape == (1, config["text_cfg"]["context_length"]) == (1, model.context_length)


def test_open_clip_zero_shot_top2_is_colour_and_shape(clip) -> None:
    import torch

    model, preprocess, tokenizer = clip
    labels = (TINY_CLIP / "labels.txt").read_text().split()
    cases = list(held_out())
    with torch.inference_mode():
        prompts = tokenizer([t.format(label) for label in labels for t in TEMPLATES])
        text = model.encode_text(prompts, normalize=True).view(len(labels), len(TEMPLATES), -1)
        text = torch.nn.functional.normalize(text.mean(1), dim=-1)
        images = torch.stack([preprocess(img) for _, _, img in cases])
        probs = model.logit_scale.exp() * model.encode_image(images, normalize=True) @ text.T
        probs = probs.softmax(-1)
    top = probs.topk(2)
    right = sum(
        {labels[i] for i in idx.tolist()} == {colour, shape} and bool(p.min() > 0.05)
        for (colour, shape, _), idx, p in zip(cases, top.indices, top.values, strict=True)
    )
    assert right / len(cases) >= 0.95, f"{right}/{len(cases)} held-out images tagged right"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_held_out_images_get_their_colour_and_shape(tmp_path, precision: str) -> None:
    raw = tiny_config_dict(tmp_path)
    raw["model"]["precision"] = precision
    raw["tagging"] |= {"top_k": 2, "min_score": 0.05}
    tagger = build_tagger(config_from_dict(raw))
    preprocess = tagger.encoder.preprocess()
    cases = list(held_out(seed0=HELD_OUT_SEED + 1000))
    taggings = tagger.tag([preprocess(img) for _, _, img in cases])
    right = sum(
        {k.label for k in t.keywords} == {colour, shape} and min(k.score for k in t.keywords) > 0.05
        for (colour, shape, _), t in zip(cases, taggings, strict=True)
    )
    assert right / len(cases) >= 0.95, f"{right}/{len(cases)} held-out images tagged right"
