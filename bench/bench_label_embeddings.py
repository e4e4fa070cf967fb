"""Concept text embeddings: cold, warm and one-concept-changed times, ViT-B-32 (random init).

    PYTHONPATH=daemon python bench/bench_label_embeddings.py [--concepts 3000] [--rounds 3]
    PYTHONPATH=daemon python bench/bench_label_embeddings.py --warm-only [--concepts 3000]

Speed does not depend on the weights, so a randomly initialised ViT-B-32 (no download)
stands in for the real one. The bound is the old way measured in the same run: the full
77-token context in fp32, on a sample of the prompts, scaled to all of them. Prints
medians over --rounds, the CPU, and whether the cut context is exact here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from machine import cpu_name
from photoscribe.vision.labels import concept_embeddings, encode_text_short
from photoscribe.vision.vocabulary import load_vocabulary, read_label_lines

TEMPLATES = ("a photo of {}.", "a photo of the {}.", "{}")
KINDS = ("", "small ", "old ", "red ", "wild ", "baby ", "night ", "close-up of a ", "toy ")


def concepts(n: int) -> list[tuple[str, ...]]:
    """n distinct concepts of 1-2 prompt names each, from the shipped label list."""
    text = resources.files("photoscribe").joinpath("data/labels.txt").read_text("utf-8")
    labels = read_label_lines(text)
    out = []
    for k in range(n):
        name = KINDS[(k // len(labels)) % len(KINDS)] + labels[k % len(labels)]
        out.append((name,) if k % 3 else (name, f"a {name} (thing)"))
    return out


def encoder(model, tokenizer, short: bool):
    def encode(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            tokens = tokenizer(texts)
            if short:
                feats = encode_text_short(model, tokens)
            else:
                feats = model.encode_text(tokens, normalize=True)
        return feats.float().numpy()

    return encode


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def rounds(enc, dtype: str, vocab, cache: Path, n: int):
    """Median cold, warm and one-changed seconds over n rounds (a fresh cache key each)."""
    cold, warm, changed = [], [], []
    edited = [*vocab[:-1], (vocab[-1][0] + " edited",)]
    first = None
    for r in range(n):
        key = f"{dtype}-{r}"
        t, first = timed(lambda k=key: concept_embeddings(enc, k, vocab, TEMPLATES, cache))
        cold.append(t)
        warm.append(timed(lambda k=key: concept_embeddings(enc, k, vocab, TEMPLATES, cache))[0])
        changed.append(timed(lambda k=key: concept_embeddings(enc, k, edited, TEMPLATES, cache))[0])
    med = statistics.median
    return med(cold), med(warm), med(changed), first


def warm_only(vocab: list[tuple[str, ...]], n: int) -> None:
    """The warm start alone: the cache filled once with stand-in vectors (a warm start
    never encodes), then read back n times; the cold time is not measured here."""

    def stand_in(texts: list[str]) -> np.ndarray:
        v = np.random.default_rng(len(texts)).standard_normal((len(texts), 512), np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    with tempfile.TemporaryDirectory() as tmp:
        concept_embeddings(stand_in, "warm", vocab, TEMPLATES, Path(tmp))
        times = [
            timed(lambda: concept_embeddings(stand_in, "warm", vocab, TEMPLATES, Path(tmp)))[0]
            for _ in range(max(n, 5))
        ]
    print(f"CPU: {cpu_name()}; load {os.getloadavg()}")
    print(f"{len(vocab)} concepts × {len(TEMPLATES)} templates: warm start (cache read)")
    print(f"median {statistics.median(times):.3f} s, max {max(times):.3f} s (target ≤ 1 s)")
    loads = [timed(load_vocabulary)[0] for _ in range(max(n, 5))]
    print(f"loading + checking the shipped vocabulary: median {statistics.median(loads):.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concepts", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample", type=int, default=200, help="concepts timed the old way")
    parser.add_argument(
        "--warm-only",
        action="store_true",
        help="time only the warm start (cache read), with stand-in vectors: no model",
    )
    args = parser.parse_args()
    if args.warm_only:
        warm_only(concepts(args.concepts), args.rounds)
        return
    torch.set_num_threads(2)
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    vocab = concepts(args.concepts)
    n_texts = sum(len(c) for c in vocab) * len(TEMPLATES)
    print(f"CPU: {cpu_name()}; torch {torch.__version__}, 2 threads; load {os.getloadavg()}")
    print(f"{args.concepts} concepts, {n_texts} prompt texts ({len(TEMPLATES)} templates)\n")

    # exactness of the cut context on this model, fp32
    sample_texts = [t.format(p) for c in vocab[:64] for p in c for t in TEMPLATES]
    full = encoder(model, tokenizer, short=False)(sample_texts)
    short = encoder(model, tokenizer, short=True)(sample_texts)
    print(f"cut vs full context, fp32: max abs diff {np.abs(full - short).max():.2e}")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sample = vocab[: args.sample]
        old = [
            timed(
                lambda r=r: concept_embeddings(
                    encoder(model, tokenizer, False), f"old{r}", sample, TEMPLATES, Path(tmp)
                )
            )[0]
            for r in range(args.rounds)
        ]
        bound = statistics.median(old) * args.concepts / args.sample
        rows.append(("old: full context fp32, cold (scaled from sample)", bound))
        print(f"old way: {bound:.1f} s (scaled from {args.sample} concepts)", flush=True)
        reference = None
        for dtype in ("fp32", "bf16"):
            enc = encoder(model.to(DTYPES[dtype]), tokenizer, True)
            cold, warm, changed, first = rounds(enc, dtype, vocab, Path(tmp), args.rounds)
            print(f"{dtype}: cold {cold:.1f} s, warm {warm:.2f} s, one changed {changed:.2f} s")
            if reference is None:
                reference = first
            else:
                cos = (first * reference).sum(axis=1)
                print(f"bf16 vs fp32 concept embeddings: min cosine {cos.min():.5f}")
            rows.append((f"new: cut context {dtype}, cold", cold))
            rows.append((f"new: cut context {dtype}, warm (cache read)", warm))
            rows.append((f"new: cut context {dtype}, one concept changed", changed))
    print(f"\n{'case':52} {'median s':>9} {'/ old':>7}")
    for name, seconds in rows:
        print(f"{name:52} {seconds:9.2f} {seconds / bound:7.3f}")
    print(f"\nload after: {os.getloadavg()} (other jobs share these 2 cores)")


if __name__ == "__main__":
    main()
