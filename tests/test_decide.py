"""The multi-label decision rule (vision/decide.py) on hand-made similarity matrices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from photoscribe.vision.decide import ConceptTable, Rule, decide, softmax_rule


@dataclass(frozen=True)
class C:
    """Stands in for vocabulary.Concept: only what the rule reads."""

    id: str
    parents: tuple[str, ...] = ()
    threshold: float | None = None
    group: str | None = None
    parent_only: bool = False


def table(concepts: list[C], thresholds: dict[str, float] | None = None) -> ConceptTable:
    by_id = {c.id: c for c in concepts}

    def ancestors(cid: str) -> list[str]:
        out, todo = [], list(by_id[cid].parents)
        while todo:
            a = todo.pop(0)
            if a not in out:
                out.append(a)
                todo.extend(by_id[a].parents)
        return out

    return ConceptTable.build(concepts, ancestors, thresholds)


def ids(t: ConceptTable, picks: list[tuple[int, float]]) -> list[str]:
    return [t.ids[i] for i, _ in picks]


RULE = Rule(threshold=0.3, margin=0.0, top_k=8, fallback=0.05)


def test_each_concept_passes_on_its_own_threshold_strongest_first() -> None:
    t = table([C("red"), C("circle", threshold=0.5), C("blue")])
    sims = np.array([[0.35, 0.6, 0.2], [0.9, 0.45, 0.31]], dtype=np.float32)
    out = decide(sims, t, RULE)
    assert ids(t, out[0]) == ["circle", "red"]  # excess 0.10 vs 0.05
    assert ids(t, out[1]) == ["red", "blue"]  # circle 0.45 < its own 0.5
    assert out[0][0][1] == pytest.approx(0.6)  # the score is the cosine


def test_calibrated_thresholds_win_over_the_vocabulary_ones() -> None:
    t = table([C("red", threshold=0.5), C("blue")], thresholds={"red": 0.2, "blue": 0.9})
    assert ids(t, decide(np.array([[0.25, 0.8]]), t, RULE)[0]) == ["red"]


def test_adding_distractor_concepts_changes_nothing() -> None:
    rng = np.random.default_rng(0)
    base = [C("red"), C("circle"), C("sky")]
    sims = np.array([[0.32, 0.31, 0.305], [0.1, 0.6, 0.2]], dtype=np.float32)
    small = decide(sims, table(base), RULE)
    assert ids(table(base), small[0]) == ["red", "circle", "sky"]
    # a thousand concepts close to, but under, their threshold (as in a big vocabulary)
    padded_table = table(base + [C(f"d{i}") for i in range(1000)])
    padded = np.hstack([sims, rng.uniform(0.2, 0.295, size=(2, 1000)).astype(np.float32)])
    assert decide(padded, padded_table, RULE) == small
    # while the softmax rule loses keywords once they share the mass with the distractors
    assert len(softmax_rule(sims, 100, 8, 0.05)[0]) == 3
    assert len(softmax_rule(padded, 100, 8, 0.05)[0]) == 1


def test_an_exclusive_group_keeps_only_its_strongest() -> None:
    t = table([C("indoor", group="io"), C("outdoor", group="io", threshold=0.2), C("dog")])
    out = decide(np.array([[0.45, 0.38, 0.5], [0.45, 0.1, 0.5]]), t, RULE)
    assert ids(t, out[0]) == ["dog", "outdoor"]  # excess 0.18 beats indoor's 0.15
    assert ids(t, out[1]) == ["dog", "indoor"]


def test_the_most_specific_of_a_concept_and_its_ancestors_is_kept() -> None:
    concepts = [C("animal", parent_only=True), C("dog", ("animal",)), C("puppy", ("dog",))]
    concepts += [C("cat", ("animal",)), C("grass")]
    t = table(concepts)
    sims = np.array(
        [
            [0.9, 0.6, 0.5, 0.1, 0.4],  # puppy passes: dog goes; animal is parent_only
            [0.9, 0.6, 0.2, 0.1, 0.4],  # only dog
            [0.9, 0.6, 0.5, 0.5, 0.1],  # puppy and cat: dog goes, both children stay
        ]
    )
    out = decide(sims, t, RULE)
    assert ids(t, out[0]) == ["puppy", "grass"]
    assert ids(t, out[1]) == ["dog", "grass"]
    assert sorted(ids(t, out[2])) == ["cat", "puppy"]


def test_parent_only_concepts_are_never_chosen_not_even_as_fallback() -> None:
    t = table([C("animal", parent_only=True), C("dog", ("animal",))])
    assert decide(np.array([[0.99, 0.1]]), t, RULE) == [[]]


def test_top_k_and_the_background_margin() -> None:
    t = table([C(x) for x in "abcde"])
    sims = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    assert ids(t, decide(sims, t, Rule(0.3, top_k=2))[0]) == ["a", "b"]
    background = np.array([[0.1, 0.65]])  # the best background prompt is at 0.65
    assert ids(t, decide(sims, t, Rule(0.3, margin=0.1), background)[0]) == ["a", "b"]


def test_a_photo_gets_its_best_keyword_when_it_is_plausible() -> None:
    t = table([C("red"), C("blue")])
    out = decide(np.array([[0.27, 0.1], [0.2, 0.1]]), t, RULE)
    assert ids(t, out[0]) == ["red"]  # 0.03 short of passing: kept
    assert out[1] == []  # 0.10 short: nothing is plausible


def test_a_matrix_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="expected"):
        decide(np.zeros((1, 3)), table([C("a")]), RULE)
