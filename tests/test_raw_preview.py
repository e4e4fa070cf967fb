"""A RAW's preview finder skips the sensor data: in DNG, CR2 and many NEFs the raw image is
a lossless JPEG (SOF3) stream, larger than the camera's baseline-JPEG preview; it is a
colour-filter mosaic (not a picture), and decoding it at a reduced scale fails, which made
the whole RAW look damaged."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from photoscribe.cli import main
from photoscribe.errors import DecodeError
from photoscribe.records import State
from photoscribe.store import open_store
from photoscribe.vision.loader import decode, raw_preview

from conftest import tiny_config_dict
from fixtures.exiftool import read_tags
from fixtures.raw import lossless_jpeg, sensor_mosaic, tiff_raw
from fixtures.synthetic import draw_shape

PREVIEW_SIZE, SENSOR_SIZE = (320, 240), (480, 360)  # as cameras: the sensor is bigger


def preview_jpeg() -> bytes:
    buf = io.BytesIO()
    draw_shape("red", "circle", size=PREVIEW_SIZE, seed=21).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def camera_raw(sensor: bytes | None = None) -> bytes:
    mosaic = sensor or lossless_jpeg(sensor_mosaic(*SENSOR_SIZE))
    return tiff_raw(preview_jpeg(), PREVIEW_SIZE, mosaic, SENSOR_SIZE)


def test_the_fixture_is_a_raw_whose_sensor_stream_is_a_bigger_lossless_jpeg() -> None:
    mosaic = sensor_mosaic(*SENSOR_SIZE)
    stream = lossless_jpeg(mosaic)
    assert stream[:4] == b"\xff\xd8\xff\xc3" and len(stream) > len(preview_jpeg())
    with Image.open(io.BytesIO(stream)) as img:  # a real stream: decodes to the mosaic
        assert np.array_equal(np.asarray(img), mosaic)


def test_the_preview_is_found_not_the_lossless_sensor_data() -> None:
    data = camera_raw()
    assert raw_preview(data).startswith(preview_jpeg())
    got, preview = decode(data, 64, raw=True), decode(preview_jpeg(), 64)
    assert np.array_equal(np.asarray(got), np.asarray(preview))


@pytest.mark.parametrize("marker", [0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF])
def test_frames_a_baseline_decoder_cannot_read_are_never_the_preview(marker: int) -> None:
    stream = bytearray(lossless_jpeg(sensor_mosaic(*SENSOR_SIZE)))
    stream[3] = marker  # same layout, other frame type (differential, arithmetic...)
    assert raw_preview(camera_raw(bytes(stream))).startswith(preview_jpeg())


def test_a_raw_with_only_sensor_data_has_no_usable_preview() -> None:
    stream = lossless_jpeg(sensor_mosaic(*SENSOR_SIZE))
    data = tiff_raw(stream[:0], (0, 0), stream, SENSOR_SIZE)
    with pytest.raises(DecodeError, match="no usable embedded preview"):
        raw_preview(data)


def test_scan_tags_such_a_raw_from_its_preview(tmp_path: Path, fake_llm) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    raw = folder / "IMG_0001.DNG"
    raw.write_bytes(camera_raw())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, fake_llm.base_url)), "utf-8")
    assert main(["--config", str(config), "scan", str(folder)]) == 0
    tags = read_tags(folder / "IMG_0001.DNG.xmp")
    assert "red" in tags["XMP-dc:Subject"]
    store = open_store(tmp_path / "state" / "index.sqlite3")
    assert store.by_path(raw).state is State.DONE
    store.close()
