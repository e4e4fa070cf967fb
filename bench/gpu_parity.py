"""GPU JPEG path on a real GPU: same tensors as the CPU path, per-photo fallback, speed.

What the CPU-only tests (tests/test_gpudecode.py) cannot check, because there nvJPEG is
stood in for by torchvision's CPU decoder: run on a CUDA machine (bench/gpu_check.sh does).

- parity: for photos in every EXIF orientation, progressive, greyscale, portrait and
  landscape, the GPU path's model input against the CPU decode of the same file
  (cosine; full decode and the draft decode the CPU path uses);
- fallback: a JPEG nvJPEG cannot decode inside a batch fails alone;
- pinned copies: CPU tensors reach the GPU through ``stack_on`` unchanged;
- the batch size ``model.batch_size: 0`` picks here;
- speed: 12 MP JPEGs per second, nvJPEG batch decode + GPU resize/crop/normalise, against
  the CPU draft decode + shrink on one core (a ratio measured in the same run).

    python bench/gpu_parity.py [--device cuda] [--quick] [--json PATH]

Exit status 1 when a parity check fails. ``--device cpu`` runs the same on the CPU
(torchvision's decoder standing in), to check the script itself without a GPU.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT / "tests")]

TINY = ROOT / "tests" / "fixtures" / "tiny_clip"
MIN_COSINE_FULL = 0.999  # GPU vs CPU full decode: the same geometry
MIN_COSINE_DRAFT = 0.98  # GPU vs the CPU path's draft (DCT-scaled) decode


def encoder_on(device: str, tmp: Path):
    from photoscribe.config import config_from_dict
    from photoscribe.service import build_tagger

    config = config_from_dict(
        {
            "index_path": str(tmp / "index.sqlite3"),
            "cache_dir": str(tmp / "cache"),
            "model": {
                "arch": "tiny-clip",
                "pretrained": str(TINY / "tiny-clip.safetensors"),
                "config_dir": str(TINY),
                "device": device,
                "precision": "fp32",
            },
            "tagging": {"labels_file": str(TINY / "labels.txt")},
            "llm": {"enabled": False},
        }
    )
    return build_tagger(config).encoder


def photo(size: tuple[int, int], seed: int = 0):
    import numpy as np
    from PIL import Image

    from fixtures.synthetic import draw_shape

    img = draw_shape("red", "triangle", size=size, seed=seed)
    pixels = np.asarray(img).copy()
    pixels[: size[1] // 10, : size[0] // 3] = (20, 200, 40)  # marks that show a turn
    pixels[-size[1] // 6 :, -size[0] // 8 :] = (30, 30, 220)
    return Image.fromarray(pixels)


def jpeg(img, orientation: int = 1, **opts) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes(), **opts)
    return buf.getvalue()


def cpu_tensors(data: bytes, encoder):
    from PIL import Image, ImageOps

    from photoscribe.vision.loader import decode, pixel_plan, shrink, tensor_from

    pre = encoder.preprocess()
    plan = pixel_plan(pre)
    with Image.open(io.BytesIO(data)) as img:
        full = ImageOps.exif_transpose(img).convert("RGB")
    draft = decode(data, encoder.input_size())
    return tensor_from(shrink(full, plan), pre), tensor_from(shrink(draft, plan), pre)


def cosine(a, b) -> float:
    import torch

    a, b = a.float().cpu().flatten(), b.float().cpu().flatten()
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def parity(images, encoder) -> tuple[dict, bool]:
    from photoscribe.vision.jpeghead import JpegBytes, gpu_jpeg

    cases = {f"orientation {o}": jpeg(photo((900, 600), o), o) for o in range(1, 9)}
    cases["portrait 12 MP"] = jpeg(photo((3000, 4000), 1))
    cases["progressive"] = jpeg(photo((1200, 800), 2), progressive=True)
    cases["greyscale"] = jpeg(photo((800, 1200), 3).convert("L"))
    items = [gpu_jpeg(data) for data in cases.values()]
    if any(item is None for item in items):
        raise SystemExit("a plain JPEG was not sent to the GPU: jpeghead refused it")
    broken = bytearray(cases["orientation 1"])
    at = broken.index(b"\xff\xc4")
    broken[at + 5 : at + 21] = b"\xff" * 16  # a Huffman table no decoder accepts
    batch = [*items[:4], JpegBytes(bytes(broken), 1, items[0].size), *items[4:]]
    out = images.decode(batch)
    bad = out.pop(4)
    rows, ok = {}, isinstance(bad, Exception)
    rows["broken JPEG inside the batch fails alone"] = "yes" if ok else f"NO ({bad!r})"
    for (name, data), tensor in zip(cases.items(), out, strict=True):
        if isinstance(tensor, Exception):
            rows[name] = f"FAILED on the GPU: {tensor}"
            ok = False
            continue
        full, draft = cpu_tensors(data, encoder)
        c_full, c_draft = cosine(tensor, full), cosine(tensor, draft)
        good = c_full > MIN_COSINE_FULL and c_draft > MIN_COSINE_DRAFT
        ok = ok and good
        rows[name] = f"cos {c_full:.5f} full, {c_draft:.5f} draft {'ok' if good else 'BAD'}"
    return rows, ok


def pinned_copy(device: str) -> bool:
    import torch

    from photoscribe.vision.gpudecode import stack_on

    tensors = [torch.rand(3, 224, 224) for _ in range(8)]
    batch = stack_on(tensors, device, torch.float16)
    return bool(torch.allclose(batch.float().cpu(), torch.stack(tensors), atol=1e-3))


def speed(images, encoder, device: str, quick: bool) -> dict:
    import torch

    from photoscribe.vision.jpeghead import gpu_jpeg
    from photoscribe.vision.loader import decode, pixel_plan, shrink, tensor_from

    data = [jpeg(photo((4000, 3000), seed)) for seed in range(2 if quick else 8)]
    items = [gpu_jpeg(d) for d in data] * (1 if quick else 8)  # 64 photos of 12 MP
    images.decode(items[:8])  # warm-up: nvJPEG handles, kernels
    rounds = 1 if quick else 3

    def gpu_round() -> float:
        started = time.perf_counter()
        images.decode(items)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return len(items) / (time.perf_counter() - started)

    pre = encoder.preprocess()
    plan = pixel_plan(pre)

    def cpu_round() -> float:
        started = time.process_time()
        for d in data:
            tensor_from(shrink(decode(d, encoder.input_size()), plan), pre)
        return len(data) / (time.process_time() - started)

    gpu = statistics.median(gpu_round() for _ in range(rounds))
    cpu = statistics.median(cpu_round() for _ in range(rounds))
    return {
        "GPU decode+prepare, 12 MP (photos/s)": round(gpu, 1),
        "CPU draft decode+shrink, 12 MP, one core (photos/s)": round(cpu, 1),
        "GPU / one core": round(gpu / cpu, 1),
        f"GPU / {os.cpu_count()} cores": round(gpu / (cpu * (os.cpu_count() or 1)), 2),
    }


def main() -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="speed from 2 photos, 1 round")
    args = parser.parse_args()

    from photoscribe.vision.gpudecode import GpuJpegImages

    with tempfile.TemporaryDirectory(prefix="photoscribe-gpu-") as tmp:
        encoder = encoder_on(args.device, Path(tmp))
        images = GpuJpegImages(device=args.device)
        auto = images.start(encoder, 0)
        if not images.wants_jpeg:
            raise SystemExit("the GPU strategy did not switch on for the tiny CLIP")
        rows, ok = parity(images, encoder)
        rows["pinned non-blocking copy keeps values"] = "yes" if pinned_copy(args.device) else "NO"
        ok = ok and rows["pinned non-blocking copy keeps values"] == "yes"
        rows["model.batch_size 0 picks"] = auto
        rows |= speed(images, encoder, args.device, args.quick)
    print(f"\nGPU JPEG path on {args.device} ({gpu_name(args.device)}):")
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"  {key.ljust(width)}  {value}")
    print("parity: " + ("PASS" if ok else "FAIL"))
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "ok": ok, **rows}, indent=1))
    return 0 if ok else 1


def gpu_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    from machine import cpu_name

    return cpu_name()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
