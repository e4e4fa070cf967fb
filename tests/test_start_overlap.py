"""A scan decodes its first photos while the model is still loading (issue 13: start-up).

The decode workers need only the model's input plan (input size, resize, crop), which the
first load keeps in cache_dir; a later scan starts decoding at once and loads the model in
a thread. Real scans with the tiny CLIP; the model's load is held back until photos have
been decoded, which only works if decoding does not wait for it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from photoscribe.errors import ModelError
from photoscribe.pipeline import Pipeline
from photoscribe.progress import Progress
from photoscribe.service import build_tagger, scan
from photoscribe.vision.gpudecode import no_cuda_device
from photoscribe.vision.inputplan import InputPlan, plan_path, read_plan
from photoscribe.vision.loader import PixelPlan, pixel_plan
from photoscribe.vision.model import ClipModel

from fixtures.daemon import write_photo
from fixtures.exiftool import read_tags

HELD = 40  # photos decoded before the model may finish loading (more than 3 batches)


def photos(folder: Path, count: int, first: int = 0) -> list[Path]:
    return [write_photo(folder / f"p{i:02d}.jpg", i, size=(96, 72)) for i in range(first, count)]


def test_the_first_load_keeps_the_models_input_plan(make_config, tmp_path: Path) -> None:
    config = make_config(llm={"enabled": False})
    tagger = build_tagger(config)
    assert not tagger.encoder.plan_kept()
    tagger.start(background=True)  # nothing kept yet: loads now
    assert tagger.encoder.model.loaded
    plan = tagger.encoder.input_plan()
    preprocess = tagger.encoder.preprocess()
    assert plan == InputPlan(tagger.encoder.input_size(), pixel_plan(preprocess))
    assert plan.pixels == PixelPlan(plan.min_side, (plan.min_side, plan.min_side), 3)  # bicubic
    assert read_plan(config.cache_dir, tagger.encoder.model_id) == plan
    assert build_tagger(config).encoder.plan_kept()  # the next start can decode at once
    assert read_plan(config.cache_dir, "another:model:id") is None


def test_a_damaged_plan_file_is_not_kept(make_config) -> None:
    config = make_config(llm={"enabled": False})
    tagger = build_tagger(config)
    path = plan_path(config.cache_dir, tagger.encoder.model_id)
    path.parent.mkdir(parents=True)
    path.write_text('{"model": "tiny", "min_side": ')
    assert not tagger.encoder.plan_kept()
    assert tagger.encoder.input_plan().min_side == tagger.encoder.input_size()  # and mended
    assert build_tagger(config).encoder.plan_kept()


def hold_the_load(monkeypatch: pytest.MonkeyPatch, fail: Exception | None = None) -> dict:
    """Makes ClipModel._load wait until HELD photos have been decoded (counted as the
    pipeline's decode threads finish a photo), then load (or raise)."""
    seen = {"decoded": 0, "before_load": None}
    decoded = threading.Condition()
    real_load, real_photo = ClipModel._load, Pipeline._load

    def photo(self: Pipeline, path: Path) -> object:
        got = real_photo(self, path)
        with decoded:
            seen["decoded"] += 1
            decoded.notify_all()
        return got

    def load(self: ClipModel) -> dict:
        with decoded:
            ok = decoded.wait_for(lambda: seen["decoded"] >= HELD, timeout=20)
        seen["before_load"] = seen["decoded"] if ok else 0
        if fail is not None:
            raise fail
        return real_load(self)

    monkeypatch.setattr(Pipeline, "_load", photo)
    monkeypatch.setattr(ClipModel, "_load", load)
    return seen


def test_a_scan_decodes_while_the_model_loads(
    make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(llm={"enabled": False})
    summary = scan(config, photos(tmp_path / "first", 3), progress=Progress(bar=False))
    assert summary.tagged == 3  # this load kept the plan
    folder = tmp_path / "photos"
    paths = photos(folder, 70, first=20)  # 50, none a copy of the first scan's photos
    seen = hold_the_load(monkeypatch)
    summary = scan(config, [folder], progress=Progress(bar=False))
    assert seen["before_load"] >= HELD, "the scan waited for the model before decoding"
    assert (summary.tagged, summary.failed) == (50, 0)
    assert all(read_tags(p).get("XMP-dc:Subject") for p in paths)


def test_a_model_that_fails_to_load_meanwhile_stops_the_scan_and_writes_nothing(
    make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(llm={"enabled": False})
    scan(config, photos(tmp_path / "first", 2), progress=Progress(bar=False))
    folder = tmp_path / "photos"
    paths = photos(folder, 70, first=20)
    before = [p.read_bytes() for p in paths]
    seen = hold_the_load(monkeypatch, ModelError("cannot load CLIP weights: damaged file"))
    with pytest.raises(ModelError, match="damaged file"):
        scan(config, [folder], progress=Progress(bar=False))
    assert seen["before_load"] >= HELD
    assert [p.read_bytes() for p in paths] == before


def test_no_cuda_device_is_known_without_torch(tmp_path: Path) -> None:
    node = tmp_path / "nvidiactl"
    assert no_cuda_device([str(node)])
    node.touch()
    assert not no_cuda_device([str(tmp_path / "dxg"), str(node)])
