"""How much of one photo photoscribe takes into memory (stdlib only; PIL never imported).

Photos are read whole and decoded whole, so a hostile or giant file could exhaust the
daemon's memory. Three limits keep one photo's cost bounded; a file beyond them is
refused with a DecodeError that says which limit and what to do, and the scan goes on.

- ``MAX_PHOTO_BYTES``: a larger file is not read at all (checked on the open file).
- ``MAX_IMAGE_PIXELS``: a larger image is not decoded (a decompression bomb: a PNG of a
  few KB may declare 100,000×100,000 pixels). Applied to PIL as an error, not a warning.
- ``MAX_HASHED_FRAMES``: at most this many frames of an animation or multi-page file are
  decoded for its content hash (CLIP only ever sees the first).
"""

from __future__ import annotations

import re

MAX_PHOTO_BYTES = 512 << 20  # 512 MiB: larger than any camera's photo, below the RAM budget
MAX_IMAGE_PIXELS = 200_000_000  # ~200 MP: ~800 MB decoded as RGB
MAX_HASHED_FRAMES = 64


def too_large_file(size: int) -> str:
    """The reason a file of ``size`` bytes is refused, or "" when it may be read."""
    if size <= MAX_PHOTO_BYTES:
        return ""
    return (
        f"the file is {_size(size)}, larger than the {_size(MAX_PHOTO_BYTES)} photoscribe "
        "reads into memory for one photo; it is left alone (export a smaller copy to tag it)"
    )


def too_many_pixels(exc: BaseException) -> str:
    """The reason for PIL's DecompressionBombError/Warning ``exc``, in the user's terms."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    declared = f"{int(found.group(1)) / 1e6:,.0f} MP" if found else "more pixels"
    return (
        f"image too large to decode safely: it declares {declared}, more than the "
        f"{MAX_IMAGE_PIXELS // 1_000_000} MP photoscribe decodes (a decompression bomb or a "
        "giant scan); it is left alone (export a smaller copy to tag it)"
    )


def _size(count: int) -> str:
    if count >= 1 << 30:
        return f"{count / (1 << 30):.1f} GB"
    return f"{count / (1 << 20):.0f} MB"
