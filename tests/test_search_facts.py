"""Date taken and camera are recorded at tag time (real scan, real EXIF) and can be
backfilled for photos indexed before; the --after/--camera filters use them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from test_scan_e2e import Run

from fixtures.synthetic import draw_shape

EXIF_IFD, DATE_TAKEN, MAKE, MODEL = 0x8769, 0x9003, 0x010F, 0x0110


def save_with_exif(path: Path, colour: str, taken: str, make: str, model: str) -> None:
    image = draw_shape(colour, "circle", size=(320, 240))
    exif = Image.Exif()
    exif[MAKE], exif[MODEL] = make, model
    exif.get_ifd(EXIF_IFD)[DATE_TAKEN] = taken
    image.save(path, quality=90, exif=exif)


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    folder = tmp_path / "photos" / "旅行"
    folder.mkdir(parents=True)
    save_with_exif(folder / "red.jpg", "red", "2023:05:01 10:00:00", "Canon", "Canon EOS R5")
    save_with_exif(folder / "blue.jpg", "blue", "2024:08:02 17:30:00", "Apple", "iPhone 13")
    runner = Run(tmp_path, capsys)
    runner.configure("http://127.0.0.1:9/v1")
    code, out, _ = runner("scan", "--no-caption", str(tmp_path / "photos"))
    assert code == 0, out
    return runner


def names(run: Run, *args: str) -> list[str]:
    code, out, err = run("search", "--text-only", "--json", *args)
    assert code == 0, err
    return sorted(Path(h["path"]).name for h in json.loads(out))


def test_scan_records_date_taken_and_camera(run: Run) -> None:
    store = run.store()
    rows = {r.path.name: r for r in store.rows_under(run.tmp_path / "photos")}
    store.close()
    assert rows["red.jpg"].date_taken == "2023-05-01T10:00"
    assert rows["blue.jpg"].camera == "Apple iPhone 13"
    assert names(run, "旅行") == ["blue.jpg", "red.jpg"]  # the folder name, in Chinese
    assert names(run, "旅行", "--after", "2024-01-01") == ["blue.jpg"]
    assert names(run, "旅行", "--before", "2024-01-01") == ["red.jpg"]
    assert names(run, "--camera", "eos") == ["red.jpg"]
    assert names(run, "iphone") == ["blue.jpg"]  # the camera is searched as text too


def test_index_facts_backfills_photos_indexed_without_them(run: Run) -> None:
    from photoscribe.store import open_store

    store = open_store(run.tmp_path / "state" / "index.sqlite3")
    with store.transaction() as conn:  # as an index made before 0005_search holds them
        conn.execute("UPDATE photos SET date_taken = NULL, camera = NULL, place = NULL")
    store.close()
    assert names(run, "旅行", "--after", "2024-01-01") == []
    code, out, _ = run("index", "facts")
    assert code == 0 and out.startswith("2 photos"), out
    assert names(run, "旅行", "--after", "2024-01-01") == ["blue.jpg"]
    assert names(run, "--camera", "canon") == ["red.jpg"]
