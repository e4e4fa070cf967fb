"""Real photos (the ones scikit-image ships) through `photoscribe scan`, read back by exiftool."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image

from photoscribe.cli import main

from conftest import tiny_config_dict

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is a test dependency")

REAL = ["astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field"]


@pytest.fixture
def real_photos(tmp_path: Path) -> Path:
    folder = tmp_path / "real"
    folder.mkdir()
    for i, name in enumerate(REAL):
        img = Image.fromarray(getattr(skimage_data, name)())
        suffix = ".jpg" if i % 2 == 0 else ".png"
        img.save(folder / f"{name}{suffix}")
    return folder


def test_real_photos_get_description_and_keywords(
    real_photos: Path, tmp_path: Path, fake_llm, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(tiny_config_dict(tmp_path, fake_llm.base_url)))
    assert main(["-c", str(config), "scan", str(real_photos)]) == 0
    out = capsys.readouterr().out
    assert f"{len(REAL)} tagged" in out
    result = subprocess.run(
        ["exiftool", "-j", "-G1", "-XMP-dc:Description", "-XMP-dc:Subject", str(real_photos)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(result.stdout)
    assert len(rows) == len(REAL)
    for row in rows:
        assert row["XMP-dc:Description"], row
        assert row["XMP-dc:Subject"], row
    caption_word = rows[0]["XMP-dc:Description"].split()[-1].strip(".")
    assert main(["-c", str(config), "search", caption_word, "--text-only", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)
