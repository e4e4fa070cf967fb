"""Chinese queries reach an English CLIP text tower as the English prompts of the concepts
they name (狗在海边 → a dog, a sandy beach), with the shipped vocabulary and, end to end,
with the tiny scenes model ranking photos by a Chinese word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from photoscribe.caption import Captioner
from photoscribe.config import LLMConfig, config_from_dict
from photoscribe.records import FileStat, Keyword, Tagging
from photoscribe.search import SearchQuery, search
from photoscribe.search.cache import VectorCache
from photoscribe.search.prompt import ClipPrompt, reads_every_language
from photoscribe.search.translate import QueryTranslator
from photoscribe.service import clip_prompt_for
from photoscribe.store import open_store
from photoscribe.vision import ClipModel, Encoder
from photoscribe.vision.vocabulary import Concept, Vocabulary, load_vocabulary
from test_decide_scenes import scenes_config

from fixtures.synthetic import draw_scene

STAT = FileStat(1, 1, 1, 1)


@pytest.fixture(scope="module")
def shipped() -> ClipPrompt:
    vocabulary = load_vocabulary()
    return ClipPrompt(lambda: vocabulary)


def test_chinese_words_become_the_concepts_english_prompts(shipped: ClipPrompt) -> None:
    assert shipped("狗在海边") == "a dog, a sandy beach"
    assert shipped("猫咪 沙发") == "a cat, a sofa"  # an alias, then a name
    assert shipped("dog 海边") == "dog, a sandy beach"  # English stays as typed
    assert shipped("a red car") == "a red car"


def test_the_longest_name_wins_and_unknown_characters_are_left_out(shipped) -> None:
    assert shipped("海边灯塔") == "a lighthouse"  # not beach + 灯塔
    assert shipped("在了的") is None  # nothing CLIP could read: no CLIP ranking
    assert shipped("狗狗和狗") == "a dog"  # the same concept once


def test_a_multilingual_text_tower_reads_the_query_as_typed(tmp_path: Path) -> None:
    assert reads_every_language("xlm-roberta-base-ViT-B-32")
    assert not reads_every_language("ViT-B-32")
    config = config_from_dict({"model": {"arch": "xlm-roberta-base-ViT-B-32"}})
    assert clip_prompt_for(config) is None
    assert isinstance(clip_prompt_for(config_from_dict({})), ClipPrompt)


def test_no_clip_ranking_when_no_word_can_be_read(tmp_path: Path) -> None:
    store = open_store(tmp_path / "i.db")
    emb = np.ones(4, dtype=np.float32) / 2
    store.save_tagged(
        Path("/p/a.jpg"), STAT, "a", Tagging((), emb.astype("<f2").tobytes(), "m"), "在这里"
    )
    asked: list[str] = []

    def encode(texts):
        asked.extend(texts)
        return emb[None]

    prompt = ClipPrompt(lambda: Vocabulary([]))
    hits = search(
        store,
        SearchQuery("在这里"),
        vectors=VectorCache(store, "m", None),
        encode_text=encode,
        clip_prompt=prompt,
        min_similarity=-1.0,
    )
    assert asked == [] and [h.matched_by for h in hits] == [("text",)]


def scene_vocabulary() -> Vocabulary:
    zh = {"star": "星星", "snow": "雪地", "red": "红色", "circle": "圆形"}
    return Vocabulary(
        Concept(label, (f"a photo of {label}",), {"en": label, "zh": name})
        for label, name in zh.items()
    )


def test_a_chinese_word_ranks_photos_with_a_real_english_clip(tmp_path: Path) -> None:
    """The tiny scenes model (English prompts only) finds the stars by 星星 and the snow
    scenes by 雪地; the photos hold no text that could match."""
    config = scenes_config(tmp_path)
    encoder = Encoder(ClipModel(config.model))
    preprocess = encoder.preprocess()
    scenes = [
        ([("red", "star")], "sky"),
        ([("blue", "star")], "sand"),
        ([("green", "circle")], "snow"),
        ([("yellow", "square")], "snow"),
        ([("purple", "triangle")], "concrete"),
        ([("orange", "circle")], "sky"),
    ]
    images = [draw_scene(objects, bg, (256, 256), seed=i) for i, (objects, bg) in enumerate(scenes)]
    embeddings = encoder.encode_images([preprocess(img) for img in images])
    store = open_store(tmp_path / "i.db")
    for i, emb in enumerate(embeddings):
        tagging = Tagging((Keyword("x", 0.5),), emb.astype("<f2").tobytes(), "m")
        store.save_tagged(Path(f"/p/{i}.jpg"), STAT, str(i), tagging, None, keywords_text="x")
    vectors = VectorCache(store, "m", None)
    prompt = ClipPrompt(scene_vocabulary)

    def top(text: str, n: int = 2) -> set[int]:
        hits = search(
            store,
            SearchQuery(text, n),
            vectors=vectors,
            encode_text=encoder.encode_texts,
            clip_prompt=prompt,
            min_similarity=-1.0,
        )
        assert all(h.matched_by == ("clip",) for h in hits)
        return {int(h.path.stem) for h in hits}

    assert top("星星") == {0, 1}
    assert top("雪地") == {2, 3}


# -- the LLM's translation (search.translate_queries), against the fake OpenAI server --------
def translator(fake_llm, tmp_path: Path, **llm) -> QueryTranslator:
    cfg = LLMConfig(base_url=fake_llm.base_url, timeout=1.0, retries=2, **llm)
    return QueryTranslator(tmp_path / "cache", cfg.model, lambda: Captioner(cfg, ""))


def test_the_llm_translates_a_chinese_query_once(fake_llm, tmp_path: Path, shipped) -> None:
    fake_llm.set_behavior("content", text="<think>hmm</think>\n\n A dog on the beach.")
    prompt = ClipPrompt(load_vocabulary, translator(fake_llm, tmp_path))
    assert prompt("狗在海边") == "A dog on the beach"
    request = fake_llm.requests[-1]
    assert request["chat_template_kwargs"] == {"enable_thinking": False}
    assert "狗在海边" in request["messages"][-1]["content"]
    again = ClipPrompt(load_vocabulary, translator(fake_llm, tmp_path))  # a later search
    assert again("狗在海边") == "A dog on the beach" and len(fake_llm.requests) == 1
    assert prompt("red car") == "red car" and len(fake_llm.requests) == 1  # English: as typed


@pytest.mark.parametrize(
    ("behavior", "params"),
    [
        ("content", {"text": "海边的狗"}),  # not English
        ("content", {"text": "Sure! " + "a dog on a beach " * 20}),  # not a search phrase
        ("status", {"status": 500}),
        ("slow", {"delay": 3.0}),  # past llm.timeout
    ],
)
def test_a_failed_translation_falls_back_to_the_vocabulary(
    fake_llm, tmp_path: Path, behavior: str, params: dict
) -> None:
    fake_llm.set_behavior(behavior, **params)
    translate = translator(fake_llm, tmp_path)
    prompt = ClipPrompt(load_vocabulary, translate)
    assert prompt("狗在海边") == "a dog, a sandy beach"
    assert len(fake_llm.requests) == 1  # one try only: a search does not wait for retries
    assert not (tmp_path / "cache" / "search" / "translations").exists()  # nothing cached


def test_translation_is_built_only_when_configured(tmp_path: Path) -> None:
    on = config_from_dict({"search": {"translate_queries": True}})
    assert clip_prompt_for(on)._translate is not None
    assert clip_prompt_for(config_from_dict({}))._translate is None
    off = config_from_dict({"search": {"translate_queries": True}, "llm": {"enabled": False}})
    assert clip_prompt_for(off)._translate is None
