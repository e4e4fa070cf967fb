"""Concept text embeddings: the cut context gives the same vectors; the cache is per concept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from photoscribe.vision.labels import concept_embeddings, encode_text_short, fill

from conftest import TINY_CLIP

TEMPLATES = ("a photo of {}.", "a photo of the {}.", "{}")
PROMPTS = ["red", "a kite (bird of prey)", "golden retriever", "一只狗", "the blue square"]


@pytest.fixture(scope="module")
def clip():
    import open_clip

    open_clip.add_model_config(TINY_CLIP)
    model, _, _ = open_clip.create_model_and_transforms(
        "tiny-clip", pretrained=str(TINY_CLIP / "tiny-clip.safetensors")
    )
    return model.eval(), open_clip.get_tokenizer("tiny-clip")


def test_cut_context_gives_the_full_context_embeddings(clip) -> None:
    import torch

    model, tokenizer = clip
    tokens = tokenizer([t.format(p) for p in PROMPTS for t in TEMPLATES])
    assert int(tokens.argmax(-1).max()) + 1 < tokens.shape[1]  # there is padding to cut
    with torch.inference_mode():
        full = model.encode_text(tokens, normalize=True).numpy()
        short = encode_text_short(model, tokens).numpy()
    assert np.abs(full - short).max() < 1e-5


class CountingEncoder:
    """The tiny model's text tower, counting the texts it was asked to embed."""

    def __init__(self, clip) -> None:
        self.model, self.tokenizer = clip
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        import torch

        self.texts += texts
        with torch.inference_mode():
            return encode_text_short(self.model, self.tokenizer(texts)).numpy()


def test_the_cache_re_embeds_only_the_concepts_that_changed(clip, tmp_path: Path) -> None:
    concepts = [("red",), ("circle", "round shape"), ("sky",)]
    enc = CountingEncoder(clip)
    first = concept_embeddings(enc, "tiny", concepts, TEMPLATES, tmp_path)
    assert len(enc.texts) == 4 * len(TEMPLATES) and first.shape[0] == 3
    assert np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)

    enc.texts.clear()
    again = concept_embeddings(enc, "tiny", concepts, TEMPLATES, tmp_path)
    assert enc.texts == [] and np.array_equal(first, again)

    edited = [("red",), ("circle", "a round shape"), ("sky",), ("sand",)]
    second = concept_embeddings(enc, "tiny", edited, TEMPLATES, tmp_path)
    assert sorted(enc.texts) == sorted(
        fill(t, p) for p in ("circle", "a round shape", "sand") for t in TEMPLATES
    )
    assert np.array_equal(second[[0, 2]], first[[0, 2]])
    assert not np.allclose(second[1], first[1])

    enc.texts.clear()  # another model or other templates: another cache
    concept_embeddings(enc, "tiny", concepts, ("{}",), tmp_path)
    concept_embeddings(enc, "other-model", concepts, TEMPLATES, tmp_path)
    assert len(enc.texts) == 4 + 4 * len(TEMPLATES)


def test_a_concept_whose_cache_key_ends_in_a_nul_byte_is_found_in_the_cache(
    clip, tmp_path: Path
) -> None:
    """numpy's fixed-width bytes drop trailing NULs; such a key (1 in 256 concepts) was
    never found again, so every start embedded those concepts with the text tower."""
    from photoscribe.vision.labels import concept_key

    nul = next(
        (f"kite {i}",) for i in range(100_000) if concept_key((f"kite {i}",)).endswith(b"\0")
    )
    concepts = [("red",), nul, ("沙滩",)]
    enc = CountingEncoder(clip)
    first = concept_embeddings(enc, "tiny", concepts, TEMPLATES, tmp_path)
    enc.texts.clear()
    again = concept_embeddings(enc, "tiny", concepts, TEMPLATES, tmp_path)
    assert enc.texts == []
    assert np.array_equal(first, again)


def test_the_ensemble_is_the_mean_over_prompts_and_templates(clip, tmp_path: Path) -> None:
    enc = CountingEncoder(clip)
    got = concept_embeddings(enc, "tiny", [("circle", "round shape")], TEMPLATES, tmp_path)[0]
    each = enc([t.format(p) for p in ("circle", "round shape") for t in TEMPLATES])
    mean = each.mean(axis=0)
    assert np.allclose(got, mean / np.linalg.norm(mean), atol=1e-6)


def test_a_damaged_cache_file_is_rebuilt(clip, tmp_path: Path) -> None:
    enc = CountingEncoder(clip)
    first = concept_embeddings(enc, "tiny", [("red",)], TEMPLATES, tmp_path)
    (cache,) = (tmp_path / "labels").glob("*.npy")
    cache.write_bytes(b"not numpy")
    enc.texts.clear()
    assert np.allclose(concept_embeddings(enc, "tiny", [("red",)], TEMPLATES, tmp_path), first)
    assert len(enc.texts) == len(TEMPLATES)


def test_a_prompts_article_gives_way_to_the_templates() -> None:
    assert fill("a photo of the {}.", "a golden retriever dog") == (
        "a photo of the golden retriever dog."
    )
    assert fill("a photo of {}.", "a golden retriever dog") == "a photo of a golden retriever dog."
    assert fill("a photo of the {}.", "An apple") == "a photo of the apple."
    assert fill("{}", "a kite flying in the sky") == "a kite flying in the sky"
    assert fill("a photo of the {}.", "another cat") == "a photo of the another cat."
