"""Keyword quality against trusted keywords: per-concept and overall precision/recall.

    PYTHONPATH=daemon python bench/eval_keywords.py FOLDER [-c CONFIG] [--rule softmax]

FOLDER holds photos whose own keywords (IPTC/XMP, names or aliases in any language) are
trusted as the truth, e.g. a library someone keyworded by hand. The configured model and
vocabulary tag every photo that has at least one keyword naming a concept (ancestors of a
named concept count as named too, and so do the ancestors of the tagger's choices). Prints
one row per concept and the overall (micro-averaged) figures; nothing is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from photoscribe.config import Config, load_config
from photoscribe.vision.calibrate import Scores, collect, embed_photos, score_keywords


def evaluate(config: Config, folder: Path) -> tuple[Scores, int]:
    from photoscribe.service import build_tagger

    tagger = build_tagger(config)
    vocabulary = tagger.vocabulary
    examples = collect(
        folder,
        lambda items: embed_photos(tagger.encoder, items),
        vocabulary.lookup,
        vocabulary.ancestors,
    )
    said = []
    for picks in tagger.decide(examples.embeddings) if examples.paths else []:
        chosen = {tagger.labels[i] for i, _ in picks}
        said.append(chosen | {a for c in chosen for a in vocabulary.ancestors(c)})
    return score_keywords(said, examples.named), len(examples.paths)


def report(scores: Scores, photos: int) -> str:
    rows = [f"{'concept':28} {'precision':>9} {'recall':>7} {'photos':>7}"]
    for concept, (p, r, n) in scores.per_concept.items():
        rows.append(f"{concept[:28]:28} {p:9.3f} {r:7.3f} {n:7d}")
    rows.append(
        f"\noverall on {photos} photos: precision {scores.precision:.3f}, "
        f"recall {scores.recall:.3f}"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("-c", "--config", type=Path)
    parser.add_argument("--rule", choices=("threshold", "softmax"))
    args = parser.parse_args(argv)
    config = load_config(args.config, explicit=args.config is not None)
    if args.rule:
        tagging = dataclasses.replace(config.tagging, rule=args.rule)
        config = dataclasses.replace(config, tagging=tagging)
    scores, photos = evaluate(config, args.folder)
    if not photos:
        print(f"no photo under {args.folder} has a keyword naming a concept", file=sys.stderr)
        return 1
    print(report(scores, photos))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
