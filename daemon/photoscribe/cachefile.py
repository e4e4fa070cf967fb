"""Writing photoscribe's own cache files (never photos): whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def save_array(path: Path, array: Any) -> None:
    """``array`` as ``path`` (.npy), replaced atomically: a reader sees the old file or the
    new one, never half of one. Raises OSError (e.g. a read-only cache_dir)."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            np.save(out, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_text(path: Path, text: str) -> None:
    """``text`` (UTF-8) as ``path``, replaced atomically like ``save_array``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
