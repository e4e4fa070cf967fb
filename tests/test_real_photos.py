"""Real photos (the ones scikit-image ships) through `photoscribe scan`, read back by exiftool."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import skimage.data as skimage_data  # a test dependency (pyproject.toml [test]): no skip
import yaml
from PIL import Image

from photoscribe.cli import main

from conftest import TINY_CLIP, tiny_config_dict
from fakes.openai_server import english_caption

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
    assert f"{len(REAL)} photos: {len(REAL)} tagged, 0 skipped (already done), 0 failed" in out
    result = subprocess.run(
        ["exiftool", "-j", "-G1", "-XMP-dc:Description", "-XMP-dc:Subject", str(real_photos)],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {Path(row["SourceFile"]).name: row for row in json.loads(result.stdout)}
    names = {path.name for path in real_photos.iterdir()}
    assert set(rows) == names
    labels = (TINY_CLIP / "labels.txt").read_text().split()
    subjects = {name: as_list(row["XMP-dc:Subject"]) for name, row in rows.items()}
    for name, row in rows.items():
        assert subjects[name] and set(subjects[name]) <= set(labels), (name, subjects[name])
        # the fake LLM's caption names the keywords photoscribe sent it
        assert row["XMP-dc:Description"] == english_caption(subjects[name]), name
    # every label of the vocabulary (fixed before the scan) finds exactly the photos whose
    # metadata carries it: the index agrees with what was written into the files
    for label in labels:
        expected = {name for name, words in subjects.items() if label in words}
        assert search_names(config, label, capsys) == expected, label
    assert search_names(config, "zebra", capsys) == set()


def search_names(config: Path, text: str, capsys: pytest.CaptureFixture[str]) -> set[str]:
    assert main(["-c", str(config), "search", text, "--text-only", "--json"]) == 0
    return {Path(hit["path"]).name for hit in json.loads(capsys.readouterr().out)}


def as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]
