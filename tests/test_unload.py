"""Idle unload really lets the model go: no reference survives, and the C heap is trimmed
after it is gone (bench/bench_idle_rss.py measures what that gives back)."""

from __future__ import annotations

import weakref

from photoscribe.vision import ClipModel, Encoder, Tagger
from photoscribe.vision.model import trim_heap

from fixtures.daemon import write_photo


def test_unload_drops_every_reference_then_trims_the_heap(make_config, tmp_path) -> None:
    config = make_config()
    trims: list[bool] = []
    alive: list[weakref.ref] = []

    def trim() -> None:  # records whether the model was already gone when trimmed
        trims.append(all(ref() is None for ref in alive))

    model = ClipModel(config.model, trim=trim)
    tagger = Tagger(Encoder(model), config.tagging, config.cache_dir)
    photo = write_photo(tmp_path / "p.jpg", 1)
    from photoscribe.vision import prepare

    tensor = prepare(photo.read_bytes(), tagger.encoder.preprocess(), tagger.encoder.input_size())
    assert tagger.tag([tensor])[0].keywords
    loaded = model.load()
    alive.extend(weakref.ref(loaded[key]) for key in ("model", "preprocess"))
    alive.extend(weakref.ref(p) for p in loaded["model"].parameters())
    del loaded
    model.unload()
    assert not model.loaded
    assert [ref() is None for ref in alive] == [True] * len(alive)
    assert trims == [True]  # called once, after the last reference was gone
    assert tagger.tag([tensor])[0].keywords  # loaded again on demand
    model.unload()
    assert trims == [True, True]


def test_trim_heap_reaches_glibc() -> None:
    assert trim_heap() is True  # this machine's Python runs on glibc
