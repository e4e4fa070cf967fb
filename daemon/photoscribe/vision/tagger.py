"""Zero-shot keywords and image embeddings from a CLIP model, a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from photoscribe.config import TaggingConfig
from photoscribe.records import Keyword, Tagging
from photoscribe.vision.labels import label_embeddings
from photoscribe.vision.model import ClipModel
from photoscribe.vision.vocabulary import vocabulary_for


class Encoder:
    """Runs the image and text towers; returns L2-normalised float32 numpy arrays."""

    def __init__(self, model: ClipModel) -> None:
        self.model = model

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def preprocess(self) -> Any:
        return self.model.load()["preprocess"]

    def input_size(self) -> int:
        size = self.model.load()["model"].visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def logit_scale(self) -> float:
        return self.model.load()["logit_scale"]

    def encode_images(self, tensors: Sequence[Any]) -> np.ndarray:
        import torch

        m = self.model.load()
        batch = torch.stack(list(tensors)).to(m["device"], dtype=m["dtype"])
        with torch.inference_mode():
            feats = m["model"].encode_image(batch, normalize=True)
        return _normalised(feats.float().cpu().numpy())

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        m = self.model.load()
        tokens = m["tokenizer"](list(texts)).to(m["device"])
        with torch.inference_mode():
            feats = m["model"].encode_text(tokens, normalize=True)
        return _normalised(feats.float().cpu().numpy())


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class Tagger:
    """Picks keywords by softmax over cosine similarity to the label vocabulary."""

    def __init__(self, encoder: Encoder, cfg: TaggingConfig, cache_dir: Path) -> None:
        self.encoder = encoder
        self.cfg = cfg
        self.vocabulary = vocabulary_for(cfg)
        self.concepts = self.vocabulary.taggable()
        self.labels = [c.prompts[0] for c in self.concepts]  # what CLIP reads
        self._cache_dir = cache_dir
        self._label_matrix: np.ndarray | None = None

    def label_matrix(self) -> np.ndarray:
        if self._label_matrix is None:
            self._label_matrix = label_embeddings(
                self.encoder.encode_texts,
                self.encoder.model_id,
                self.labels,
                self.cfg.templates,
                self._cache_dir,
            )
        return self._label_matrix

    def tag(self, tensors: Sequence[Any]) -> list[Tagging]:
        images = self.encoder.encode_images(tensors)
        logits = self.encoder.logit_scale() * (images @ self.label_matrix().T)
        return [self._one(image, softmax(row)) for image, row in zip(images, logits, strict=True)]

    def _one(self, image: np.ndarray, probs: np.ndarray) -> Tagging:
        order = np.argsort(-probs)[: self.cfg.top_k]
        # The best label is always kept, so every photo gets at least one keyword.
        keep = [i for rank, i in enumerate(order) if rank == 0 or probs[i] >= self.cfg.min_score]
        keywords = tuple(Keyword(self.concepts[i].id, float(probs[i])) for i in keep)
        embedding = image.astype("<f2").tobytes()
        return Tagging(keywords=keywords, embedding=embedding, model=self.encoder.model_id)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()
