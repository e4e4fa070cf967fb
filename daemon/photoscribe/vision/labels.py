"""Text embeddings of the vocabulary's prompts, cached on disk per model + labels.

(The vocabulary itself is loaded by photoscribe.vision.vocabulary.)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from photoscribe.cachefile import save_array

log = logging.getLogger(__name__)
TEXT_BATCH = 256
KEY_BYTES = 16  # of a concept's row key in the cache


def cache_key(model_id: str, labels: Sequence[str], templates: Sequence[str]) -> str:
    blob = json.dumps([model_id, list(templates), list(labels)], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def label_embeddings(
    encode_texts, model_id: str, labels: Sequence[str], templates: Sequence[str], cache_dir: Path
) -> np.ndarray:
    """(labels × dim) float32, L2-normalised: each label as a one-prompt concept."""
    return concept_embeddings(
        encode_texts, model_id, [(label,) for label in labels], templates, cache_dir
    )


def concept_key(prompts: Sequence[str]) -> bytes:
    """A concept's row key in the cache: its prompts (the file is per model + templates)."""
    digest = hashlib.sha256(json.dumps(list(prompts), ensure_ascii=False).encode()).digest()
    return digest[:KEY_BYTES]


def concept_embeddings(
    encode_texts,
    model_id: str,
    concepts: Sequence[Sequence[str]],
    templates: Sequence[str],
    cache_dir: Path,
) -> np.ndarray:
    """(concepts × dim) float32, L2-normalised: the mean over templates × prompt names.

    ``concepts``: each concept's prompt names. ``encode_texts(list[str]) -> np.ndarray``
    returns normalised text embeddings. One cache file per (model, templates) holds a row
    per concept keyed by its prompts, so editing the vocabulary re-embeds only the concepts
    whose prompts changed.
    """
    path = cache_dir / "labels" / f"{cache_key(model_id, [], templates)}.npy"
    cached = _read_rows(path)
    keys = [concept_key(p) for p in concepts]
    missing = [i for i, k in enumerate(keys) if k not in cached]
    if missing:
        log.info(
            "embedding %d of %d concepts × %d templates (cached afterwards)",
            len(missing),
            len(concepts),
            len(templates),
        )
        fresh = _ensemble(encode_texts, [concepts[i] for i in missing], templates)
        cached.update({keys[i]: row for i, row in zip(missing, fresh, strict=True)})
        _write_rows(path, cached)
    return np.stack([cached[k] for k in keys]).astype(np.float32)


ARTICLES = ("a ", "an ", "the ")


def fill(template: str, prompt: str) -> str:
    """``template`` with ``prompt`` in it; a prompt's own article gives way to the
    template's ("a photo of the {}." + "a golden retriever dog" → "a photo of the golden
    retriever dog.", never "the a golden retriever dog")."""
    before = template.split("{}", 1)[0].lower()
    lowered = prompt.lower()
    if before.endswith(ARTICLES):
        for article in ARTICLES:
            if lowered.startswith(article):
                prompt = prompt[len(article) :]
                break
    return template.format(prompt)


def _ensemble(
    encode_texts, concepts: Sequence[Sequence[str]], templates: Sequence[str]
) -> np.ndarray:
    texts = [fill(t, p) for prompts in concepts for p in prompts for t in templates]
    # Similar lengths share a batch, so a batch cut to its longest text carries little padding.
    order = np.argsort([len(t) for t in texts], kind="stable")
    ordered = [texts[i] for i in order]
    parts = [encode_texts(ordered[i : i + TEXT_BATCH]) for i in range(0, len(ordered), TEXT_BATCH)]
    per_text = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
    per_text[order] = np.concatenate(parts)
    owner = np.repeat(np.arange(len(concepts)), [len(p) * len(templates) for p in concepts])
    sums = np.zeros((len(concepts), per_text.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, per_text)
    return (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)


def _read_rows(path: Path) -> dict[bytes, np.ndarray]:
    try:
        arr = np.load(path, allow_pickle=False)
        # numpy's fixed-width bytes drop trailing NULs: a key ending in one is padded back
        keys = (bytes(k).ljust(KEY_BYTES, b"\0") for k in arr["key"])
        return dict(zip(keys, arr["vector"], strict=True))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return {}


def _write_rows(path: Path, rows: dict[bytes, np.ndarray]) -> None:
    dim = len(next(iter(rows.values())))
    arr = np.empty(len(rows), dtype=[("key", f"S{KEY_BYTES}"), ("vector", "<f4", (dim,))])
    arr["key"] = list(rows)
    arr["vector"] = np.stack(list(rows.values()))
    _write_cache(path, arr)


def _write_cache(path: Path, arr: np.ndarray) -> None:
    try:
        save_array(path, arr)
    except OSError as exc:  # a read-only cache only costs time
        log.warning("cannot cache label embeddings in %s: %s", path.parent, exc)


def encode_text_short(model, tokens):
    """``model.encode_text(tokens, normalize=True)`` with the context cut to the longest text.

    CLIP's text tower is causal and pools at the end-of-text token, so padding after it
    never changes the result; cutting it saves most of the work for short prompts (77 →
    ~10 tokens). Models this does not hold for (other pooling, custom text towers) run
    the full context.
    """
    import torch
    from open_clip.transformer import text_global_pool

    pool = getattr(model, "text_pool_type", None)
    if pool not in ("argmax", "eos") or not hasattr(model, "positional_embedding"):
        return model.encode_text(tokens, normalize=True)
    if pool == "argmax":
        length = int(tokens.argmax(dim=-1).max()) + 1
    else:
        length = int((tokens == model.text_eos_id).int().argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
    mask = model.attn_mask
    x = model.transformer(x, attn_mask=None if mask is None else mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, pool, eos_token_id=getattr(model, "text_eos_id", None))
    proj = model.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj
    return torch.nn.functional.normalize(x, dim=-1)


def token_lengths(tokens) -> list[int]:
    """Tokens up to and including end-of-text, per row (the highest id in CLIP's BPE)."""
    return [int(n) + 1 for n in tokens.argmax(dim=-1).tolist()]
