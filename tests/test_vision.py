"""Decoding, label vocabulary + cache, and zero-shot tagging with the tiny trained CLIP."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photoscribe.config import TaggingConfig
from photoscribe.errors import ConfigError, DecodeError
from photoscribe.service import build_tagger
from photoscribe.vision.loader import decode
from photoscribe.vision.vocabulary import read_label_lines, vocabulary_for

from conftest import TINY_CLIP
from fixtures.synthetic import draw_shape


def jpeg_bytes(img: Image.Image, **opts) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **opts)
    return buf.getvalue()


def test_draft_mode_decodes_big_jpegs_small_but_big_enough() -> None:
    data = jpeg_bytes(Image.new("RGB", (4000, 3000), "red"))
    img = decode(data, 224)
    assert img.mode == "RGB"
    assert img.size == (500, 375)  # JPEG draft at 1/8: the smallest scale still >= 224


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (400, 200), "blue")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = decode(jpeg_bytes(img, exif=exif.tobytes()), 64)
    assert out.size == (100, 200)  # drafted to 200×100, then turned upright


def test_transparent_and_16_bit_images_become_rgb() -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (50, 40), (255, 0, 0, 0)).save(buf, "PNG")
    assert decode(buf.getvalue(), 32).getpixel((0, 0)) == (255, 255, 255)
    arr = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    img = decode(buf.getvalue(), 32)
    assert img.mode == "RGB" and img.getpixel((63, 63))[0] == 255


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, I am text", "not an image"),
        (jpeg_bytes(Image.new("RGB", (300, 300), "red"))[:400], "damaged or truncated"),
    ],
)
def test_bad_data_gives_a_clear_reason(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode(data, 64)


def test_vocabulary_file_extra_labels_and_dedupe(tmp_path: Path) -> None:
    assert read_label_lines("cat\n# comment\n dog # pet\n\n") == ["cat", "dog"]
    f = tmp_path / "labels.txt"
    f.write_text("Cat\ndog\n")
    cfg = TaggingConfig(labels_file=f, extra_labels=("cat", "bird"))
    vocab = vocabulary_for(cfg)
    assert [c.names["en"] for c in vocab] == ["Cat", "dog", "bird"]
    assert [c.id for c in vocab] == ["cat", "dog", "bird"]
    default = vocabulary_for(TaggingConfig())
    assert len(default) == len({c.id for c in default}) > 200
    with pytest.raises(ConfigError, match="cannot read"):
        vocabulary_for(TaggingConfig(labels_file=tmp_path / "missing.txt"))


@pytest.fixture(scope="module")
def tagger(tmp_path_factory: pytest.TempPathFactory):
    from photoscribe.config import config_from_dict

    from conftest import tiny_config_dict

    tmp = tmp_path_factory.mktemp("vision")
    raw = tiny_config_dict(tmp)
    raw["tagging"]["top_k"] = 2
    return build_tagger(config_from_dict(raw))


def test_zero_shot_tags_colour_and_shape(tagger) -> None:
    labels = read_label_lines((TINY_CLIP / "labels.txt").read_text())
    cases = [("red", "circle"), ("blue", "square"), ("green", "triangle")]
    encoder = tagger.encoder
    tensors = [
        encoder.preprocess()(draw_shape(c, s, size=(500, 400), seed=5000 + i))
        for i, (c, s) in enumerate(cases)
    ]
    for (colour, shape), tagging in zip(cases, tagger.tag(tensors), strict=True):
        assert {k.label for k in tagging.keywords} == {colour, shape}
        assert all(k.label in labels for k in tagging.keywords)
        emb = np.frombuffer(tagging.embedding, dtype="<f2").astype(np.float32)
        assert abs(np.linalg.norm(emb) - 1) < 0.01


def test_label_embeddings_are_cached_on_disk(tagger, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tagger.label_matrix()
    cached = list((tagger._cache_dir / "labels").glob("*.npy"))
    assert len(cached) == 1
    calls: list = []
    monkeypatch.setattr(tagger.encoder, "encode_texts", calls.append)
    monkeypatch.setattr(tagger, "_label_matrix", None)
    again = tagger.label_matrix()
    assert calls == [] and np.array_equal(first, again)
