"""The model-only rate in its own process, for bench/bench_scan.py: oneDNN reads
``ONEDNN_MAX_CPU_ISA`` once per process, so the rate with AMX off (the bound of the
AMX-off scans) must be measured in a process started with it set:
``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 python bench/model_child.py CONFIG.json SECONDS``.

Loads the tagger as a scan with that config does (the same cache, so the same precision
choice for this environment), warms it up and prints one JSON line: images/s of
tagger.tag on ready tensors at the configured batch size, and the precision used.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent / "daemon"), str(BENCH)]


def run(config_path: Path, seconds: float) -> dict:
    import torch

    from bench_scan import model_rate
    from photoscribe.builders import build_tagger
    from photoscribe.config import config_from_dict

    config = config_from_dict(json.loads(config_path.read_text()))
    tagger = build_tagger(config)
    batch = config.model.batch_size
    size = tagger.encoder.input_size()
    tagger.tag([torch.rand(3, size, size)] * batch)  # warm-up: oneDNN builds its kernels
    rate = model_rate(tagger, batch, max(2, 64 // batch), seconds)
    precision = tagger.encoder.model.load()["precision"].precision
    return {"rate": rate, "precision": precision}


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), float(sys.argv[2]))))
