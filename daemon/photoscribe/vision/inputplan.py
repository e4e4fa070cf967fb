"""What the decode workers need to know of a model, kept so a scan can start without it.

A worker decodes a photo to the model's input size and applies its resize and centre crop
(``loader.PixelPlan``); both come from the loaded model's preprocessing. Loading the model
takes seconds (torch, open_clip, the weights), so the plan is kept in
cache_dir/input-plan/, keyed by the model and the open_clip version that made it: the next
scan decodes its first photos while the model is still loading (``Tagger.start``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from photoscribe.cachefile import save_text
from photoscribe.vision.loader import PixelPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputPlan:
    min_side: int  # the model's input size: decode at least this large
    pixels: PixelPlan | None  # None: the model's preprocessing is not Resize → CenterCrop


def open_clip_version() -> str:
    try:
        return metadata.version("open_clip_torch")
    except metadata.PackageNotFoundError:
        return "none"


def plan_path(cache_dir: Path, model_id: str) -> Path:
    key = hashlib.sha256(f"{model_id}\n{open_clip_version()}".encode()).hexdigest()[:20]
    return cache_dir / "input-plan" / f"{key}.json"


def read_plan(cache_dir: Path | None, model_id: str) -> InputPlan | None:
    """The plan kept for ``model_id``; None when there is none (or it is unreadable)."""
    if cache_dir is None:
        return None
    try:
        raw = json.loads(plan_path(cache_dir, model_id).read_text(encoding="utf-8"))
        if raw["model"] != model_id:
            return None
        pixels = raw["pixels"]
        plan = None
        if pixels is not None:
            crop = (int(pixels["crop"][0]), int(pixels["crop"][1]))
            plan = PixelPlan(int(pixels["short_side"]), crop, int(pixels["resample"]))
        return InputPlan(int(raw["min_side"]), plan)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def save_plan(cache_dir: Path | None, model_id: str, plan: InputPlan) -> None:
    """Keep ``plan`` for the next start; a cache that cannot be written costs only speed."""
    if cache_dir is None or read_plan(cache_dir, model_id) == plan:
        return
    pixels = None
    if plan.pixels is not None:
        crop, resample = list(plan.pixels.crop), plan.pixels.resample
        pixels = {"short_side": plan.pixels.short_side, "crop": crop, "resample": resample}
    raw = {"model": model_id, "min_side": plan.min_side, "pixels": pixels}
    try:
        save_text(plan_path(cache_dir, model_id), json.dumps(raw) + "\n")
    except OSError as exc:
        log.debug("could not keep the model's input plan in %s: %s", cache_dir, exc)
