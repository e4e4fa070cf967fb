"""bf16 and fp32 give the same keywords on the tiny models, and nearly the same embeddings:
``precision: auto`` may pick either, so the choice must not change what a photo is tagged."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from photoscribe.config import config_from_dict
from photoscribe.service import build_tagger
from test_decide_scenes import TINY_TAGGING, scenes_config
from test_tiny_clip_fixture import held_out

from conftest import tiny_config_dict
from fixtures.synthetic import scenes

PRECISIONS = ("fp32", "bf16")
DTYPES = {"fp32": "torch.float32", "bf16": "torch.bfloat16"}
NEAR = 0.01  # cosine distance to the threshold that bf16 rounding may cross


def bf16_runs_here() -> str | None:
    """Why torch cannot run a bf16 matmul on this CPU, or None when it can."""
    import torch

    try:
        x = torch.ones(4, 4, dtype=torch.bfloat16)
        (x @ x).float().sum().item()
    except (RuntimeError, NotImplementedError) as exc:
        return f"torch runs no bf16 on this CPU: {exc}"
    return None


@pytest.fixture(scope="module", autouse=True)
def needs_bf16() -> None:
    reason = bf16_runs_here()
    if reason:
        pytest.skip(reason)


def run(tagger, images) -> tuple[list[list[str]], np.ndarray]:
    """(each photo's keywords, best first; its image embedding) from one tagger."""
    preprocess = tagger.encoder.preprocess()
    tensors = [preprocess(img) for img in images]
    taggings = tagger.tag(tensors)
    precision = tagger.encoder.model.load()["precision"].precision
    assert str(tagger.encoder.model.load()["dtype"]) == DTYPES[precision]  # really ran in it
    keywords = [[k.label for k in sorted(t.keywords, key=lambda k: -k.score)] for t in taggings]
    return keywords, tagger.encoder.encode_images(tensors)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)  # both L2-normalised


def test_shapes_get_the_same_keywords_in_bf16_and_fp32(tmp_path: Path) -> None:
    cases = list(held_out(48, seed0=79_000))
    out = {}
    for precision in PRECISIONS:
        raw = tiny_config_dict(tmp_path / precision)
        raw["model"]["precision"] = precision
        raw["tagging"] |= {"top_k": 2, "min_score": 0.05}
        out[precision] = run(build_tagger(config_from_dict(raw)), [img for *_, img in cases])
    (kw32, emb32), (kw16, emb16) = out["fp32"], out["bf16"]
    assert cosines(emb32, emb16).min() > 0.99
    clear = [i for i, (colour, shape, _) in enumerate(cases) if set(kw32[i]) == {colour, shape}]
    assert len(clear) >= 0.9 * len(cases)  # the photos fp32 tags right
    assert [set(kw16[i]) for i in clear] == [set(kw32[i]) for i in clear]


def test_scenes_get_the_same_keywords_in_bf16_and_fp32(tmp_path: Path) -> None:
    """The multi-label model under the threshold rule (1-3 shapes on a background): the
    same best keyword everywhere, the same keywords wherever no concept's cosine is within
    ``NEAR`` of the threshold in fp32 (bf16 rounding may move one that close across it)."""
    cases = list(scenes(64, 91_000))
    out, sims = {}, None
    for precision in PRECISIONS:
        config = scenes_config(tmp_path / precision)
        config = replace(config, model=replace(config.model, precision=precision))
        tagger = build_tagger(config)
        out[precision] = run(tagger, [img for _, img in cases])
        if precision == "fp32":
            sims = out["fp32"][1] @ tagger.label_matrix().T
    (kw32, emb32), (kw16, emb16) = out["fp32"], out["bf16"]
    assert cosines(emb32, emb16).min() > 0.99
    # The best keyword: one fp32 writes too, and the same one wherever fp32's best two are
    # more than NEAR apart (a scene's true labels often score within 0.01 of each other).
    assert all(k16[0] in k32 for k16, k32 in zip(kw16, kw32, strict=True))
    top2 = np.sort(sims, axis=1)[:, -2:]
    apart = [i for i in range(len(cases)) if top2[i, 1] - top2[i, 0] > NEAR]
    assert [kw16[i][0] for i in apart] == [kw32[i][0] for i in apart]
    near = np.abs(sims - TINY_TAGGING["threshold"]).min(axis=1) < NEAR
    clear = [i for i in range(len(cases)) if not near[i]]
    print(f"{len(apart)} of {len(cases)} with a clear best keyword, {len(clear)} clear sets")
    assert len(clear) >= len(cases) // 2
    assert [set(kw16[i]) for i in clear] == [set(kw32[i]) for i in clear]
