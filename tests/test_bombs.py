"""Bombs, giants and odd images: each is tagged or refused with a reason, in bounded memory.

The real `photoscribe scan` runs in a child process over a folder of hostile files (see
fixtures/hostile.py) and a baseline scan of one ordinary photo; the child's peak RSS is
read from os.wait4, so nothing else this test process ran is counted.
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from photoscribe.contenthash import content_hash
from photoscribe.errors import DecodeError
from photoscribe.formats import PHOTO_EXTENSIONS
from photoscribe.fsutil import read_photo
from photoscribe.limits import MAX_HASHED_FRAMES
from photoscribe.records import State
from photoscribe.store import open_store
from photoscribe.vision.loader import decode

from conftest import tiny_config_dict
from fixtures import hostile
from fixtures.synthetic import draw_shape

DAEMON = Path(__file__).parent.parent / "daemon"
# The hostile batch may cost this much more memory than scanning one ordinary photo
# (torch and the model dominate both). Reading the 1 GB TIFF alone would cost 1 GB.
EXTRA_RSS_CAP_MB = 256

TOO_LARGE = "image too large to decode safely: it declares"
REFUSED = {  # file → the start of the reason recorded in the index
    "bomb.png": f"{TOO_LARGE} 10,000 MP, more than the 200 MP photoscribe decodes",
    "giant_header.jpg": f"{TOO_LARGE} 4,225 MP, more than the 200 MP",
    "claims_300mp.tif": f"{TOO_LARGE} 300 MP, more than the 200 MP",
    "giant.tif": "the file is 1024 MB, larger than the 512 MB photoscribe reads into memory",
    "absurd_exif.jpg": "cannot read the metadata of",
    # decoded and tagged (its first frame), but GIF holds no metadata exiv2 writes
    "animated.gif": "metadata can only be written into JPEG, PNG, TIFF and WebP files",
}
TAGGED = sorted(set(hostile.HOSTILE) - set(REFUSED))


def scan(folder: Path, tmp: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """`photoscribe scan --no-caption folder` in a child: (result, peak RSS in MB)."""
    tmp.mkdir(exist_ok=True)
    config = tmp / "config.yaml"
    raw = tiny_config_dict(tmp)
    raw["scan"] = {"extensions": [*PHOTO_EXTENSIONS, ".gif"]}  # GIFs are opt-in
    config.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONPATH": str(DAEMON), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "photoscribe", "-c", str(config), "scan", "--no-caption"]
    out, err = tmp / "stdout", tmp / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        child = subprocess.Popen([*command, str(folder)], env=env, stdout=stdout, stderr=stderr)
    status, usage = reap(child.pid, timeout=300)
    code = os.waitstatus_to_exitcode(status)
    done = subprocess.CompletedProcess(command, code, out.read_text(), err.read_text())
    return done, usage.ru_maxrss / 1024


def reap(pid: int, timeout: float) -> tuple[int, resource.struct_rusage]:
    """Wait for the child ``pid`` (killed after ``timeout`` s): its status and own rusage."""
    deadline = time.monotonic() + timeout
    while True:
        found, status, usage = os.wait4(pid, os.WNOHANG)
        if found:
            return status, usage
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def first_frame(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGBA"))


@pytest.fixture(scope="module")
def hostile_scan(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("bombs")
    photos = base / "photos"
    photos.mkdir()
    for make in hostile.HOSTILE.values():
        make(photos)
    draw_shape("red", "circle", size=(320, 240), seed=9).save(photos / "ordinary.jpg")
    before = {p.name: p.read_bytes() for p in photos.iterdir() if p.name != "giant.tif"}
    giant_digest = giant_identity(photos / "giant.tif")
    pixels = {name: first_frame(photos / name) for name in TAGGED}
    done, peak = scan(photos, base / "hostile")
    one = base / "one"
    one.mkdir()
    (one / "ordinary.jpg").write_bytes(before["ordinary.jpg"])
    baseline_done, baseline = scan(one, base / "baseline")
    assert baseline_done.returncode == 0, baseline_done.stderr
    store = open_store(base / "hostile" / "state" / "index.sqlite3", readonly=True)
    rows = {row.path.name: row for row in store.rows_under(photos)}
    return photos, done, peak, baseline, rows, before, giant_digest, pixels


def giant_identity(path: Path) -> tuple:
    """The sparse giant's size, times, inode and header (reading 1 GB would take long)."""
    st = path.stat()
    with path.open("rb") as f:
        head = f.read(1 << 16)
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_blocks, head


def test_every_hostile_file_gets_a_row_and_the_batch_completes(hostile_scan) -> None:
    _, done, _, _, rows, *_ = hostile_scan
    assert done.returncode == 1, done.stderr  # failures recorded, no crash
    total = len(hostile.HOSTILE) + 1
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"{total} photos: {total - len(REFUSED)} tagged"), done.stdout
    assert f"{len(REFUSED)} failed" in first
    assert set(rows) == {*hostile.HOSTILE, "ordinary.jpg"}
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_files_carry_a_reason_and_are_untouched(hostile_scan, name: str) -> None:
    photos, done, _, _, rows, before, giant_digest, _ = hostile_scan
    row = rows[name]
    assert row.state == State.FAILED
    assert REFUSED[name] in row.error
    assert f"failed: {photos / name}: " in done.stdout
    assert REFUSED[name] in done.stdout
    if name == "giant.tif":
        assert giant_identity(photos / name) == giant_digest
    else:
        assert (photos / name).read_bytes() == before[name]


def test_the_damaged_exif_reason_names_the_part_at_fault(hostile_scan) -> None:
    rows = hostile_scan[4]
    assert "its EXIF block is damaged, so it is left as it is" in rows["absurd_exif.jpg"].error


@pytest.mark.parametrize("name", TAGGED)
def test_odd_but_valid_images_are_tagged_with_pixels_kept(hostile_scan, name: str) -> None:
    photos, _, _, _, rows, _, _, pixels = hostile_scan
    assert rows[name].state in (State.DONE, State.NEEDS_CAPTION), rows[name].error
    assert rows[name].keywords, name
    assert np.array_equal(first_frame(photos / name), pixels[name]), f"{name}'s pixels changed"


def test_peak_memory_of_the_hostile_batch_stays_near_an_ordinary_scan(hostile_scan) -> None:
    _, _, peak, baseline, *_ = hostile_scan
    print(f"peak RSS: hostile batch {peak:.0f} MB, one ordinary photo {baseline:.0f} MB")
    assert peak <= baseline + EXTRA_RSS_CAP_MB, (peak, baseline)


def test_a_file_beyond_the_size_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    giant = hostile.sparse_tiff(tmp_path)
    with pytest.raises(DecodeError, match=r"^the file is 1024 MB, larger than the 512 MB"):
        read_photo(giant)


def test_the_pixel_limit_holds_for_the_content_hash_too(tmp_path: Path) -> None:
    """300 MP lies between PIL's warning (200 MP, as loader.py sets it) and its error
    (twice that): a warning alone would let the hash decode 900 MB of pixels."""
    data = hostile.tiff_claiming(tmp_path).read_bytes()
    with pytest.raises(DecodeError, match=r"it declares 300 MP, more than the 200 MP"):
        content_hash(data)
    with pytest.raises(DecodeError, match=r"it declares 300 MP, more than the 200 MP"):
        decode(data, 224)


def test_only_the_first_frames_of_a_long_animation_are_hashed(tmp_path: Path) -> None:
    """The frames a GIF shares with a longer one count; those after the limit do not."""

    def gif_hash(frames: int) -> str:
        folder = tmp_path / str(frames)
        folder.mkdir()
        return content_hash(hostile.animated_gif(folder, count=frames).read_bytes())

    long = gif_hash(MAX_HASHED_FRAMES + 40)
    assert long == gif_hash(MAX_HASHED_FRAMES)
    assert long != gif_hash(MAX_HASHED_FRAMES - 1)


def test_the_pixel_hash_is_the_same_when_fed_in_bands(monkeypatch) -> None:
    """Hashing a frame in slices of rows gives the digest every index already holds."""
    from photoscribe import contenthash

    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 255, (300, 410, 3), dtype=np.uint8))
    for mode in ("RGB", "L", "1", "I;16", "F", "CMYK"):
        buf = io.BytesIO()
        (image.convert("L").convert(mode) if mode == "I;16" else image.convert(mode)).save(
            buf, "TIFF"
        )
        with Image.open(io.BytesIO(buf.getvalue())) as img:
            whole = hashlib.sha256(f"{img.mode}:{img.size[0]}x{img.size[1]};".encode())
            whole.update(img.tobytes())
        monkeypatch.setattr(contenthash, "_BAND_BYTES", 4096)
        assert content_hash(buf.getvalue()) == "px:" + whole.hexdigest(), mode


def test_odd_orientation_on_a_transparent_palette_image_is_applied(tmp_path: Path) -> None:
    image = decode(hostile.odd_orientation_png(tmp_path).read_bytes(), 224)
    assert image.mode == "RGB" and image.size == (3, 1)  # rotated by Orientation 8
    assert image.getpixel((0, 0)) == (255, 255, 255)  # transparent index → white
    assert image.getpixel((2, 0)) == (255, 0, 0)
