"""bench/bench_scan.py's instrument: the bound arithmetic (bench/bound.py), the camera-like
photo generator (bench/camera_photos.py) and, marked slow, one --quick run end to end on
the tiny CLIP. No timing is asserted here; the bench prints the figures."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

BENCH = Path(__file__).parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from bound import cpu_bound, gpu_bound, marginal, pool_bound, ratio, scan_bound  # noqa: E402
from camera_photos import (  # noqa: E402
    PhotoSet,
    build_set,
    camera_pixels,
    encode,
    heic_available,
    high_frequency_energy,
    photos_in,
    size_for,
    smooth_pixels,
)
from photoscribe.contenthash import content_hash, photo_hash  # noqa: E402
from photoscribe.vision.loader import decode  # noqa: E402
from photoscribe.worktasks import image_source  # noqa: E402
from scan_child import steady_rate  # noqa: E402

TINY = Path(__file__).parent / "fixtures" / "tiny_clip"


# -- bound arithmetic -------------------------------------------------------------------------
def test_cpu_bound_adds_the_model_core_time_to_decode_and_write():
    # 2 cores, 30 ms decode + 5 ms write of one core each, model 40 img/s on both cores
    # (50 ms of core-time per image): 2 / (0.030 + 0.005 + 0.050)
    assert cpu_bound(2, 0.030, 0.005, 40.0) == pytest.approx(2 / 0.085)
    assert cpu_bound(2, 0.030, 0.0, 40.0) == pytest.approx(2 / 0.080)
    assert cpu_bound(16, 0.0, 0.0, 120.0) == pytest.approx(120.0)  # the model alone


def test_gpu_bound_costs_no_cores_for_the_model_but_caps_at_its_rate():
    assert gpu_bound(16, 0.030, 0.005, 1000.0) == pytest.approx(16 / 0.035)
    assert gpu_bound(16, 0.001, 0.0, 300.0) == pytest.approx(300.0)  # the GPU is the limit
    assert gpu_bound(16, 0.0, 0.0, 300.0) == pytest.approx(300.0)


def test_scan_bound_picks_the_device_formula_and_the_single_writer_cap():
    assert scan_bound("cpu", 2, 0.03, 0.005, 40.0) == pytest.approx(cpu_bound(2, 0.03, 0.005, 40))
    assert scan_bound("cuda:0", 16, 0.03, 0.005, 900.0) == pytest.approx(16 / 0.035)
    # one writer thread at 10 ms a write cannot pass 100 photos/s, whatever the cores
    assert scan_bound("cuda", 64, 0.001, 0.001, 1e6, writer_wall_s=0.010) == pytest.approx(100.0)
    # two writers at once: twice that
    assert scan_bound("cuda", 64, 0.001, 0.001, 1e6, 0.010, writers=2) == pytest.approx(200.0)
    # without writes (write_s 0) the writer does not limit
    assert scan_bound("cuda", 64, 0.001, 0.0, 1e6, writer_wall_s=0.010) == pytest.approx(64000.0)


def test_the_marginal_rate_leaves_out_what_a_scan_pays_once():
    # 5 s of start-up, then 20 photos/s: 240 photos in 17 s, the first 120 in 11 s
    rate, startup = marginal(240, 17.0, 120, 11.0)
    assert rate == pytest.approx(20.0) and startup == pytest.approx(5.0)
    assert all(math.isnan(x) for x in marginal(240, 11.0, 120, 11.0))  # no time between
    assert all(math.isnan(x) for x in marginal(120, 17.0, 120, 11.0))  # no photos between


def test_amx_off_scans_are_measured_against_the_bound_of_their_own_model_rate():
    from bench_scan import _bound_of

    bounds = {"": (10.0, 20.0), "AMX off": (4.0, 5.0)}
    assert _bound_of("writes", bounds) == 10.0
    assert _bound_of("no writes", bounds) == 20.0
    assert _bound_of("writes, AMX off", bounds) == 4.0
    assert _bound_of("no writes, AMX off", bounds) == 5.0


def test_the_counter_rss_agrees_with_the_page_walk():
    """Timed scans read RSS from the kernel's counters (statm), warm-up scans walk the
    pages (smaps_rollup, for PSS): both say the same RSS."""
    from bench_scan import memory_mb, rss_mb

    block = bytearray(64 * 2**20)  # 64 MB touched, so RSS is well above noise
    counted, no_pss = rss_mb(os.getpid())
    walked, pss = memory_mb(os.getpid())
    assert counted > 64 and math.isnan(no_pss) and 0 < pss <= walked
    assert abs(counted - walked) < 0.05 * walked
    del block


def test_pool_bound_and_ratio():
    assert pool_bound(2, 0.025) == pytest.approx(80.0)
    assert ratio(20.0, 25.0) == pytest.approx(0.8)
    assert math.isnan(ratio(20.0, 0.0))
    assert math.isnan(ratio(20.0, math.inf))


def test_the_steady_rate_leaves_out_start_up_and_needs_more_than_two_batches():
    done = [10.0 + 0.5 * i for i in range(9)]  # first photo after 10 s, then 2 photos/s
    assert steady_rate(done, batch=4) == pytest.approx(2.0)
    assert steady_rate(done[:8], batch=4) is None  # two batches: one burst after another
    assert steady_rate([], batch=1) is None


# -- camera-like photos ------------------------------------------------------------------------
def jpeg_bytes(pixels) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_a_12_mp_photo_is_camera_sized_and_far_more_detailed_than_an_upscale():
    size = size_for(12)
    assert size == (4000, 3000)
    pixels = camera_pixels(0, size)
    assert pixels.shape == (3000, 4000, 3)
    data = encode(pixels, "jpeg", 0)
    assert 2.5e6 <= len(data) <= 5e6  # a camera's 12 MP JPEG at quality ~90
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == size
        assert img.getexif()[0x010F] == "Photoscribe Bench"  # camera EXIF to write beside
    smooth = smooth_pixels(0, size)
    assert high_frequency_energy(pixels) > 3 * high_frequency_energy(smooth)
    assert len(data) > 2.5 * len(jpeg_bytes(smooth))  # more to decode in every DCT block


def test_every_seed_gives_a_distinct_photo_and_each_seed_the_same_one():
    size = size_for(0.3)
    hashes = {content_hash(encode(camera_pixels(seed, size), "jpeg", seed)) for seed in range(8)}
    assert len(hashes) == 8
    again = encode(camera_pixels(3, size), "jpeg", 3)
    assert content_hash(again) in hashes


def test_sets_are_cached_by_their_parameters(tmp_path: Path):
    small = PhotoSet("small", 3, 0.05)
    folder = build_set(small, tmp_path, processes=1)
    photos = photos_in(folder)
    assert [p.name for p in photos] == ["photo_0000.jpg", "photo_0001.jpg", "photo_0002.jpg"]
    stamps = [p.stat().st_mtime_ns for p in photos]
    assert build_set(small, tmp_path, processes=1) == folder
    assert [p.stat().st_mtime_ns for p in photos_in(folder)] == stamps  # not made again
    assert build_set(PhotoSet("small", 4, 0.05), tmp_path, processes=1) != folder


def test_a_mixed_set_decodes_as_photoscribe_reads_each_format(tmp_path: Path):
    formats = ("jpeg", "png", "raw") + (("heic",) if heic_available() else ())
    mixed = PhotoSet("mixed", len(formats), 0.1, formats)
    photos = photos_in(build_set(mixed, tmp_path, processes=1))
    assert sorted(p.suffix for p in photos) == sorted(
        {"jpeg": ".jpg", "png": ".png", "raw": ".dng", "heic": ".heic"}[f] for f in formats
    )
    for path in photos:
        data = path.read_bytes()
        source, raw = image_source(path, data)
        assert raw == (path.suffix == ".dng")
        assert decode(source, max(mixed.size), raw=raw).size == mixed.size  # RAW: its preview
        assert photo_hash(path, data)


# -- the benchmark itself, once, on the tiny CLIP -----------------------------------------------
@pytest.mark.slow
def test_a_quick_run_prints_the_table_and_writes_the_figures(tmp_path: Path):
    report = tmp_path / "figures.json"
    args = [
        "--quick",
        "--sizes", "0.2",
        "--no-mixed",
        "--photos", "4",
        "--warmup", "1",
        "--sample", "2",
        "--naive-photos", "1",
        "--touch-gb", "0",
        "--device", "cpu",
        "--arch", "tiny-clip",
        "--pretrained", str(TINY / "tiny-clip.safetensors"),
        "--model-config-dir", str(TINY),
        "--labels-file", str(TINY / "labels.txt"),
        "--out", str(tmp_path / "out"),
        "--json", str(report),
        "--amx-off",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCH / "bench_scan.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("BOUND with writes", "end-to-end scan, no writes", "naive loop"):
        assert row in done.stdout
    figures = json.loads(report.read_text())
    assert figures["machine"]["device"] == "cpu"
    one = figures["sets"]["0.2 MP JPEG"]
    assert one["decode_core_ms"] > 0 and one["write_core_ms"] > 0
    if figures["machine"]["amx"]:  # the AMX-off scans, against a model rate measured so
        assert set(one["scans"]) == {"writes", "no writes", "writes, AMX off", "no writes, AMX off"}
        assert figures["model_rate_amx_off"] > 0 and "BOUND with writes, AMX off" in done.stdout
        off = one["scans"]["no writes, AMX off"]
        assert off["ratio"] == pytest.approx(off["photos_per_s"] / one["bound_no_writes_amx_off"])
    else:
        assert set(one["scans"]) == {"writes", "no writes"}
        assert "this CPU has no AMX" in done.stdout
    for scan in one["scans"].values():  # every photo really tagged (the bench checks == 4)
        assert scan["photos_per_s"] > 0 and 0 < scan["ratio"] < math.inf
        assert scan["peak_pss_mb"] > 0 and scan["peak_rss_mb"] > 0  # PSS: the warm-up scan's
        assert scan["main_peak_rss_mb"] > 0
        assert scan["half_photos_per_s"] > 0  # its first half scanned too (marginal())
