"""Caption speed against a local llama.cpp server, and tagging throughput while captions lag.

    .venv/bin/python bench/bench_captions.py [--quick] [--rounds 5] [--photos 240] [--repeats 5]

Part 1 — captions through photoscribe's own ``CaptionStage`` and ``Captioner`` against
llama-cpp-python's server (gemma-3-270m Q4_K_M, served under the alias "Qwen3-1.7B"), at
concurrency 1, 2 and 4, interleaved in rounds. gemma-270m is a *base* model: its replies
are often rejected by photoscribe's validation (a rejected reply is asked again once,
more strictly), so every HTTP round trip is timed whatever its fate, and accepted and
rejected calls are counted apart. A "call" is one photo's caption: one or two requests.

Part 2 — the real scan pipeline (``photoscribe.service.scan``, randomly initialised
ViT-B-32 as in bench_scan.py, real metadata writes) over the same photos three ways: LLM
disabled; a fake server answering every caption after 2 s (pure latency, no CPU); the
real llama.cpp server on the same cores. Tagging and keyword-write times are recorded
per photo. The backlog pass that fills the remaining captions afterwards (at LLM speed)
is not part of the measurement: once every photo's keywords are written the bench tells
the pipeline that the LLM is unavailable, so the scan ends there.

Every figure is a median over rounds (part 1) or repeats (part 2), modes interleaved.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
BENCH = Path(__file__).parent
OUT = BENCH / "out"
sys.path[:0] = [str(BENCH.parent / "daemon"), str(BENCH.parent / "tests")]

from photoscribe.records import Keyword  # noqa: E402

LEVELS = (1, 2, 4)
MAX_TOKENS = 48
SLOW_S = 2.0  # the fake server's answer time in part 2
TAGGERS: dict[tuple, Any] = {}  # part 2: one loaded model for every scan
LABELS = ("red", "dog", "beach", "tree", "sunset", "car", "cat", "mountain", "bicycle", "snow")


def keywords(i: int) -> tuple[Keyword, ...]:
    """A different, plausible keyword set per call (no two prompts the same)."""
    n = len(LABELS)
    picks = (LABELS[i % n], LABELS[(3 * i + 1) % n], LABELS[(7 * i + 2) % n])
    return tuple(Keyword(label, 0.5 - 0.1 * k) for k, label in enumerate(dict.fromkeys(picks)))


def spread(values: Sequence[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# -- part 1: caption calls and HTTP round trips ------------------------------------------------


@dataclass
class Round:
    calls: int
    wall: float = 0.0
    requests: int = 0
    tokens: int = 0  # completion tokens


@dataclass
class Level:
    """What one concurrency level measured, over all rounds."""

    concurrency: int
    rounds: list[Round] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)  # seconds per caption call
    requests: list[float] = field(default_factory=list)  # seconds per HTTP round trip
    outcomes: Counter[str] = field(default_factory=Counter)  # accepted / rejected / …
    reasons: Counter[str] = field(default_factory=Counter)  # why replies were rejected

    def rates(self, what: str) -> list[float]:
        """``what`` (calls, requests, tokens) a second, in each round."""
        return [getattr(r, what) / r.wall for r in self.rounds]

    def rate(self, what: str) -> float:
        return statistics.median(self.rates(what))


class TimedSource:
    """A CaptionSource around a Captioner that times each call and each HTTP request."""

    def __init__(self, captioner: Any, level: Level) -> None:
        self.captioner, self.level = captioner, level
        self._lock = threading.Lock()
        completions = captioner._client.chat.completions  # the one place the bench reaches in
        create = completions.create

        def timed_create(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                completion = create(*args, **kwargs)
            finally:
                with self._lock:
                    self.level.requests.append(time.perf_counter() - started)
                    self.level.rounds[-1].requests += 1
            usage = getattr(completion, "usage", None)
            with self._lock:
                self.level.rounds[-1].tokens += getattr(usage, "completion_tokens", 0) or 0
            return completion

        completions.create = timed_create

    @property
    def available(self) -> bool:
        return self.captioner.available

    def caption(self, words: Sequence[Keyword], *args: Any, **kwargs: Any) -> str:
        started = time.perf_counter()
        try:
            return self.captioner.caption(words, *args, **kwargs)
        finally:
            with self._lock:
                self.level.calls.append(time.perf_counter() - started)

    def close(self) -> None:
        self.captioner.close()


def llm_config(url: str, concurrency: int, **extra: Any) -> Any:
    from photoscribe.config import LLMConfig

    values = {"timeout": 300.0, "retries": 0, "max_tokens": MAX_TOKENS, "temperature": 0.0}
    return LLMConfig(base_url=url, concurrency=concurrency, **(values | extra))


def caption_round(url: str, level: Level, calls: int, first: int) -> None:
    """``calls`` captions through a CaptionStage at the level's concurrency."""
    from photoscribe.caption import Captioner
    from photoscribe.captioning import CaptionStage

    captioner = Captioner(llm_config(url, level.concurrency), "not-needed")
    stage = CaptionStage(TimedSource(captioner, level), level.concurrency, 0)

    def done(caption: str | None, reason: str | None) -> None:
        head, _, detail = (reason or "?: ?").partition(": ")
        outcome = "accepted" if caption else head.split()[-1]
        level.outcomes[outcome] += 1
        if outcome == "rejected":
            level.reasons[detail.split(":")[0].split("(")[0].strip()[:60]] += 1

    level.rounds.append(Round(calls))
    started = time.perf_counter()
    for i in range(first, first + calls):
        if not stage.submit(keywords(i), done):
            raise RuntimeError("the llama.cpp server became unavailable")
    stage.drain()
    level.rounds[-1].wall = time.perf_counter() - started
    stage.close()


def bench_llm(url: str, rounds: int, calls: int) -> list[Level]:
    levels = [Level(c) for c in LEVELS]
    caption_round(url, Level(1), 2, 10_000)  # warm-up: model pages, prompt prefix
    first = 0
    for _ in range(rounds):
        for level in levels:
            caption_round(url, level, calls, first)
            first += calls
    return levels


def print_llm_table(levels: list[Level], rounds: int, calls: int) -> None:
    print(
        f"\n[1] captions via CaptionStage/Captioner → llama-cpp-python 0.3.36 server, "
        f"gemma-3-270m Q4_K_M, --n_threads 2, max_tokens {MAX_TOKENS}, temperature 0; "
        f"{calls} calls a level a round, {rounds} rounds, median of rounds; "
        f"{os.cpu_count()} cores"
    )
    print(
        "server: one model behind a lock → ONE request at a time (llama-cpp-python has no "
        "--n_parallel); concurrent requests queue"
    )
    head = (
        "conc | captions/s (min–max) | speed-up | req/s | tok/s | accepted | rejected | other | "
        "req p50 | req p95 | call p50 | call p95"
    )
    print(head)
    print("-" * len(head))
    base = levels[0].rate("calls")
    for lv in levels:
        other = sum(v for k, v in lv.outcomes.items() if k not in ("accepted", "rejected"))
        print(
            f"{lv.concurrency:4d} | {lv.rate('calls'):4.2f} ({spread(lv.rates('calls'))}) | "
            f"{lv.rate('calls') / base:7.2f}× | "
            f"{lv.rate('requests'):5.2f} | {lv.rate('tokens'):5.1f} | "
            f"{lv.outcomes['accepted']:8d} | {lv.outcomes['rejected']:8d} | "
            f"{other:5d} | {pct(lv.requests, 50):6.2f}s | {pct(lv.requests, 95):6.2f}s | "
            f"{pct(lv.calls, 50):7.2f}s | {pct(lv.calls, 95):7.2f}s"
        )
    print(
        "captions/s: caption calls finished a second, accepted or not (a rejected reply costs "
        "a second, stricter request);\nreq = one HTTP round trip, timed whatever its reply; "
        "call = one photo's caption; tok/s = completion tokens a second; speed-up: vs 1."
    )
    reasons = sum((lv.reasons for lv in levels), Counter())
    for reason, n in reasons.most_common(3):
        print(f"rejected {n}×: {reason}")


# -- part 2: tagging while captions lag ------------------------------------------------------


class Gate:
    """A CaptionSource that reports 'unavailable' once ``closed``: ends the scan at the
    backlog pass, which is not measured."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.closed = False

    @property
    def available(self) -> bool:
        return not self.closed and self.source.available

    def caption(self, words: Sequence[Keyword], *args: Any, **kwargs: Any) -> str:
        return self.source.caption(words, *args, **kwargs)

    def close(self) -> None:
        self.source.close()


@dataclass
class Timeline:
    """Per-photo times of one scan, seconds from the start of its photo phase."""

    photos: int
    tags: list[float] = field(default_factory=list)  # end of the batch each photo was in
    writes: list[float] = field(default_factory=list)  # keyword writes ("tagged[+caption]")
    inline: int = 0  # photos written with their caption
    start: float = 0.0
    gate: Gate | None = None

    @property
    def tagging_s(self) -> float:
        """From the start of the photo phase to the end of the last tagging batch."""
        return self.tags[-1]

    def tagged_per_s(self) -> float:
        return self.photos / self.tagging_s

    def writes_per_s(self) -> float:
        """Keyword writes a second until 90 % of the photos have theirs (leaves out the
        last photos, which wait for their captions)."""
        count = round(0.9 * self.photos)
        return count / sorted(self.writes)[count - 1]

    def all_written_s(self) -> float:
        return max(self.writes)


def recording_progress(timeline: Timeline) -> Any:
    from photoscribe.progress import Progress

    class Recording(Progress):
        def start(self, total: int, what: str) -> None:
            super().start(total, what)
            if what == "photos":
                timeline.start = time.perf_counter()

        def advance(self, outcome: str, path: Path | None = None) -> None:
            super().advance(outcome, path)
            if outcome in ("tagged", "tagged+caption"):
                timeline.writes.append(time.perf_counter() - timeline.start)
                timeline.inline += outcome == "tagged+caption"
                if len(timeline.writes) == timeline.photos and timeline.gate is not None:
                    timeline.gate.closed = True

    return Recording(bar=False)


@contextmanager
def instrumented(timeline: Timeline) -> Iterator[None]:
    """Time each tagging batch; wrap the caption source in the timeline's Gate."""
    from photoscribe import service
    from photoscribe.vision.tagger import Tagger

    tag, build, build_tagger = Tagger.tag, service.build_captions, service.build_tagger

    def timed_tag(self: Tagger, tensors: list) -> list:
        result = tag(self, tensors)
        timeline.tags.extend([time.perf_counter() - timeline.start] * len(tensors))
        return result

    def gated(config: Any, enabled: bool = True) -> Any:
        stage = build(config, enabled)
        if stage.source is not None:
            stage.source = timeline.gate = Gate(stage.source)
        return stage

    def cached_tagger(config: Any) -> Any:  # load the model once, not once a scan
        key = (config.model.arch, config.model.pretrained)
        if key not in TAGGERS:
            TAGGERS[key] = build_tagger(config)
        return TAGGERS[key]

    Tagger.tag = timed_tag  # type: ignore[method-assign]
    service.build_captions, service.build_tagger = gated, cached_tagger
    try:
        yield
    finally:
        Tagger.tag = tag  # type: ignore[method-assign]
        service.build_captions, service.build_tagger = build, build_tagger


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> None:
    """``count`` JPEGs made from the photos scikit-image ships, each with its own pixels
    (shifted): photoscribe reuses the tags of pixels it has seen, without CLIP."""
    import numpy as np
    import skimage.data
    from PIL import Image

    makers = (skimage.data.astronaut, skimage.data.chelsea, skimage.data.coffee)
    sources = [np.asarray(Image.fromarray(m()).convert("RGB").resize(size)) for m in makers]
    folder.mkdir(parents=True)
    for i in range(count):
        k = i // len(sources)
        pixels = np.roll(sources[i % len(sources)], (7 * k, 13 * k), axis=(0, 1))
        Image.fromarray(pixels).save(folder / f"photo_{i:04d}.jpg", quality=90)


def scan_once(config_dict: dict, pristine: Path, work: Path, photos: int) -> Timeline:
    from photoscribe.config import config_from_dict
    from photoscribe.service import scan

    folder = work / "photos"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(pristine, folder)
    index = Path(config_dict["index_path"])
    for suffix in ("", "-wal", "-shm"):
        Path(str(index) + suffix).unlink(missing_ok=True)
    timeline = Timeline(photos)
    enabled = config_dict["llm"]["enabled"]
    with instrumented(timeline):
        config = config_from_dict(config_dict)
        summary = scan(config, [folder], progress=recording_progress(timeline), captions=enabled)
    assert summary.tagged == photos and not summary.failed, summary
    assert len(timeline.tags) == photos, "some photos were not tagged by CLIP (same pixels?)"
    return timeline


def bench_pipeline(
    modes: dict[str, dict], base: dict, pristine: Path, work: Path, photos: int, repeats: int
) -> dict[str, list[Timeline]]:
    runs: dict[str, list[Timeline]] = {name: [] for name in modes}
    scan_once(base | {"llm": {"enabled": False}}, pristine, work, photos)  # warm-up
    for _ in range(repeats):
        for name, llm in modes.items():
            runs[name].append(scan_once(base | {"llm": llm}, pristine, work, photos))
    return runs


def print_pipeline_table(runs: dict[str, list[Timeline]], args: argparse.Namespace) -> None:
    print(
        f"\n[2] scan pipeline (photoscribe.service.scan) · {args.arch} random-init · "
        f"{args.photos} JPEGs {args.size} · metadata written · llm.concurrency 2 · "
        f"median of {args.repeats} repeats, modes interleaved · {os.cpu_count()} cores"
    )
    head = (
        "LLM                            | tagged/s (min–max) | ratio | kw writes/s (min–max) | "
        "ratio | all kw written | with caption"
    )
    print(head)
    print("-" * len(head))
    first = next(iter(runs.values()))
    base_tags = statistics.median(t.tagged_per_s() for t in first)
    base_writes = statistics.median(t.writes_per_s() for t in first)
    for name, timelines in runs.items():
        tags = [t.tagged_per_s() for t in timelines]
        kw = [t.writes_per_s() for t in timelines]
        tagged, writes = statistics.median(tags), statistics.median(kw)
        done = statistics.median(t.all_written_s() for t in timelines)
        inline = statistics.median(t.inline for t in timelines)
        print(
            f"{name:<30} | {tagged:5.1f} ({spread(tags, 1)}) | {tagged / base_tags:4.2f}× | "
            f"{writes:5.1f} ({spread(kw, 1)}) | {writes / base_writes:4.2f}× | {done:12.1f} s | "
            f"{inline:5.0f}/{args.photos}"
        )
    print(
        "tagged/s: photos through CLIP ÷ time from the first photo to the last batch; "
        "kw writes/s: 90 % of the photos ÷ time until their keywords were written;\n"
        "all kw written: time to the last keyword write (a photo offered a caption is "
        "written when its caption arrives: up to concurrency × 5 wait at the end);\n"
        "with caption: photos written with "
        "their caption inline — the rest are keyword-only (needs_caption),\n"
        "filled by the backlog pass after tagging (at LLM speed; not measured here). "
        "Ratios: vs LLM disabled, within this run."
    )


# -- main --------------------------------------------------------------------------------------


def run(args: argparse.Namespace, work: Path) -> None:
    from bench_scan import random_weights

    from fakes.openai_server import FakeOpenAI
    from fixtures.llama import gguf_path, serve_llama

    size = tuple(int(x) for x in args.size.split("x"))
    make_photos(work / "pristine", args.photos, size)  # type: ignore[arg-type]
    base = {
        "index_path": str(work / "index.sqlite3"),
        "cache_dir": str(work / "cache"),
        "model": {"arch": args.arch, "pretrained": str(random_weights(args.arch))},
    }
    model = gguf_path(OUT)
    with serve_llama(model, threads=2, log_path=work / "llama.log") as server:
        url = server.url
        levels = bench_llm(url, args.rounds, args.calls)
        print_llm_table(levels, args.rounds, args.calls)
        with FakeOpenAI() as fake:
            fake.set_behavior("slow", delay=SLOW_S)
            modes = pipeline_modes(url, fake.base_url)
            runs = bench_pipeline(modes, base, work / "pristine", work, args.photos, args.repeats)
    print_pipeline_table(runs, args)


def pipeline_modes(llama_url: str, fake_url: str) -> dict[str, dict]:
    llm = {"enabled": True, "retries": 0, "concurrency": 2}
    return {
        "disabled": {"enabled": False},
        f"fake, {SLOW_S:g} s a caption (latency)": llm
        | {"base_url": fake_url, "timeout": 4 * SLOW_S},
        "llama.cpp, same 2 cores": llm
        | {"base_url": llama_url, "timeout": 300, "max_tokens": MAX_TOKENS, "temperature": 0.0},
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (2–3 minutes)")
    parser.add_argument("--rounds", type=int, default=5, help="part 1 rounds")
    parser.add_argument("--calls", type=int, default=4, help="part 1 calls a level a round")
    parser.add_argument("--photos", type=int, default=240, help="part 2 photos")
    parser.add_argument("--repeats", type=int, default=5, help="part 2 repeats")
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--size", default="800x600", help="part 2 photo size, WxH")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.photos, args.repeats = 1, 4, 96, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="photoscribe-bench-captions-"))
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
