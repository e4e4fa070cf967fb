"""Which concepts a photo gets: a multi-label rule that does not depend on vocabulary size.

Each concept is judged on its own cosine similarity to the photo, never on a softmax over
the whole list, so adding concepts does not change whether an existing one is chosen:

1. a concept passes when its cosine reaches its threshold (its own calibrated one, else the
   rule's default) and, when background prompts are given, beats the best of them by
   ``margin`` (scenery words such as "a photo." that are close to every picture);
2. ``parent_only`` concepts never pass (they appear only as ancestors, added later);
3. in an exclusive group (indoor/outdoor, day/night) only the strongest passing one stays;
4. a concept whose descendant also passes is dropped (dog and puppy → puppy: the metadata
   layer adds the parents back in the hierarchical fields);
5. the ``top_k`` strongest remain, strongest first;
6. a photo where nothing passes keeps its single strongest concept when that is within
   ``fallback`` of its threshold: every photo gets a keyword when anything is plausible.

"Strength" is the excess over the concept's own threshold, so per-concept thresholds rank
fairly; the score reported is the cosine itself. Pure numpy, vectorised over the batch:
3,000 concepts × a batch cost a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class ConceptLike(Protocol):
    """What the rule reads of a ``photoscribe.vision.vocabulary.Concept``."""

    id: str
    threshold: float | None
    group: str | None
    parent_only: bool


@dataclass(frozen=True)
class Rule:
    """The rule's settings (``tagging.*`` in the config)."""

    threshold: float = 0.25  # default cosine threshold of a concept without its own
    margin: float = 0.0  # over the best background prompt (used when background is given)
    top_k: int = 8
    fallback: float = 0.05  # nothing passed: keep the best if within this of its threshold


@dataclass(frozen=True)
class ConceptTable:
    """Per-concept arrays the rule needs, built once per vocabulary (columns of the matrix)."""

    ids: tuple[str, ...]
    thresholds: np.ndarray  # float32 (C,), NaN: the rule's default
    groups: np.ndarray  # int32 (C,), -1: in no group
    taggable: np.ndarray  # bool (C,)
    # (descendant, ancestor) column pairs, sorted by ancestor, for duplicate suppression
    descendants: np.ndarray  # int64 (P,)
    ancestors: np.ndarray  # int64 (P,)

    @classmethod
    def build(
        cls,
        concepts: Sequence[ConceptLike],
        ancestors_of: Callable[[str], Iterable[str]],
        thresholds: Mapping[str, float] | None = None,
    ) -> ConceptTable:
        """``thresholds`` (calibrated ones, by id) win over the concepts' own."""
        ids = tuple(c.id for c in concepts)
        column = {cid: i for i, cid in enumerate(ids)}
        fitted = thresholds or {}
        thr = [fitted.get(c.id, c.threshold) for c in concepts]
        group_names = sorted({c.group for c in concepts if c.group})
        group_index = {g: i for i, g in enumerate(group_names)}
        pairs = sorted(
            (column[a], i)
            for i, c in enumerate(concepts)
            for a in ancestors_of(c.id)
            if a in column
        )
        return cls(
            ids=ids,
            thresholds=np.array([math.nan if t is None else t for t in thr], dtype=np.float32),
            groups=np.array([group_index.get(c.group, -1) for c in concepts], dtype=np.int32),
            taggable=np.array([not c.parent_only for c in concepts], dtype=bool),
            descendants=np.array([d for _, d in pairs], dtype=np.int64),
            ancestors=np.array([a for a, _ in pairs], dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.ids)


def decide(
    sims: np.ndarray,
    table: ConceptTable,
    rule: Rule,
    background: np.ndarray | None = None,
) -> list[list[tuple[int, float]]]:
    """Per image, [(column, cosine)] strongest first.

    ``sims``: (images × concepts) cosine similarities; ``background``: (images × B) cosine
    similarities to background prompts, or None for no margin test.
    """
    sims = np.asarray(sims, dtype=np.float32)
    if sims.ndim != 2 or sims.shape[1] != len(table):
        raise ValueError(f"expected (images × {len(table)}) similarities, got {sims.shape}")
    thr = np.where(np.isnan(table.thresholds), np.float32(rule.threshold), table.thresholds)
    excess = np.where(table.taggable, sims - thr, -np.inf).astype(np.float32)
    passed = excess >= 0
    if background is not None and background.size:
        passed &= sims - background.max(axis=1, keepdims=True) >= rule.margin
    passed = _exclusive(passed, excess, table.groups)
    passed &= ~_has_passing_descendant(passed, table)
    return [
        _pick(row_pass, row_excess, row_sims, rule)
        for row_pass, row_excess, row_sims in zip(passed, excess, sims, strict=True)
    ]


def _exclusive(passed: np.ndarray, excess: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Within each group keep only the strongest passing concept."""
    out = passed.copy()
    for g in np.unique(groups[groups >= 0]):
        cols = np.flatnonzero(groups == g)
        strength = np.where(passed[:, cols], excess[:, cols], -np.inf)
        best = cols[np.argmax(strength, axis=1)]
        out[:, cols] = False
        rows = np.arange(len(passed))
        out[rows, best] = passed[rows, best]
    return out


def _has_passing_descendant(passed: np.ndarray, table: ConceptTable) -> np.ndarray:
    """(images × concepts): True where some descendant of the concept passed."""
    out = np.zeros_like(passed)
    if not len(table.ancestors):
        return out
    hits = passed[:, table.descendants]  # (images × pairs), pairs grouped by ancestor
    starts = np.flatnonzero(np.r_[True, table.ancestors[1:] != table.ancestors[:-1]])
    out[:, table.ancestors[starts]] = np.logical_or.reduceat(hits, starts, axis=1)
    return out


def _pick(
    passed: np.ndarray, excess: np.ndarray, sims: np.ndarray, rule: Rule
) -> list[tuple[int, float]]:
    cols = np.flatnonzero(passed)
    if not len(cols):
        best = int(np.argmax(excess))
        if excess[best] >= -rule.fallback:
            return [(best, float(sims[best]))]
        return []
    order = cols[np.argsort(-excess[cols], kind="stable")][: rule.top_k]
    return [(int(i), float(sims[i])) for i in order]


def softmax_rule(
    sims: np.ndarray, logit_scale: float, top_k: int, min_score: float
) -> list[list[tuple[int, float]]]:
    """The old rule, kept for ``tagging.rule: softmax`` and for comparison: a softmax over
    the whole vocabulary, the best label always kept, others above ``min_score``."""
    logits = logit_scale * np.asarray(sims, dtype=np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = e / e.sum(axis=1, keepdims=True)
    out = []
    for row in probs:
        order = np.argsort(-row, kind="stable")[:top_k]
        out.append(
            [(int(i), float(row[i])) for r, i in enumerate(order) if r == 0 or row[i] >= min_score]
        )
    return out
