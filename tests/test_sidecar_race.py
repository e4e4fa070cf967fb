"""A new sidecar is linked into place, so one that another program (darktable, Lightroom)
creates after photoscribe looked and before it links its own is never overwritten.

The race is made to happen every time: the real ``os.link`` is wrapped (in this test only)
so that the other program's sidecar appears right before photoscribe's link runs."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from photoscribe.config import MetadataConfig
from photoscribe.errors import PhotoChangedError
from photoscribe.metadata import write_photo
from photoscribe.records import Annotation
from test_sidecar_undo import DARKTABLE_SIDECAR, fake_raw

from fixtures.synthetic import draw_shape


def raw_photo(folder: Path) -> Path:
    buf = io.BytesIO()
    draw_shape("red", "circle", size=(640, 480), seed=1).save(buf, "JPEG", quality=90)
    raw = folder / "IMG_0042.CR2"
    raw.write_bytes(fake_raw(buf.getvalue()))
    return raw


def test_a_sidecar_created_meanwhile_is_never_overwritten(tmp_path: Path, monkeypatch) -> None:
    raw = raw_photo(tmp_path)
    sidecar = raw.with_name(raw.name + ".xmp")
    theirs = DARKTABLE_SIDECAR.encode()
    real_link, raced = os.link, []

    def link_after_the_other_program(src, dst, *args, **kwargs):
        if Path(dst) == sidecar and not raced:  # darktable writes its sidecar just now
            with open(dst, "xb") as f:
                f.write(theirs)
            raced.append(dst)
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link_after_the_other_program)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    ann = Annotation(("red", "circle"), "A red circle.", "m", "file:" + digest)
    with pytest.raises(PhotoChangedError, match="created by another program meanwhile"):
        write_photo(raw, ann, expected_hash=ann.content_hash, config=MetadataConfig())
    assert raced == [sidecar]  # the race did happen
    assert sidecar.read_bytes() == theirs  # theirs, byte for byte
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == [raw.name, sidecar.name]  # no temp

    monkeypatch.setattr(os, "link", real_link)  # the retry merges into theirs
    write_photo(raw, ann, expected_hash=ann.content_hash, config=MetadataConfig())
    merged = sidecar.read_text(encoding="utf-8")
    assert "darktable:history" in merged and "circle" in merged and "Oma" in merged
