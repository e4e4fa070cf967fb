"""Zero-shot keywords and image embeddings from a CLIP model, a batch at a time."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from photoscribe.config import TaggingConfig
from photoscribe.records import Keyword, Tagging
from photoscribe.vision.calibrate import read_thresholds
from photoscribe.vision.decide import ConceptTable, Rule, decide, softmax_rule
from photoscribe.vision.gpudecode import stack_on
from photoscribe.vision.inputplan import InputPlan, read_plan, save_plan
from photoscribe.vision.labels import concept_embeddings, encode_text_short
from photoscribe.vision.loader import pixel_plan
from photoscribe.vision.model import ClipModel
from photoscribe.vision.vocabulary import vocabulary_for

log = logging.getLogger(__name__)


class Encoder:
    """Runs the image and text towers; returns L2-normalised float32 numpy arrays."""

    def __init__(self, model: ClipModel) -> None:
        self.model = model
        self._plan: InputPlan | None = None  # the loaded model's own
        self._kept: InputPlan | None = None  # as kept from an earlier start

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def cache_id(self) -> str:
        """What text embeddings depend on: the weights and the precision they ran in."""
        return f"{self.model_id}/{str(self.model.load()['dtype']).split('.')[-1]}"

    def preprocess(self) -> Any:
        return self.model.load()["preprocess"]

    def input_plan(self) -> InputPlan:
        """What decoding needs (input size, resize and crop): from the model once it is
        loaded (and kept for the next start), before that as kept from an earlier one."""
        if self._plan is not None:
            return self._plan
        if not self.model.loaded or self.model.quick:  # a kept tower has no transforms
            kept = self._kept_plan()
            if kept is not None:
                return kept
        plan = InputPlan(self.input_size(), pixel_plan(self.preprocess()))
        save_plan(self.model.cache_dir, self.model_id, plan)
        self._plan = plan
        return plan

    def plan_kept(self) -> bool:
        """Whether decoding can start before the model is loaded."""
        return self._plan is not None or self._kept_plan() is not None

    def _kept_plan(self) -> InputPlan | None:
        """The plan kept by an earlier start, read from the cache once."""
        if self._kept is None:
            self._kept = read_plan(self.model.cache_dir, self.model_id)
        return self._kept

    def input_size(self) -> int:
        size = self.model.load()["model"].visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def logit_scale(self) -> float:
        return self.model.load()["logit_scale"]

    def encode_images(self, tensors: Sequence[Any]) -> np.ndarray:
        import torch

        m = self.model.load()
        batch = stack_on(tensors, m["device"], m["dtype"])  # pinned + non-blocking on CUDA
        with torch.inference_mode():
            feats = m["model"].encode_image(batch, normalize=True)
        return _normalised(feats.float().cpu().numpy())

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        m = self.model.load()
        tokens = m["tokenizer"](list(texts)).to(m["device"])
        with torch.inference_mode():
            feats = encode_text_short(m["model"], tokens)
        return _normalised(feats.float().cpu().numpy())


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Tagger:
    """Picks keywords for a batch of photos: concept prompt ensembles + the decision rule.

    ``vocabulary``: anything with ``taggable()`` (concepts with id, prompts, threshold,
    group, parent_only) and ``ancestors(id)``, e.g. ``photoscribe.vision.vocabulary``'s
    Vocabulary; by default the configured plain label list.
    """

    def __init__(
        self, encoder: Encoder, cfg: TaggingConfig, cache_dir: Path, vocabulary: Any = None
    ) -> None:
        self.encoder = encoder
        self.cfg = cfg
        self.vocabulary = vocabulary or vocabulary_for(cfg)
        self.concepts = tuple(self.vocabulary.taggable())
        self.labels = [c.id for c in self.concepts]
        fitted = read_thresholds(cfg.thresholds_file) if cfg.thresholds_file else {}
        self.table = ConceptTable.build(self.concepts, self.vocabulary.ancestors, fitted)
        self.rule = Rule(cfg.threshold, cfg.background_margin, cfg.top_k, cfg.fallback)
        self.softmax = rule_of(cfg) == "softmax"
        self._cache_dir = cache_dir
        self._label_matrix: np.ndarray | None = None
        self._background: np.ndarray | None = None
        self._labels_lock = threading.Lock()  # one thread embeds the concepts, others wait

    def start(self, *, background: bool = False) -> None:
        """Load the model and embed the concepts before the first photo: now, or
        (``background``, when decoding can start without the model: ``plan_kept``) in a
        thread while the caller decodes its first photos. Errors come from ``tag`` then."""
        if background and self.encoder.plan_kept():
            self.encoder.model.load_in_background(then=self._embed_concepts)
            return
        self.encoder.model.load()
        self._embed_concepts()

    def _embed_concepts(self) -> None:
        self.label_matrix()
        self.background_matrix()

    def label_matrix(self) -> np.ndarray:
        """(concepts × dim): each concept's prompt ensemble, cached on disk per concept."""
        with self._labels_lock:
            return self._concept_matrix()

    def _concept_matrix(self) -> np.ndarray:
        if self._label_matrix is None:
            self._label_matrix = concept_embeddings(
                self.encoder.encode_texts,
                self.encoder.cache_id,
                [c.prompts for c in self.concepts],
                self.cfg.templates,
                self._cache_dir,
            )
        return self._label_matrix

    def background_matrix(self) -> np.ndarray:
        with self._labels_lock:
            return self._background_prompts()

    def _background_prompts(self) -> np.ndarray:
        if self._background is None:
            self._background = (
                concept_embeddings(
                    self.encoder.encode_texts,
                    self.encoder.cache_id,
                    [(p,) for p in self.cfg.background_prompts],
                    ("{}",),
                    self._cache_dir,
                )
                if self.cfg.background_prompts
                else np.zeros((0, 1), np.float32)
            )
        return self._background

    def tag(self, tensors: Sequence[Any]) -> list[Tagging]:
        images = self.encoder.encode_images(tensors)
        return [
            self._tagging(image, picks)
            for image, picks in zip(images, self.decide(images), strict=True)
        ]

    def decide(self, images: np.ndarray) -> list[list[tuple[int, float]]]:
        """Per image embedding, [(concept column, score)] strongest first."""
        sims = images @ self.label_matrix().T
        if self.softmax:
            return softmax_rule(
                sims, self.encoder.logit_scale(), self.cfg.top_k, self.cfg.min_score or 0.05
            )
        background = self.background_matrix()
        bg = images @ background.T if len(background) else None
        return decide(sims, self.table, self.rule, bg)

    def _tagging(self, image: np.ndarray, picks: list[tuple[int, float]]) -> Tagging:
        keywords = tuple(Keyword(self.labels[i], score) for i, score in picks)
        embedding = image.astype("<f2").tobytes()
        return Tagging(keywords=keywords, embedding=embedding, model=self.encoder.model_id)


def rule_of(cfg: TaggingConfig) -> str:
    """The rule in force: ``auto`` means softmax only while an old config sets min_score."""
    if cfg.rule != "auto":
        return cfg.rule
    if cfg.min_score is not None:
        log.warning(
            "tagging.min_score is set, so keywords use the old softmax rule, which tags less "
            "as the vocabulary grows; delete min_score (or set tagging.rule: threshold) to use "
            "per-concept thresholds"
        )
        return "softmax"
    return "threshold"
