"""model.precision auto: measured per host, cached per host key; explicit settings win.

The decision tests give the probe a rate function instead of a clock (no timing in any
assertion); one test runs the real probe on the tiny CLIP.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from photoscribe.cli import main
from photoscribe.config import config_from_dict
from photoscribe.errors import ModelError
from photoscribe.vision.model import ClipModel, explicit_precision
from photoscribe.vision.precision import (
    MARGIN,
    Decision,
    cache_path,
    choose,
    cuda_precision,
    decide_cpu,
    host_key,
    planned,
    read_cached,
    timed_rate,
)
from photoscribe.vision.threads import available_cores, torch_threads

from conftest import TINY_CLIP, tiny_config_dict

INTEL_AMX = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
AMD = """processor\t: 0
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu sse avx2 fma
"""


def key(**changes: object) -> dict[str, str]:
    args: dict = {
        "device": "cpu",
        "threads": 4,
        "model": "ViT-B-32:laion",
        "cpuinfo": INTEL_AMX,
        "cores": 4,
        "environ": {},
        "torch": "2.5.1",
    }
    return host_key(**(args | changes))


class Rates:
    """A rate function with set img/s per precision (an exception to raise), counting calls."""

    def __init__(self, **rates: float | Exception) -> None:
        self.rates = rates
        self.calls: list[str] = []

    def __call__(self, name: str) -> float:
        self.calls.append(name)
        rate = self.rates[name]
        if isinstance(rate, Exception):
            raise rate
        return rate


def test_bf16_measured_faster_is_chosen_and_cached(tmp_path: Path) -> None:
    rates = Rates(fp32=198.0, bf16=412.0)
    decision = decide_cpu(key(), tmp_path, rates)
    assert decision == Decision("bf16", "probe", {"fp32": 198.0, "bf16": 412.0})
    saved = json.loads(cache_path(tmp_path, key()).read_text("utf-8"))
    assert saved["precision"] == "bf16" and saved["key"] == key()
    assert saved["rates"] == {"fp32": 198.0, "bf16": 412.0}


def test_bf16_measured_slower_gives_fp32(tmp_path: Path) -> None:
    """AVX512-BF16 without AMX (or oneDNN capped below AMX): bf16 runs slower."""
    assert decide_cpu(key(), tmp_path, Rates(fp32=198.0, bf16=120.0)).precision == "fp32"


def test_a_near_tie_keeps_fp32_which_is_exact() -> None:
    assert choose({"fp32": 100.0, "bf16": 100.0 * MARGIN}) == "fp32"
    assert choose({"fp32": 100.0, "bf16": 100.0 * MARGIN + 1}) == "bf16"


def test_bf16_that_raises_gives_fp32(tmp_path: Path) -> None:
    rates = Rates(fp32=50.0, bf16=RuntimeError("no bf16 kernel for this CPU"))
    decision = decide_cpu(key(), tmp_path, rates)
    assert decision.precision == "fp32" and decision.rates == {"fp32": 50.0, "bf16": None}
    assert read_cached(tmp_path, key()) == Decision("fp32", "cache", {"fp32": 50.0, "bf16": None})


def test_a_cache_hit_runs_no_probe(tmp_path: Path) -> None:
    decide_cpu(key(), tmp_path, Rates(fp32=198.0, bf16=412.0))
    again = Rates(fp32=500.0, bf16=1.0)
    decision = decide_cpu(key(), tmp_path, again)
    assert again.calls == []
    assert decision == Decision("bf16", "cache", {"fp32": 198.0, "bf16": 412.0})


@pytest.mark.parametrize(
    "change",
    [
        {"environ": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}},
        {"environ": {"DNNL_MAX_CPU_ISA": "AVX2"}},
        {"cpuinfo": AMD},
        {"threads": 1},
        {"cores": 8},
        {"torch": "2.6.0"},
        {"device": "cuda:0"},
        {"model": "ViT-L-14:openai"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_changed_host_key_measures_again(tmp_path: Path, change: dict) -> None:
    decide_cpu(key(), tmp_path, Rates(fp32=198.0, bf16=412.0))
    capped = Rates(fp32=198.0, bf16=90.0)
    assert decide_cpu(key(**change), tmp_path, capped).precision == "fp32"
    assert capped.calls == ["fp32", "bf16"]
    assert decide_cpu(key(), tmp_path, capped).precision == "bf16"  # the old host's choice
    assert capped.calls == ["fp32", "bf16"]


def test_a_damaged_cache_file_measures_again(tmp_path: Path) -> None:
    decide_cpu(key(), tmp_path, Rates(fp32=1.0, bf16=2.0))
    cache_path(tmp_path, key()).write_text('{"key": {"cpu": ', "utf-8")
    rates = Rates(fp32=2.0, bf16=1.0)
    assert decide_cpu(key(), tmp_path, rates).precision == "fp32" and rates.calls


def test_an_unwritable_cache_still_decides(tmp_path: Path) -> None:
    (tmp_path / "precision").write_text("a file where the folder should be")
    assert decide_cpu(key(), tmp_path, Rates(fp32=1.0, bf16=3.0)).precision == "bf16"


def test_the_key_names_the_cpu_its_speed_flags_and_the_isa_cap() -> None:
    k = key(environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "PATH": "/bin"})
    assert k["cpu"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert k["flags"] == "amx_bf16,amx_tile,avx512_bf16,avx512f,avx2"
    assert k["onednn_max_cpu_isa"] == "AVX512_CORE_BF16" and "PATH" not in json.dumps(k)
    assert key(cpuinfo=AMD)["flags"] == "avx2"


def test_the_gpu_rule() -> None:
    assert cuda_precision(True) == "bf16" and cuda_precision(False) == "fp16"


def test_fp16_on_the_cpu_is_refused() -> None:
    with pytest.raises(ModelError, match="fp16 is not supported on the CPU"):
        explicit_precision("fp16", "cpu")
    assert explicit_precision("fp16", "cuda:0") == "fp16"


class Clock:
    """A clock that moves ``step`` seconds at each forward, counting them."""

    def __init__(self, step: float) -> None:
        self.now, self.step, self.forwards = 0.0, step, 0

    def __call__(self) -> float:
        return self.now

    def forward(self) -> None:
        self.forwards += 1
        self.now += self.step


def test_timed_rate_stops_at_its_budget_warm_up_included() -> None:
    clock = Clock(0.1)
    rate = timed_rate(clock.forward, 4, 0.5, clock=clock, max_runs=100)
    assert clock.forwards == 5  # a warm-up, then 4 timed: 0.5 s from the start
    assert rate == pytest.approx(4 * 4 / 0.4)


def test_timed_rate_times_at_least_one_forward_and_at_most_max_runs() -> None:
    slow = Clock(2.0)
    assert timed_rate(slow.forward, 2, 0.5, clock=slow) == pytest.approx(1.0)
    assert slow.forwards == 2
    fast = Clock(0.001)
    timed_rate(fast.forward, 2, 10.0, clock=fast, max_runs=7)
    assert fast.forwards == 8


@pytest.mark.parametrize(
    ("configured", "cores", "workers", "threads"),
    [(3, 2, 2, 3), (0, 2, 2, 2), (0, 1, 3, 1), (0, 16, 2, 16), (0, 16, 3, 16)],
)
def test_torch_threads_take_every_core_unless_configured(
    configured: int, cores: int, workers: int, threads: int
) -> None:
    assert torch_threads(configured, cores, workers) == threads


def test_a_decode_share_leaves_whole_cores_and_at_least_one_thread(monkeypatch) -> None:
    import photoscribe.vision.threads as threads_module

    monkeypatch.setattr(threads_module, "DECODE_SHARE", 0.5)
    assert [torch_threads(0, c, w) for c, w in [(2, 2), (2, 1), (1, 3), (16, 3)]] == [1, 1, 1, 14]


def test_available_cores_follow_the_affinity() -> None:
    assert available_cores() == len(os.sched_getaffinity(0))


# --- the real probe on the tiny CLIP ---------------------------------------------------


def auto_config(tmp_path: Path, **model: object):
    raw = tiny_config_dict(tmp_path)
    raw["model"] |= {"precision": "auto", "threads": 0, **model}
    raw["llm"]["enabled"] = False
    return raw


def test_the_real_probe_on_the_tiny_model_picks_and_caches(tmp_path: Path) -> None:
    config = config_from_dict(auto_config(tmp_path))
    first = ClipModel(config.model, cache_dir=config.cache_dir, decode_workers=2).load()
    decision = first["precision"]
    assert decision.source == "probe" and decision.precision in ("fp32", "bf16")
    assert (
        str(first["dtype"])
        == {"fp32": "torch.float32", "bf16": "torch.bfloat16"}[decision.precision]
    )
    assert all(rate is None or rate > 0 for rate in decision.rates.values())
    assert decision.rates["fp32"] is not None
    (saved,) = (config.cache_dir / "precision").glob("*.json")
    assert json.loads(saved.read_text("utf-8"))["precision"] == decision.precision
    import torch

    assert torch.get_num_threads() == torch_threads(0, available_cores(), 2)
    second = ClipModel(config.model, cache_dir=config.cache_dir, decode_workers=2).load()
    assert second["precision"] == Decision(decision.precision, "cache", decision.rates)


def test_an_explicit_precision_wins_and_measures_nothing(tmp_path: Path) -> None:
    config = config_from_dict(auto_config(tmp_path, precision="bf16"))
    loaded = ClipModel(config.model, cache_dir=config.cache_dir).load()
    assert loaded["precision"] == Decision("bf16", "model.precision")
    assert str(loaded["dtype"]) == "torch.bfloat16"
    assert not (config.cache_dir / "precision").exists()


def doctor_precision(tmp_path: Path, raw: dict, capsys) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    capsys.readouterr()
    main(["-c", str(path), "doctor", "--json"])
    checks = {c["check"]: c for c in json.loads(capsys.readouterr().out)}
    return checks["clip precision"]["detail"]


def test_doctor_says_whether_this_host_was_measured(tmp_path: Path, capsys) -> None:
    raw = auto_config(tmp_path, device="cpu")
    threads = torch_threads(0, available_cores(), 2)
    said = f"{threads} torch thread{'s' if threads != 1 else ''}"
    before = doctor_precision(tmp_path, raw, capsys)
    assert before == (
        "auto: not measured on this CPU yet; the first load times fp32 against bf16 "
        f"(about 1 s) and caches the choice; {said}"
    )
    from photoscribe.service import build_tagger

    decision = build_tagger(config_from_dict(raw)).encoder.model.load()["precision"]
    after = doctor_precision(tmp_path, raw, capsys)
    cached = Decision(decision.precision, "cache", decision.rates)
    assert after == f"{cached.describe()}; {said}"
    assert "measured before, from the cache" in after


def test_planned_names_the_configured_precision_and_the_gpu_rule(tmp_path: Path) -> None:
    assert planned("fp16", "cuda", "m", 1, tmp_path, 2) == "fp16 (model.precision)"
    assert planned("auto", "cuda:1", "m", 1, tmp_path, 2).startswith("auto on the GPU: bf16")


def tiny_vit(tmp_path: Path):
    """A randomly initialised 3-block ViT (the committed tiny CLIP has a ResNet tower)."""
    import open_clip

    config = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 3,
            "width": 16,
            "patch_size": 16,
            "head_width": 8,
        },
        "text_cfg": {
            "context_length": 8,
            "vocab_size": 49408,
            "width": 16,
            "heads": 2,
            "layers": 1,
        },
    }
    (tmp_path / "probe-vit.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "probe-vit.json")
    return open_clip.create_model("probe-vit").eval()


def test_the_probe_times_one_block_and_leaves_the_weights_alone(tmp_path: Path) -> None:
    import torch

    from photoscribe.vision.precision import longest_block_list, visual_forward

    model = tiny_vit(tmp_path)
    before = {name: (t, t.clone()) for name, t in model.visual.state_dict(keep_vars=True).items()}
    blocks = longest_block_list(model.visual)
    ran: list[int] = []
    for i, block in enumerate(blocks):
        block.register_forward_hook(lambda *_, i=i: ran.append(i))
    with visual_forward(model, "bf16", 32, 2) as (forward, part):
        forward()
    assert ran == [0] and part == 1 / 3
    with torch.inference_mode():
        model.visual(torch.rand(1, 3, 32, 32))  # the stopping hook is gone: every block runs
    assert ran == [0, 0, 1, 2]
    after = model.visual.state_dict(keep_vars=True)
    assert all(after[name] is t and torch.equal(t, copy) for name, (t, copy) in before.items())


def test_a_tower_without_repeated_blocks_is_timed_whole() -> None:
    import open_clip

    from photoscribe.vision.precision import visual_forward

    open_clip.add_model_config(TINY_CLIP)
    model = open_clip.create_model("tiny-clip").eval()  # a ResNet tower
    calls: list[str] = []
    model.visual.attnpool.register_forward_hook(lambda *_: calls.append("head"))
    with visual_forward(model, "fp32", 64, 2) as (forward, part):
        forward()
    assert part == 1.0 and calls == ["head"]
