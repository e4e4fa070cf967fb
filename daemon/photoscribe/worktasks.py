"""What worker processes run on untrusted files: read, hash, metadata, decode (no torch).

Each task is a module-level function whose arguments and result pickle small: a photo
goes back as the model-sized uint8 pixels (``Pixels``), its tensor is made by the caller.
The decode function is part of the request, so a test can hand a worker one that
really crashes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from photoscribe.contenthash import photo_hash
from photoscribe.errors import PhotoError
from photoscribe.formats import is_raw, same_named_jpeg
from photoscribe.fsutil import read_photo
from photoscribe.vision.jpeghead import JpegBytes, gpu_jpeg
from photoscribe.vision.loader import PixelPlan, decode, shrink

Decode = Callable[..., Any]  # (data, min_side, raw=...) -> PIL.Image (vision.loader.decode)


@dataclass(frozen=True)
class ContextSpec:
    """The caption prompt's context line from a photo's metadata (caption.context)."""

    fields: tuple[str, ...]
    language: str
    hemisphere: str

    def __call__(self, data: bytes) -> str | None:
        from photoscribe.caption.context import context_reader

        return context_reader(self.fields, self.language, self.hemisphere)(data)


@dataclass(frozen=True)
class LoadRequest:
    min_side: int  # the model's input size
    plan: PixelPlan | None  # None: the decoded image whole
    model_id: str | None = None  # look for photoscribe's record of this model; None: don't
    context: ContextSpec | None = None
    decode: Decode = field(default=decode)
    jpeg_bytes: bool = False  # a JPEG nvJPEG can decode comes back undecoded (GPU decoding)
    facts: bool = False  # read the date taken, camera and place too (no write will read them)


@dataclass(frozen=True)
class LoadResult:
    content_hash: str
    pixels: np.ndarray | None  # uint8, height × width × 3 (RGB); None when ``jpeg`` is set
    context: str | None = None
    recorded: Any = None  # metadata.recorded.Recorded of these pixels by this model
    jpeg: JpegBytes | None = None  # (request.jpeg_bytes) to decode on the GPU instead
    facts: Any = None  # (request.facts) search.facts.PhotoFacts, or None


def load_photo(
    path: Path, request: LoadRequest, *, phase: Callable[[str], None] | None = None
) -> LoadResult:
    """Everything the pipeline needs from one photo file, in one trip to a worker."""
    say = phase or (lambda name: None)
    data = read_photo(path)
    say("image decoder")
    digest = photo_hash(path, data)  # decodes formats it cannot walk (TIFF)
    say("metadata reader")
    context = request.context(data) if request.context else None
    recorded = _recorded(path, data, digest, request.model_id)
    facts = _facts(path, data) if request.facts else None
    say("image decoder")
    source, raw = image_source(path, data)
    jpeg = gpu_jpeg(source) if request.jpeg_bytes and not raw else None
    if jpeg is not None:
        return LoadResult(digest, None, context, recorded, jpeg, facts)
    pixels = decode_pixels(source, request, raw=raw)
    return LoadResult(digest, pixels, context, recorded, facts=facts)


def decode_pixels(data: bytes, request: LoadRequest, *, raw: bool = False) -> np.ndarray:
    """The model-sized pixels of one image, decoded on the CPU (also the fallback for a
    JPEG the GPU could not decode)."""
    return shrink(request.decode(data, request.min_side, raw=raw), request.plan)


def _recorded(path: Path, data: bytes, digest: str, model_id: str | None) -> Any:
    """photoscribe's record in the photo if it says these pixels were tagged by this
    model (a write whose index update was lost, e.g. to a kill): adopted, not redone."""
    if model_id is None:
        return None
    from photoscribe.metadata.recorded import read_recorded

    recorded = read_recorded(path, data)
    if recorded is None or (recorded.content_hash, recorded.model) != (digest, model_id):
        return None
    return recorded


def _facts(path: Path, data: bytes) -> Any:
    from photoscribe.fsutil import display
    from photoscribe.search.facts import facts_in

    return facts_in(data, display(path))


def image_source(path: Path, data: bytes) -> tuple[bytes, bool]:
    """What to decode for the model: a RAW's JPEG twin if it has one, else its own
    embedded preview (raw=True); any other photo its own bytes."""
    if not is_raw(path):
        return data, False
    twin = same_named_jpeg(path)
    if twin is not None:
        try:
            return read_photo(twin), False
        except (OSError, PhotoError):  # unreadable, or not a regular file: use the preview
            pass
    return data, True


def python_modules() -> list[str]:
    """The modules a worker has loaded (a test checks that torch is not among them)."""
    import sys

    return sorted(sys.modules)
