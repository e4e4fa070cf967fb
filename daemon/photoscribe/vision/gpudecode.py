"""How photos become model input: on the CPU (the default), or JPEGs decoded on the GPU.

The pipeline is given one of these strategies when it is built (``images_for``):

- ``CpuImages``: worker processes decode every photo (JPEG draft mode) and shrink it to
  the model's size; the tensor is made in this process. Never imports or touches CUDA.
- ``GpuJpegImages``: when the model runs on CUDA, the workers still read, hash and check
  each file, but a JPEG comes back as its bytes (``jpeghead.JpegBytes``) and is decoded a
  batch at a time with nvJPEG (``torchvision.io.decode_jpeg(..., device="cuda")``), then
  turned, resized, centre-cropped and normalised on the GPU with the CPU path's geometry.
  Other formats, RAW previews and any JPEG the GPU cannot decode go the CPU way.

torch loads only inside methods, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photoscribe.vision.jpeghead import JpegBytes

log = logging.getLogger(__name__)

CPU_BATCH = 16  # model.batch_size 0 (auto) on the CPU: what the default has always been
# auto on CUDA: larger buys little for ViT-B, and the pipeline keeps two batches of JPEG
# bytes in host memory (64: ~0.5 GB of 12 MP JPEGs, inside the 2 GB a scan may take)
GPU_BATCH_RANGE = (16, 64)
PHOTO_GPU_BYTES = 96 << 20  # GPU memory one photo of a batch may take (a 24 MP decode + work)
GPU_SHARE = 0.25  # of the free GPU memory the batches may take
DECODE_CALL_PIXELS = 400_000_000  # pixels per decode_jpeg call (≈1.2 GB of uint8 output)
TORCH_MODES = {3: "bicubic", 2: "bilinear", 0: "nearest"}  # PIL filter number → interpolate
# CUDA needs one of these device nodes (NVIDIA's on Linux, /dev/dxg under WSL 2)
CUDA_DEVICE_NODES = ("/dev/nvidiactl", "/dev/dxg")


def no_cuda_device(nodes: Sequence[str] = CUDA_DEVICE_NODES) -> bool:
    """True where no CUDA GPU can be present, known without importing torch."""
    return not any(Path(node).exists() for node in nodes)


def batch_for_memory(free_bytes: int) -> int:
    """model.batch_size 0 on CUDA: a multiple of 16 that fits ``GPU_SHARE`` of the free
    memory at ``PHOTO_GPU_BYTES`` a photo, within ``GPU_BATCH_RANGE``."""
    low, high = GPU_BATCH_RANGE
    fits = int(free_bytes * GPU_SHARE) // PHOTO_GPU_BYTES
    return max(low, min(high, fits // 16 * 16))


def auto_batch_size(device: str) -> int:
    if not device.startswith("cuda"):
        return CPU_BATCH
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return batch_for_memory(free)


def stack_on(tensors: Sequence[Any], device: str, dtype: Any) -> Any:
    """One batch of model input on ``device`` in ``dtype``. For CUDA, tensors made on the
    CPU go through pinned (page-locked) memory with a non-blocking copy; tensors already
    on the GPU (decoded there) stay."""
    import torch

    if not device.startswith("cuda"):
        return torch.stack(list(tensors)).to(dtype=dtype)
    on_host = [i for i, t in enumerate(tensors) if not t.is_cuda]
    parts = list(tensors)
    if on_host:
        host = torch.stack([parts[i] for i in on_host]).pin_memory()
        moved = host.to(device, non_blocking=True)
        for row, i in enumerate(on_host):
            parts[i] = moved[row]
    return torch.stack(parts).to(dtype=dtype)


class CpuImages:
    """Every photo decoded in the worker processes; nothing here touches CUDA."""

    wants_jpeg = False

    def start(self, encoder: Any, configured_batch: int) -> int:
        """Called as a run starts: the batch size to use (``configured_batch`` 0: auto)."""
        if configured_batch:
            return configured_batch
        return auto_batch_size(encoder.model.load()["device"])

    def decode(self, items: Sequence[JpegBytes]) -> list[Any]:
        raise AssertionError("CpuImages never asks for JPEG bytes")


@dataclass(frozen=True)
class Geometry:
    """The model's preprocessing as tensor operations: resize the short side, centre
    crop, scale to 0-1, normalise (what OpenCLIP's Compose does to a PIL image)."""

    short_side: int
    crop: tuple[int, int]  # (height, width)
    mode: str  # torch interpolate mode
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def geometry_of(preprocess: Any) -> Geometry | None:
    """The ``Geometry`` of an OpenCLIP-style Compose (Resize → CenterCrop → RGB → ToTensor →
    Normalize); None for any other (those photos are then decoded on the CPU)."""
    from photoscribe.vision.loader import pixel_plan

    plan = pixel_plan(preprocess)
    steps = list(getattr(preprocess, "transforms", ()))
    if plan is None or plan.resample not in TORCH_MODES or len(steps) < 3:
        return None
    if not all(_harmless(s) for s in steps[2:-1]):
        return None
    normalize = steps[-1]
    mean, std = getattr(normalize, "mean", None), getattr(normalize, "std", None)
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return None
    mean3 = (float(mean[0]), float(mean[1]), float(mean[2]))
    std3 = (float(std[0]), float(std[1]), float(std[2]))
    return Geometry(plan.short_side, plan.crop, TORCH_MODES[plan.resample], mean3, std3)


def _harmless(step: Any) -> bool:
    """A step between the crop and Normalize that does nothing to an RGB image but scale
    it to 0-1 (open_clip's MaybeConvertMode or _convert_to_rgb, (Maybe)ToTensor)."""
    name = getattr(step, "__name__", None) or type(step).__name__
    return name in ("ToTensor", "MaybeToTensor", "MaybeConvertMode", "_convert_to_rgb")


class GpuJpegImages:
    """JPEGs decoded a batch at a time with nvJPEG and prepared on the GPU.

    ``device``: None uses the model's device and is active only when that is CUDA (on a
    CPU model it behaves as ``CpuImages``); a tests' ``"cpu"`` runs the same code with
    torchvision's CPU JPEG decoder standing in for nvJPEG."""

    def __init__(self, device: str | None = None) -> None:
        self.device = device
        self.wants_jpeg = False
        self._device = device or "cuda"
        self._geometry: Geometry | None = None
        self._lock = threading.Lock()  # decode calls come from the pipeline's main thread

    def start(self, encoder: Any, configured_batch: int) -> int:
        if self.device is None and not encoder.model.loaded and no_cuda_device():
            # the model will run on the CPU: decode as CpuImages, without waiting for it
            self._geometry, self._device, self.wants_jpeg = None, "cpu", False
            return configured_batch or CPU_BATCH
        loaded = encoder.model.load()
        device = self.device or loaded["device"]
        use = self.device is not None or device.startswith("cuda")
        self._geometry = geometry_of(loaded["preprocess"]) if use else None
        if use and self._geometry is None:
            log.info("the model's preprocessing is not a plain resize and crop: CPU decoding")
        self._device = device
        self.wants_jpeg = self._geometry is not None
        return configured_batch or auto_batch_size(loaded["device"])

    def decode(self, items: Sequence[JpegBytes]) -> list[Any]:
        """One model-input tensor (on the device) per item, or the exception that item
        raised: the caller decodes those on the CPU. A batch that fails is retried photo
        by photo, so one bad JPEG never costs the others."""
        results: list[Any] = []
        with self._lock:
            for chunk in _chunks(items, DECODE_CALL_PIXELS):
                results.extend(self._decode_chunk(chunk))
        return results

    def _decode_chunk(self, items: Sequence[JpegBytes]) -> list[Any]:
        try:
            images: list[Any] = self._nvjpeg([item.data for item in items])
        except (RuntimeError, ValueError) as exc:
            if len(items) == 1:
                return [exc]
            log.debug("GPU JPEG batch of %d failed (%s): one by one", len(items), exc)
            return [self._decode_chunk([item])[0] for item in items]
        return [self._prepare(image, item) for image, item in zip(images, items, strict=True)]

    def _nvjpeg(self, blobs: list[bytes]) -> list[Any]:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        out = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=self._device)
        return list(out)

    def _prepare(self, image: Any, item: JpegBytes) -> Any:
        geometry = self._geometry
        assert geometry is not None
        try:
            if tuple(image.shape[-2:]) != (item.size[1], item.size[0]) or image.shape[0] != 3:
                raise ValueError(
                    f"decoded {tuple(image.shape)}, header said {item.size[0]}x{item.size[1]}"
                )
            return model_input(orient(image, item.orientation), geometry)
        except (RuntimeError, ValueError) as exc:
            return exc


def _chunks(items: Sequence[JpegBytes], max_pixels: int) -> list[list[JpegBytes]]:
    chunks: list[list[JpegBytes]] = [[]]
    pixels = 0
    for item in items:
        size = item.size[0] * item.size[1]
        if chunks[-1] and pixels + size > max_pixels:
            chunks.append([])
            pixels = 0
        chunks[-1].append(item)
        pixels += size
    return [c for c in chunks if c]


def orient(image: Any, orientation: int) -> Any:
    """A C×H×W tensor turned upright as PIL's ``ImageOps.exif_transpose`` turns the image."""
    import torch

    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-2, -1)
    if orientation == 6:
        return torch.rot90(image, -1, dims=(-2, -1))
    if orientation == 7:
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return torch.rot90(image, 1, dims=(-2, -1))
    return image


def model_input(image: Any, geometry: Geometry) -> Any:
    """uint8 C×H×W (upright) → the normalised float32 tensor the model takes, computed as
    ``loader.shrink`` + the model's Compose compute it (same sizes, same crop offsets)."""
    import torch
    from torch.nn.functional import interpolate

    _, height, width = image.shape
    short, long = sorted((width, height))
    new_long = int(geometry.short_side * long / short)
    size = (new_long, geometry.short_side) if width <= height else (geometry.short_side, new_long)
    x = image.unsqueeze(0).float()
    if size != (height, width):
        smooth = geometry.mode != "nearest"
        kwargs = {"antialias": True, "align_corners": False} if smooth else {}
        x = interpolate(x, size=size, mode=geometry.mode, **kwargs)
    crop_h, crop_w = geometry.crop
    if crop_h > size[0] or crop_w > size[1]:  # the CPU path pads such a photo: leave it that
        raise ValueError(f"resized to {size}, smaller than the {geometry.crop} crop")
    top = round((size[0] - crop_h) / 2.0)
    left = round((size[1] - crop_w) / 2.0)
    x = x[:, :, top : top + crop_h, left : left + crop_w]
    x = x.clamp_(0.0, 255.0).round_().div_(255.0)  # PIL resizes into uint8: same rounding
    mean = torch.tensor(geometry.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(geometry.std, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std)[0].contiguous()


def images_for(model_cfg: Any) -> CpuImages | GpuJpegImages:
    """The strategy for ``model:`` of the config: GPU JPEG decoding unless the model is
    pinned to the CPU or ``model.gpu_decode`` is off (it turns itself off on a CPU model)."""
    if str(model_cfg.device) == "cpu" or not getattr(model_cfg, "gpu_decode", True):
        return CpuImages()
    return GpuJpegImages()
