"""GPU JPEG decoding (issue 13), its CPU-side logic tested on the CPU.

No GPU here or in CI: ``GpuJpegImages(device="cpu")`` runs the very same code with
torchvision's CPU JPEG decoder standing in for nvJPEG (same call, same output layout).
What cannot run here is nvJPEG itself; bench/gpu_check.sh exercises that on a GPU.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from photoscribe.progress import Progress
from photoscribe.records import State
from photoscribe.service import build_tagger, scan
from photoscribe.store import open_store
from photoscribe.vision import gpudecode
from photoscribe.vision.gpudecode import (
    CpuImages,
    GpuJpegImages,
    batch_for_memory,
    geometry_of,
    images_for,
    stack_on,
)
from photoscribe.vision.jpeghead import JpegBytes, gpu_jpeg
from photoscribe.vision.loader import decode, pixel_plan, shrink, tensor_from
from photoscribe.worktasks import LoadRequest, load_photo

from fixtures.raw import lossless_jpeg
from fixtures.synthetic import draw_shape


def jpeg(image: Image.Image, **opts) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, **opts)
    return buf.getvalue()


def oriented(data_image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(data_image, exif=exif.tobytes())


def asymmetric(size: tuple[int, int] = (900, 600)) -> Image.Image:
    """A photo whose every flip and turn looks different (a shape off-centre, a bar on top)."""
    img = draw_shape("red", "triangle", size=size, seed=7)
    pixels = np.asarray(img).copy()
    pixels[: size[1] // 10, : size[0] // 3] = (20, 200, 40)  # a green bar, top left
    pixels[-size[1] // 6 :, -size[0] // 8 :] = (30, 30, 220)  # a blue block, bottom right
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from photoscribe.config import config_from_dict

    from conftest import tiny_config_dict

    config = config_from_dict(tiny_config_dict(tmp_path_factory.mktemp("gpu")))
    return build_tagger(config).encoder


@pytest.fixture
def images(encoder) -> GpuJpegImages:
    strategy = GpuJpegImages(device="cpu")
    assert strategy.start(encoder, 8) == 8
    assert strategy.wants_jpeg
    return strategy


def cpu_tensor(data: bytes, encoder) -> torch.Tensor:
    """What the CPU path makes of ``data`` (worker decode + shrink, then the Compose)."""
    pre = encoder.preprocess()
    return tensor_from(shrink(decode(data, encoder.input_size()), pixel_plan(pre)), pre)


def full_decode_tensor(data: bytes, encoder) -> torch.Tensor:
    """The same without draft mode (the GPU decodes at full size): the geometry check."""
    pre = encoder.preprocess()
    with Image.open(io.BytesIO(data)) as img:
        upright = ImageOps.exif_transpose(img).convert("RGB")
    return tensor_from(shrink(upright, pixel_plan(pre)), pre)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@pytest.mark.parametrize("size", [(1600, 1200), (1200, 1600), (333, 901)])
def test_gpu_geometry_matches_the_cpu_path(images, encoder, size) -> None:
    data = jpeg(asymmetric(size))
    [tensor] = images.decode([gpu_jpeg(data)])
    expected = full_decode_tensor(data, encoder)
    assert tensor.shape == expected.shape
    assert tensor.dtype == torch.float32
    assert cosine(tensor, expected) > 0.9999
    assert float((tensor - expected).abs().max()) < 0.1  # normalised units: ~6 of 255 levels
    # the CPU path's draft decode (DCT scaling) filters differently; still close
    assert cosine(tensor, cpu_tensor(data, encoder)) > 0.985


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_on_the_cpu(images, encoder, orientation) -> None:
    data = oriented(asymmetric(), orientation)
    item = gpu_jpeg(data)
    assert item is not None and item.orientation == orientation
    [tensor] = images.decode([item])
    expected = full_decode_tensor(data, encoder)
    assert cosine(tensor, expected) > 0.9999, orientation
    assert cosine(tensor, cpu_tensor(data, encoder)) > 0.995  # loader.decode turns it too
    upright = full_decode_tensor(jpeg(asymmetric()), encoder)
    if orientation != 1:  # the orientation really changed the picture
        assert cosine(upright, expected) < 0.99


def test_one_corrupt_jpeg_fails_alone_in_its_batch(images, encoder) -> None:
    good = [jpeg(asymmetric((640, 480))), jpeg(draw_shape("blue", "circle", (500, 700)))]
    truncated = good[0][: len(good[0]) * 6 // 10]
    batch = [gpu_jpeg(good[0]), JpegBytes(truncated, 1, (640, 480)), gpu_jpeg(good[1])]
    first, bad, last = images.decode(batch)
    assert isinstance(bad, Exception)
    assert cosine(first, cpu_tensor(good[0], encoder)) > 0.999
    assert cosine(last, cpu_tensor(good[1], encoder)) > 0.999


def test_a_batch_is_split_by_pixels_and_keeps_its_order(images, encoder, monkeypatch) -> None:
    calls: list[int] = []
    real = images._nvjpeg

    def counting(blobs):
        calls.append(len(blobs))
        return real(blobs)

    monkeypatch.setattr(images, "_nvjpeg", counting)
    monkeypatch.setattr(gpudecode, "DECODE_CALL_PIXELS", 2 * 640 * 480)
    photos = [jpeg(draw_shape(c, "square", (640, 480), seed=i)) for i, c in enumerate(COLOURS)]
    out = images.decode([gpu_jpeg(p) for p in photos])
    assert calls == [2, 2, 1]
    for tensor, data in zip(out, photos, strict=True):
        assert cosine(tensor, cpu_tensor(data, encoder)) > 0.999


COLOURS = ("red", "green", "blue", "yellow", "purple")


def test_only_plain_jpegs_go_to_the_gpu(tmp_path: Path) -> None:
    photo = draw_shape("green", "circle", (400, 300))
    assert gpu_jpeg(jpeg(photo)) is not None
    assert gpu_jpeg(jpeg(photo.convert("L"))) is not None
    assert gpu_jpeg(jpeg(photo, progressive=True)) is not None  # nvJPEG decodes these too
    assert gpu_jpeg(jpeg(photo.convert("CMYK"))) is None
    png = io.BytesIO()
    photo.save(png, "PNG")
    assert gpu_jpeg(png.getvalue()) is None
    assert gpu_jpeg(lossless_jpeg(np.zeros((64, 64), np.uint8))) is None  # SOF3: RAW sensor
    data = jpeg(photo)
    assert gpu_jpeg(data[: len(data) // 2]) is None  # truncated: the CPU path explains
    assert gpu_jpeg(b"") is None


def test_the_worker_sends_jpeg_bytes_only_when_asked(tmp_path: Path, encoder) -> None:
    pre = encoder.preprocess()
    photo = draw_shape("red", "square", (640, 480))
    jpg, png = tmp_path / "a.jpg", tmp_path / "b.png"
    photo.save(jpg, quality=90)
    photo.save(png)
    ask = LoadRequest(encoder.input_size(), pixel_plan(pre), jpeg_bytes=True)
    got = load_photo(jpg, ask)
    assert got.pixels is None and got.jpeg.data == jpg.read_bytes()
    assert got.content_hash == load_photo(jpg, LoadRequest(64, pixel_plan(pre))).content_hash
    assert load_photo(png, ask).jpeg is None
    assert load_photo(png, ask).pixels.shape == (64, 64, 3)
    plain = load_photo(jpg, LoadRequest(encoder.input_size(), pixel_plan(pre)))
    assert plain.jpeg is None and plain.pixels.shape == (64, 64, 3)


def test_an_unknown_preprocess_keeps_everything_on_the_cpu(encoder, monkeypatch) -> None:
    from torchvision import transforms

    pre = transforms.Compose([transforms.Resize(64), transforms.ToTensor()])
    assert geometry_of(pre) is None
    loaded = dict(encoder.model.load(), preprocess=pre)
    monkeypatch.setattr(encoder.model, "load", lambda: loaded)
    strategy = GpuJpegImages(device="cpu")
    strategy.start(encoder, 8)
    assert not strategy.wants_jpeg


def test_gpu_strategy_is_off_on_a_cpu_model(encoder) -> None:
    strategy = GpuJpegImages()  # the model's device: cpu here
    assert strategy.start(encoder, 0) == gpudecode.CPU_BATCH
    assert not strategy.wants_jpeg


def test_auto_batch_size_from_free_memory() -> None:
    gib = 1 << 30
    assert batch_for_memory(0) == 16
    assert batch_for_memory(8 * gib) == 16  # 2 GiB share / 96 MiB = 21 -> 16
    assert batch_for_memory(18 * gib) == 48
    assert batch_for_memory(139 * gib) == 64  # an H200: capped
    assert CpuImages().start(None, 12) == 12


def test_decode_workers_zero_means_one_per_core(make_config) -> None:
    import os

    from photoscribe.config import decode_workers
    from photoscribe.errors import ConfigError

    assert decode_workers(make_config(scan={"decode_workers": 0})) == os.cpu_count()
    assert decode_workers(make_config(scan={"decode_workers": 3})) == 3
    with pytest.raises(ConfigError, match="decode_workers must be at least 1"):
        make_config(scan={"decode_workers": -1})


class GpuFailsOn(GpuJpegImages):
    """nvJPEG refusing some JPEGs that libjpeg decodes (e.g. a chroma subsampling nvJPEG
    does not support): stands in for a failure only the real GPU decoder has."""

    def __init__(self, refuse: bytes) -> None:
        super().__init__(device="cpu")
        self.refuse = refuse

    def _nvjpeg(self, blobs):
        if self.refuse in blobs:
            raise RuntimeError("nvjpeg: unsupported JPEG")
        return super()._nvjpeg(blobs)


def bogus_huffman_table(data: bytes) -> bytes:
    """``data`` with its first Huffman table claiming more codes than exist (libjpeg and
    nvJPEG both stop at it; the header PIL and jpeghead read stays intact)."""
    out = bytearray(data)
    at = out.index(b"\xff\xc4")
    out[at + 5 : at + 21] = b"\xff" * 16
    return bytes(out)


def embeddings(store, paths) -> dict[str, np.ndarray]:
    out = {}
    for path in paths:
        row = store.by_path(path)
        out[path.name] = np.frombuffer(store.embedding_of(row.id), "<f2").astype(np.float32)
    return out


def test_scan_with_gpu_decoding_matches_the_cpu_scan(make_config, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate(COLOURS):
        draw_shape(colour, "circle", (800, 600), seed=i).save(folder / f"{colour}.jpg")
    draw_shape("red", "square", (500, 400)).save(folder / "square.png")
    (folder / "sideways.jpg").write_bytes(oriented(asymmetric(), 6))
    refused = folder / "refused.jpg"
    refused.write_bytes(jpeg(draw_shape("blue", "triangle", (640, 480))))
    broken = folder / "bogus_huffman.jpg"  # a header that passes, data no decoder takes
    broken.write_bytes(bogus_huffman_table(jpeg(asymmetric((640, 480)))))
    assert gpu_jpeg(broken.read_bytes()) is not None
    paths = sorted(folder.iterdir())

    results = {}
    for name, images in (("cpu", CpuImages()), ("gpu", GpuFailsOn(refused.read_bytes()))):
        config = make_config(
            index_path=str(tmp_path / name / "index.sqlite3"),
            llm={"enabled": False},
            metadata={"write": False},  # both runs see the same files
        )
        summary = scan(config, [folder], progress=Progress(bar=False), images=images)
        assert (summary.tagged, summary.failed) == (len(paths) - 1, 1), summary.failures
        store = open_store(config.index_path)
        row = store.by_path(broken)
        assert row.state is State.FAILED
        assert row.error.startswith("the image data is damaged or truncated"), row.error
        results[name] = embeddings(store, [p for p in paths if p != broken])
        store.close()
    for name, cpu in results["cpu"].items():
        gpu = results["gpu"][name]
        assert float(cpu @ gpu / np.linalg.norm(cpu) / np.linalg.norm(gpu)) > 0.99, name


def test_cpu_only_config_never_touches_cuda(make_config, tmp_path: Path, monkeypatch) -> None:
    def no_cuda(*args, **kwargs):
        raise AssertionError("CUDA touched by a CPU-only run")

    for name in ("is_available", "mem_get_info", "init", "current_device"):
        monkeypatch.setattr(torch.cuda, name, no_cuda)
    monkeypatch.setattr(torch.Tensor, "pin_memory", no_cuda)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate(COLOURS[:3]):
        draw_shape(colour, "square", (640, 480), seed=i).save(folder / f"{colour}.jpg")
    config = make_config(model={"device": "cpu", "batch_size": 0}, llm={"enabled": False})
    assert isinstance(images_for(config.model), CpuImages)
    summary = scan(config, [folder], progress=Progress(bar=False))
    assert summary.tagged == 3
    assert not torch.cuda.is_initialized()


def test_stack_on_the_cpu_keeps_values_and_casts() -> None:
    tensors = [torch.full((3, 4, 4), float(i)) for i in range(3)]
    batch = stack_on(tensors, "cpu", torch.bfloat16)
    assert batch.shape == (3, 3, 4, 4) and batch.dtype == torch.bfloat16
    assert [float(batch[i].float().mean()) for i in range(3)] == [0.0, 1.0, 2.0]
