"""`photoscribe scan` end to end: tiny trained CLIP, real files, exiftool, a real HTTP LLM."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from photoscribe.cli import main
from photoscribe.records import State
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fakes.openai_server import chinese_caption, english_caption
from fixtures.exiftool import read_tags
from fixtures.synthetic import draw_shape

SHAPES = [  # (file name, colour, shape, PIL format options)
    ("red_circle.jpg", "red", "circle", {"quality": 92}),
    ("blue_square.png", "blue", "square", {}),
    ("green_triangle.tif", "green", "triangle", {"compression": "tiff_lzw"}),
    ("yellow_circle.webp", "yellow", "circle", {"quality": 90}),
]


exif_json = read_tags


def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def summary(out: str) -> str:
    """The first line `photoscribe scan` prints."""
    return out.splitlines()[0]


def counts(tagged: int, skipped: int, failed: int, captioned: int, waiting: int) -> str:
    """That line as it must read."""
    return (
        f"{tagged + skipped + failed} photos: {tagged} tagged, {skipped} skipped (already done), "
        f"{failed} failed; {captioned} captions written, {waiting} waiting for the LLM"
    )


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i, (name, colour, shape, opts) in enumerate(SHAPES):
        target = folder / ("sub" if i % 2 else "") / name
        draw_shape(colour, shape, size=(640, 480), seed=1000 + i).save(target, **opts)
    return folder


def all_photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


class Run:
    """Runs the real CLI in-process with a config file."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp_path = tmp_path
        self.capsys = capsys
        self.config_path = tmp_path / "config.yaml"

    def configure(self, base_url: str, **sections: dict) -> None:
        raw = tiny_config_dict(self.tmp_path, base_url)
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        self.config_path.write_text(yaml.safe_dump(raw))

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["-c", str(self.config_path), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def store(self):
        return open_store(self.tmp_path / "state" / "index.sqlite3", readonly=True)


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(tmp_path, capsys)


def test_scan_tags_captions_writes_and_indexes(photos: Path, run: Run, fake_llm) -> None:
    run.configure(fake_llm.base_url)
    before = {p: pixels(p) for p in all_photos(photos)}
    code, out, err = run("scan", str(photos))
    assert code == 0, out + err
    assert summary(out) == counts(4, 0, 0, 4, 0)
    for name, colour, shape, _ in SHAPES:
        path = next(photos.rglob(name))
        meta = exif_json(path)
        subjects = as_list(meta.get("XMP-dc:Subject"))
        assert sorted(subjects) == sorted([colour, shape]), (name, subjects)
        # the fake LLM's caption names the keywords it was sent, best first
        description = meta["XMP-dc:Description"]
        assert description == english_caption(subjects)
        assert meta["IFD0:ImageDescription"] == description
        if path.suffix in (".jpg", ".tif"):
            assert as_list(meta["IPTC:Keywords"]) == subjects
            assert meta["IPTC:CodedCharacterSet"] == "UTF8"
        assert np.array_equal(pixels(path), before[path]), f"pixels changed in {name}"
    store = run.store()
    assert store.counts()[State.DONE] == 4
    red = next(photos.rglob("red_circle.jpg"))
    row = store.by_path(red)
    assert [k.label for k in row.keywords] == as_list(exif_json(red)["XMP-dc:Subject"])
    assert row.caption == exif_json(red)["XMP-dc:Description"]
    embedding = np.frombuffer(store.embedding_of(row.id), dtype="<f2").astype(np.float32)
    assert abs(np.linalg.norm(embedding) - 1) < 0.01  # a unit vector, as search expects


def test_second_scan_processes_nothing(photos: Path, run: Run, fake_llm) -> None:
    run.configure(fake_llm.base_url)
    assert run("scan", str(photos))[0] == 0
    requests = len(fake_llm.requests)
    mtimes = {p: p.stat().st_mtime_ns for p in all_photos(photos)}
    code, out, _ = run("scan", str(photos))
    assert code == 0
    assert summary(out) == counts(0, 4, 0, 0, 0)
    assert len(fake_llm.requests) == requests
    assert {p: p.stat().st_mtime_ns for p in all_photos(photos)} == mtimes


def test_bad_files_are_recorded_and_the_rest_completes(photos: Path, run: Run, fake_llm) -> None:
    good = (photos / "red_circle.jpg").read_bytes()
    bad = {
        "corrupt.jpg": good[:2] + bytes(range(256)) * 40,
        "empty.jpg": b"",
        "notes.jpg": b"this is a text file, not a photo\n",
        "truncated.jpg": good[: len(good) // 3],
    }
    for name, data in bad.items():
        (photos / name).write_bytes(data)
    run.configure(fake_llm.base_url)
    code, out, _ = run("scan", str(photos))
    assert code == 1
    assert summary(out) == counts(4, 0, 4, 4, 0)
    for name, data in bad.items():
        assert (photos / name).read_bytes() == data, f"{name} was modified"
    not_an_image = "not an image file (the format is not recognised)"
    expected = {
        "corrupt.jpg": not_an_image,
        "empty.jpg": "the file is empty (0 bytes), not an image",
        "notes.jpg": not_an_image,
        "truncated.jpg": "the image data is damaged or truncated: image file is truncated",
    }
    for name, reason in expected.items():
        assert f"  failed: {photos / name}: {reason}" in out, name
    store = run.store()
    reasons = {r.path.name: r.error for r in store.last_failures()}
    assert set(reasons) == set(bad)
    for name, reason in expected.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
    code, out, _ = run("status")
    assert code == 0 and "failed: 4" in out and "empty.jpg" in out
    assert summary(run("scan", str(photos))[1]) == counts(0, 8, 0, 0, 0)


def test_llm_down_keeps_keywords_then_next_scan_fills_captions(
    photos: Path, run: Run, fake_llm
) -> None:
    run.configure(f"http://127.0.0.1:{dead_port()}/v1", llm={"timeout": 1.0})
    code, out, _ = run("scan", str(photos))
    assert code == 0
    assert summary(out) == counts(4, 0, 0, 0, 4)
    red = photos / "red_circle.jpg"
    meta = exif_json(red)
    assert sorted(as_list(meta["XMP-dc:Subject"])) == ["circle", "red"]
    assert "XMP-dc:Description" not in meta
    assert run.store().counts()[State.NEEDS_CAPTION] == 4

    run.configure(fake_llm.base_url)
    code, out, _ = run("scan", str(photos))
    assert code == 0
    assert summary(out) == counts(0, 4, 0, 4, 0)
    captioned = exif_json(red)
    assert captioned["XMP-dc:Description"] == english_caption(as_list(meta["XMP-dc:Subject"]))
    assert run.store().counts()[State.DONE] == 4


@pytest.mark.parametrize("fault", ["status500", "slow"])
def test_failing_llm_server_never_fails_the_photo(photos: Path, run: Run, fake_llm, fault) -> None:
    if fault == "status500":
        fake_llm.set_behavior("status", status=500)
    else:
        fake_llm.set_behavior("slow", delay=3.0)
    run.configure(fake_llm.base_url, llm={"timeout": 0.5, "retries": 1})
    code, out, _ = run("scan", str(photos))
    assert code == 0
    assert summary(out) == counts(4, 0, 0, 0, 4)
    assert run.store().counts()[State.NEEDS_CAPTION] == 4


def test_thinking_and_language(photos: Path, run: Run, fake_llm) -> None:
    fake_llm.set_behavior("think_tags")
    run.configure(fake_llm.base_url, llm={"language": "zh"})
    assert run("scan", str(photos / "red_circle.jpg"))[0] == 0
    meta = exif_json(photos / "red_circle.jpg")
    # the reasoning is cut off; what is left is the Chinese caption of the keywords
    assert meta["XMP-dc:Description"] == chinese_caption(as_list(meta["XMP-dc:Subject"]))
    body = fake_llm.requests[-1]
    assert body["chat_template_kwargs"]["enable_thinking"] is False


def test_user_metadata_survives(photos: Path, run: Run, fake_llm) -> None:
    red = photos / "red_circle.jpg"
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            "-XMP-dc:Subject=Holiday 2024",
            "-IPTC:Keywords=Holiday 2024",
            "-Make=Nikon",
            "-Model=D2H",
            "-DateTimeOriginal=2024:07:01 12:00:00",
            "-GPSLatitude=48.85",
            "-GPSLatitudeRef=N",
            "-GPSLongitude=2.35",
            "-GPSLongitudeRef=E",
            str(red),
        ],
        check=True,
    )
    run.configure(fake_llm.base_url)
    assert run("scan", str(red))[0] == 0
    meta = exif_json(red)
    # the user's keyword first, then photoscribe's two
    subjects = as_list(meta["XMP-dc:Subject"])
    assert (subjects[0], sorted(subjects[1:])) == ("Holiday 2024", ["circle", "red"])
    assert as_list(meta["IPTC:Keywords"]) == subjects
    assert meta["IFD0:Make"] == "Nikon" and meta["IFD0:Model"] == "D2H"
    assert meta["ExifIFD:DateTimeOriginal"] == "2024:07:01 12:00:00"
    assert meta["GPS:GPSLatitudeRef"] == "North"


def test_search_finds_by_text_and_by_clip(photos: Path, run: Run, fake_llm) -> None:
    run.configure(fake_llm.base_url)
    assert run("scan", str(photos))[0] == 0
    triangle = photos / "green_triangle.tif"
    code, out, _ = run("search", "triangle", "--json")
    assert code == 0
    hits = json.loads(out)
    assert (hits[0]["path"], hits[0]["matched_by"]) == (str(triangle), ["text", "clip"])
    # the others are found by CLIP alone (min_similarity 0), each less similar than the first
    assert [hit["matched_by"] for hit in hits[1:]] == [["clip"]] * (len(hits) - 1)
    assert all(hit["similarity"] < hits[0]["similarity"] for hit in hits[1:])
    code, out, _ = run("search", "a photo of a blue square.", "--json", "-n", "1")
    hits = json.loads(out)
    assert [(hit["path"], hit["matched_by"]) for hit in hits] == [
        (str(photos / "sub" / "blue_square.png"), ["text", "clip"])
    ]
    code, out, _ = run("search", "triangle", "--text-only")
    keywords = ", ".join(as_list(exif_json(triangle)["XMP-dc:Subject"]))
    assert (code, out) == (
        0,
        f"{triangle}\n    A photo showing green and triangle.\n    [{keywords}]\n",
    )


def test_moved_photo_keeps_its_row_without_retagging(photos: Path, run: Run, fake_llm) -> None:
    run.configure(fake_llm.base_url)
    assert run("scan", str(photos))[0] == 0
    old = photos / "red_circle.jpg"
    row_id = run.store().by_path(old).id
    requests = len(fake_llm.requests)
    new = photos / "sub" / "renamed.jpg"
    shutil.move(old, new)
    code, out, _ = run("scan", str(photos))
    assert code == 0 and summary(out) == counts(0, 4, 0, 0, 0)
    assert run.store().by_path(new).id == row_id
    assert run.store().by_path(old) is None
    assert len(fake_llm.requests) == requests


def test_copied_photo_reuses_tags(photos: Path, run: Run, fake_llm) -> None:
    run.configure(fake_llm.base_url)
    assert run("scan", str(photos))[0] == 0
    requests = len(fake_llm.requests)
    copy = photos / "copy_of_red.jpg"
    shutil.copy2(photos / "red_circle.jpg", copy)
    code, out, _ = run("scan", str(photos))
    assert code == 0 and summary(out) == counts(1, 4, 0, 1, 0)  # its caption is reused
    assert len(fake_llm.requests) == requests  # no new caption needed
    assert run.store().by_path(copy).state is State.DONE


def test_index_only_mode_never_touches_photos(photos: Path, run: Run, fake_llm) -> None:
    run.configure(fake_llm.base_url, metadata={"write": False})
    before = {p: p.read_bytes() for p in all_photos(photos)}
    code, out, _ = run("scan", str(photos), "--no-caption")
    assert code == 0
    assert summary(out) == (
        "4 photos: 4 tagged, 0 skipped (already done), 0 failed; captions off (--no-caption)"
    )
    assert "waiting" not in out and "next scan" not in out
    assert {p: p.read_bytes() for p in all_photos(photos)} == before
    assert fake_llm.requests == []
    code, out, _ = run("status", "--json")
    status = json.loads(out)
    assert status["counts"] == {"done": 0, "needs_caption": 4, "failed": 0, "undone": 0}


def test_caption_retry_pending_fills_waiting_captions(photos: Path, run: Run, fake_llm) -> None:
    run.configure(f"http://127.0.0.1:{dead_port()}/v1", llm={"timeout": 1.0, "retries": 0})
    assert summary(run("scan", str(photos))[1]) == counts(4, 0, 0, 0, 4)
    run.configure(fake_llm.base_url)
    code, out, _ = run("caption", "--retry-pending", str(photos / "sub"))
    assert code == 0
    assert out.startswith("2 captions written, 0 failed, 0 still waiting"), out
    blue = exif_json(photos / "sub" / "blue_square.png")
    assert blue["XMP-dc:Description"] == english_caption(as_list(blue["XMP-dc:Subject"]))
    assert "XMP-dc:Description" not in exif_json(photos / "red_circle.jpg")
    code, out, _ = run("caption", "--retry-pending")
    assert out.startswith("2 captions written, 0 failed, 0 still waiting"), out
    red = exif_json(photos / "red_circle.jpg")
    assert red["XMP-dc:Description"] == english_caption(as_list(red["XMP-dc:Subject"]))
    assert run.store().counts()[State.DONE] == 4
    assert run("caption", "--retry-pending")[1].startswith("0 captions written")
