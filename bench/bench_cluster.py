"""Ray's overhead on one node, and how a cluster scan scales on paper.

    python bench/bench_cluster.py [--photos DIR] [--repeats 3] [--nas-gbytes 1.2]

Scans fresh copies of the same photos with `photoscribe scan` (local) and with
`photoscribe scan --cluster ADDRESS` against a one-node Ray cluster started here with
`ray start --head` (every CPU of this machine), each in its own process, LLM off (captions
scale with LLM servers, not with this), embedded metadata writes on, the ViT-B-32 with
random weights (speed does not depend on the values). Each mode scans half the photos and
all of them; the photos/s *between* the two (the second half's photos over the extra time)
leaves out what a run pays once (Python and torch imports, Ray's start, the model loads),
which a backfill of millions pays once too. Target: cluster ≥ 0.8 × local, both measured
here in the same run, medians of ``--repeats``.

The scaling table is arithmetic from what this run measured: a node's photos/s (this
machine's, as a cluster node), the bytes each photo costs the NAS (read once to decode,
read again and written once by an embedded write; a sidecar write costs almost nothing),
and the driver's own CPU per photo (results, index writes: measured as the scan
process's CPU between the half and the whole run), each a ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT / "daemon"))

from bench_scan import random_weights  # noqa: E402
from machine import cpu_name  # noqa: E402

RAY = Path(sys.executable).parent / "ray"
PORT = 6399


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=Path, default=BENCH / "out" / "photos" / "v2-jpeg-12mp-240")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=BENCH / "out")
    p.add_argument("--nas-gbytes", type=float, default=1.2, help="NAS bandwidth, GB/s (10 GbE)")
    p.add_argument("--work", type=Path, default=None, help="where the copies go (default: tmp)")
    return p.parse_args(argv)


def config_for(args: argparse.Namespace, work: Path) -> dict:
    return {
        "index_path": str(work / "index.sqlite3"),
        "cache_dir": str(args.out / "cache"),
        "model": {"arch": "ViT-B-32", "pretrained": str(random_weights("ViT-B-32", args.out))},
        "llm": {"enabled": False},
    }


def photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


def scan_once(
    args: argparse.Namespace, photos: list[Path], cluster: str | None
) -> tuple[float, float]:
    """Wall seconds of one `photoscribe scan` of a fresh copy of ``photos``, and the CPU
    seconds of its process (the driver, in a cluster scan: Ray's workers are not its
    children)."""
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        folder = work / "photos"
        folder.mkdir()
        for photo in photos:
            shutil.copyfile(photo, folder / photo.name)
        os.sync()  # the copy's write-back must not run during the timed scan
        config = work / "config.json"
        config.write_text(json.dumps(config_for(args, work)))
        command = [sys.executable, "-m", "photoscribe", "-c", str(config), "scan", str(folder)]
        if cluster:
            command[-1:-1] = ["--cluster", cluster]
        cpu, started = _children_cpu(), time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, env=_env())
        wall, cpu = time.monotonic() - started, _children_cpu() - cpu
        if done.returncode != 0 or f"{len(photos)} tagged" not in done.stdout:
            raise RuntimeError(f"the scan failed ({done.returncode}): {done.stdout}{done.stderr}")
        return wall, cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}


def start_cluster() -> str:
    cpus = os.cpu_count() or 1
    start = [str(RAY), "start", "--head", f"--port={PORT}", "--node-ip-address=127.0.0.1"]
    start += [f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats"]
    subprocess.run(start, check=True, capture_output=True, env=_env())
    return f"127.0.0.1:{PORT}"


def stop_cluster() -> None:
    subprocess.run([str(RAY), "stop", "--force"], capture_output=True, env=_env())


def median_rates(args: argparse.Namespace, photos: list[Path], cluster: str | None) -> dict:
    half = photos[: len(photos) // 2]
    halves, wholes = [], []
    for _ in range(args.repeats):
        halves.append(scan_once(args, half, cluster))
        wholes.append(scan_once(args, photos, cluster))
    t_half, t_all = (statistics.median(w for w, _ in runs) for runs in (halves, wholes))
    cpu_half, cpu_all = (statistics.median(c for _, c in runs) for runs in (halves, wholes))
    extra = len(photos) - len(half)
    return {
        "half_s": t_half,
        "all_s": t_all,
        "whole_run": len(photos) / t_all,
        "between": extra / max(t_all - t_half, 1e-9),
        "process_ms": (cpu_all - cpu_half) / extra * 1000,  # CPU per photo of the scan process
    }


def scaling(node_rate: float, photo_bytes: float, nas: float, driver_ms: float) -> list[str]:
    """photos/s with k nodes like this one: k × a node, until the NAS or the driver (one
    core of its CPU per photo's results, index writes included) bounds it."""
    nas_read = nas * 1e9 / photo_bytes  # reads only (sidecars)
    nas_embedded = nas * 1e9 / (3 * photo_bytes)  # read to decode, read + write to embed
    driver = 1000 / driver_ms
    rows = ["| nodes | compute | NAS, sidecars | NAS, embedded | driver (1 core) | photos/s |"]
    rows.append("|---:|---:|---:|---:|---:|---:|")
    for k in (1, 2, 4, 8, 16, 32):
        compute = k * node_rate
        best = min(compute, nas_embedded, driver)
        rows.append(
            f"| {k} | {compute:.0f} | {nas_read:.0f} | {nas_embedded:.0f} | {driver:.0f} "
            f"| {best:.0f} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    photos = photos_in(args.photos)
    if len(photos) < 20:
        print(f"need at least 20 JPEGs in {args.photos} (bench_scan.py makes them)")
        return 2
    local = median_rates(args, photos, None)
    address = start_cluster()
    try:
        cluster = median_rates(args, photos, address)
    finally:
        stop_cluster()
    driver_ms = cluster["process_ms"]
    photo_bytes = statistics.mean(p.stat().st_size for p in photos)
    ratio = cluster["between"] / local["between"]
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; {len(photos)} photos of "
        f"{photo_bytes / 1e6:.1f} MB; medians of {args.repeats}"
    )
    print("| scan | photos/s whole run | photos/s between half and all | × local |")
    print("|---|---:|---:|---:|")
    print(f"| local | {local['whole_run']:.1f} | {local['between']:.1f} | 1.00 |")
    print(
        f"| cluster, one node | {cluster['whole_run']:.1f} | {cluster['between']:.1f} "
        f"| {ratio:.2f} (target ≥ 0.80) |"
    )
    print(
        f"runs: local {local['half_s']:.1f} s / {local['all_s']:.1f} s, cluster "
        f"{cluster['half_s']:.1f} s / {cluster['all_s']:.1f} s (half / all)"
    )
    print(
        f"driver: {driver_ms:.2f} CPU-ms a photo (local scan process: "
        f"{local['process_ms']:.1f} with its workers); NAS {args.nas_gbytes} GB/s"
    )
    print("\n".join(scaling(cluster["between"], photo_bytes, args.nas_gbytes, driver_ms)))
    return 0 if ratio >= 0.8 else 1


if __name__ == "__main__":
    raise SystemExit(main())
