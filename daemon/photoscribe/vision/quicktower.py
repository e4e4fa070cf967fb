"""The image tower kept as TorchScript, so that a CPU scan starts without open_clip.

Before the first photo is tagged a load imports open_clip (which imports torchvision,
which imports torch._dynamo: ~1.5 s of CPU here), builds the model from its weights file
(~0.5 s) and casts it to the precision chosen (~0.25 s); on a small machine every scan
pays that. After a full load on the CPU, the image tower (``model.visual``) is traced in
that precision and kept in ``cache_dir/image-tower/`` with what tagging needs besides it
(input size, logit scale, the normalisation); the next load of the same weights with the
same torch, open_clip and precision reads that file alone (~0.15 s) and builds the full
model only when something needs more than the image tower (text embeddings that are not
cached, a search query), on first use.

A TorchScript file holds torch operators and the weights, nothing compiled for one CPU;
the traced tower computes the same embeddings as the model (tests/test_quick_tower.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from photoscribe.cachefile import save_text
from photoscribe.vision.inputplan import open_clip_version
from photoscribe.vision.precision import torch_version

log = logging.getLogger(__name__)

FORMAT = 1  # of the files kept; a change makes every kept tower stale
PLAIN_STEPS = {"MaybeConvertMode", "_convert_to_rgb", "MaybeToTensor", "ToTensor"}


@dataclass(frozen=True)
class TowerInfo:
    """What tagging needs of the model besides its image tower."""

    model_id: str
    precision: str
    image_size: int
    logit_scale: float
    crop: tuple[int, int]  # (height, width) the preprocessing crops to
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def tower_key(model_id: str, precision: str) -> str:
    """What a kept tower depends on: the weights, the precision, torch and open_clip."""
    parts = [str(FORMAT), model_id, precision, torch_version(), open_clip_version()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def tower_paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    folder = cache_dir / "image-tower"
    return folder / f"{key}.pt", folder / f"{key}.json"


def plain_normalisation(preprocess: Any) -> tuple[tuple[int, int], Any, Any] | None:
    """(crop, mean, std) of a Resize → CenterCrop → to-RGB/to-tensor → Normalize pipeline
    whose resize equals the crop's short side (so model-sized pixels pass it unchanged
    but for the normalisation); None for any other preprocessing (no quick tower then)."""
    steps = list(getattr(preprocess, "transforms", ()))
    names = [_step_name(s) for s in steps]
    if len(steps) < 3 or names[:2] != ["Resize", "CenterCrop"] or names[-1] != "Normalize":
        return None
    if not set(names[2:-1]) <= PLAIN_STEPS:
        return None
    size, crop = steps[0].size, steps[1].size
    size = size[0] if isinstance(size, (list, tuple)) and len(size) == 1 else size
    height, width = (tuple(crop) * 2)[:2] if isinstance(crop, (list, tuple)) else (crop, crop)
    if not isinstance(size, int) or size != min(height, width):
        return None
    return (int(height), int(width)), steps[-1].mean, steps[-1].std


def _step_name(step: Any) -> str:
    """A transform's class name, or a plain function's own name (``_convert_to_rgb``)."""
    name = type(step).__name__
    return getattr(step, "__name__", name) if name == "function" else name


def keep_tower(cache_dir: Path, loaded: dict[str, Any], model_id: str) -> bool:
    """Trace the loaded model's image tower and keep it with its ``TowerInfo``; False
    (and nothing kept) when this model or its preprocessing has no plain tower."""
    info = tower_info(loaded, model_id)
    if info is None:
        return False
    import torch

    key = tower_key(model_id, info.precision)
    module_path, info_path = tower_paths(cache_dir, key)
    size = info.image_size
    example = torch.zeros(2, 3, size, size, dtype=loaded["dtype"])
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice, tracer hints
        traced = torch.jit.trace(loaded["model"].visual.eval(), example, check_trace=False)
        _save_module(traced, module_path)
    raw = {"key": key, **asdict(info)}
    save_text(info_path, json.dumps(raw) + "\n")
    _drop_stale(cache_dir, info, keep=key)
    return True


def tower_info(loaded: dict[str, Any], model_id: str) -> TowerInfo | None:
    model = loaded["model"]
    if loaded["device"] != "cpu" or not _plain_encode_image(model):
        return None
    plain = plain_normalisation(loaded["preprocess"])
    if plain is None:
        return None
    crop, mean, std = plain
    size = model.visual.image_size
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    if crop != (size, size):
        return None
    return TowerInfo(
        model_id,
        loaded["precision"].precision,
        size,
        float(loaded["logit_scale"]),
        crop,
        tuple(float(x) for x in mean),
        tuple(float(x) for x in std),
    )


def _plain_encode_image(model: Any) -> bool:
    """Whether encode_image is open_clip's ``normalize(visual(image))`` (CLIP and
    CustomTextCLIP; not CoCa, whose image encoding differs)."""
    import open_clip

    plain = (open_clip.CLIP.encode_image, open_clip.CustomTextCLIP.encode_image)
    return getattr(type(model), "encode_image", None) in plain and hasattr(model, "visual")


def _save_module(module: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.jit.save(module, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _drop_stale(cache_dir: Path, info: TowerInfo, keep: str) -> None:
    """Remove towers kept for the same weights and precision under another key (another
    torch or open_clip): one tower per model and precision is kept."""
    for info_path in (cache_dir / "image-tower").glob("*.json"):
        if info_path.stem == keep:
            continue
        try:
            raw = json.loads(info_path.read_text(encoding="utf-8"))
            if (raw.get("model_id"), raw.get("precision")) != (info.model_id, info.precision):
                continue
        except (OSError, ValueError, AttributeError):
            continue
        for path in tower_paths(cache_dir, info_path.stem):
            path.unlink(missing_ok=True)


def read_tower(cache_dir: Path, model_id: str, precision: str) -> tuple[Any, TowerInfo] | None:
    """The kept tower (a TorchScript module on the CPU) and its info; None when none is
    kept for these weights, precision, torch and open_clip, or it cannot be read."""
    key = tower_key(model_id, precision)
    module_path, info_path = tower_paths(cache_dir, key)
    try:
        raw = json.loads(info_path.read_text(encoding="utf-8"))
        if raw["key"] != key or raw["model_id"] != model_id:
            return None
        info = _info_from(raw)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notice
            module = torch.jit.load(str(module_path), map_location="cpu")
    except Exception as exc:  # a damaged or foreign file: the full load instead
        log.warning("cannot read the kept image tower %s (%s); loading the model", module_path, exc)
        return None
    return module.eval(), info


def _info_from(raw: dict[str, Any]) -> TowerInfo:
    crop, mean, std = raw["crop"], raw["mean"], raw["std"]
    return TowerInfo(
        str(raw["model_id"]),
        str(raw["precision"]),
        int(raw["image_size"]),
        float(raw["logit_scale"]),
        (int(crop[0]), int(crop[1])),
        (float(mean[0]), float(mean[1]), float(mean[2])),
        (float(std[0]), float(std[1]), float(std[2])),
    )


class QuickClip:
    """Stands in for the open_clip model: ``encode_image`` runs the kept tower; anything
    else (the text tower, ...) is the full model's, built on first use by ``full``."""

    def __init__(self, module: Any, info: TowerInfo, full: Callable[[], Any]) -> None:
        self._module = module
        self._full = full
        self.visual = SimpleNamespace(image_size=info.image_size)

    def encode_image(self, images: Any, normalize: bool = False) -> Any:
        import torch

        features = self._module(images)
        return torch.nn.functional.normalize(features, dim=-1) if normalize else features

    def __getattr__(self, name: str) -> Any:
        return getattr(self._full(), name)


class QuickPreprocess:
    """The model's preprocessing for pixels already resized and cropped to its input
    (``loader.shrink``): to a tensor and normalised, as torchvision does; any other image
    goes through the full model's own preprocessing, built on first use by ``full``."""

    def __init__(self, info: TowerInfo, full: Callable[[], Any]) -> None:
        self._size = (info.crop[1], info.crop[0])  # PIL's (width, height)
        self._mean, self._std = info.mean, info.std
        self._full = full

    def __call__(self, image: Any) -> Any:
        if image.mode != "RGB" or image.size != self._size:
            return self._full()(image)
        import numpy as np
        import torch

        pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
        tensor = pixels.permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        mean = torch.as_tensor(self._mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.as_tensor(self._std, dtype=torch.float32).view(-1, 1, 1)
        return tensor.sub_(mean).div_(std)

    def __getattr__(self, name: str) -> Any:  # e.g. .transforms
        return getattr(self._full(), name)


class Later:
    """A value made by ``make`` on first use, once (thread-safe)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._value: Any = None

    def __call__(self) -> Any:
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value


def quick_loaded(
    module: Any, info: TowerInfo, full: Later, dtype: Any, decision: Any
) -> dict[str, Any]:
    """What ClipModel.load returns, from a kept tower: the same keys as a full load."""
    return {
        "precision": decision,
        "model": QuickClip(module, info, lambda: full()["model"]),
        "preprocess": QuickPreprocess(info, lambda: full()["preprocess"]),
        "tokenizer": _LaterCall(lambda: full()["tokenizer"]),
        "device": "cpu",
        "dtype": dtype,
        "logit_scale": info.logit_scale,
        "quick": True,
    }


class _LaterCall:
    def __init__(self, target: Callable[[], Callable[..., Any]]) -> None:
        self._target = target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)
