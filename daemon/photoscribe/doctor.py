"""`photoscribe doctor`: check the configuration, index, weights and LLM endpoint.

Never imports torch: it must answer in about a second, and tell the user what to fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from photoscribe.config import Config
from photoscribe.errors import CaptionError, ModelError, PhotoscribeError
from photoscribe.fsutil import display
from photoscribe.records import Keyword

PROBE_KEYWORDS = (Keyword("dog", 0.6), Keyword("beach", 0.3), Keyword("sunset", 0.2))


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


def check_index(config: Config) -> Check:
    from photoscribe.store import open_store
    from photoscribe.store.db import damaged

    path = config.index_path
    if not path.exists():
        return _index_to_come(path)
    try:
        store = open_store(path, readonly=True)
    except PhotoscribeError as exc:
        return Check("index", False, str(exc))
    try:
        problems = store.integrity_problems()
        if problems:
            return Check("index", False, str(damaged(path, "; ".join(problems))))
        counts = store.counts()
    finally:
        store.close()
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    return Check("index", True, f"{path}: {summary or 'empty'}")


def check_folders(config: Config) -> list[Check]:
    """Watched folders that are not there now (an unmounted drive or share): their photos'
    rows are kept (see volumes.py); said here so the user mounts them again."""
    from photoscribe.store import open_store
    from photoscribe.volumes import Volumes

    roots = [*config.watch.folders, *config.watch.poll_folders]
    if not roots or not config.index_path.exists():
        return []
    try:
        store = open_store(config.index_path, readonly=True)
    except PhotoscribeError:
        return []  # check_index says why
    try:
        missing = Volumes(store).unavailable(roots)
    finally:
        store.close()
    if not missing:
        return [Check("folders", True, f"{len(roots)} watched folders present")]
    return [
        Check("folders", False, f"{display(p)}: {why}; its photos stay in the index")
        for p, why in missing.items()
    ]


def check_weights(config: Config) -> Check:
    """What a scan decides about the weights (same function), without importing torch."""
    from photoscribe.vision.model import ensure_downloadable, resolve_weights, unknown_arch
    from photoscribe.vision.pretrained import arch_known, lookup_without_torch

    try:
        weights = resolve_weights(config.model)  # in the order a scan checks them
        if not arch_known(config.model.arch, config.model.config_dir):
            raise unknown_arch(config.model.arch)
        source = ensure_downloadable(config.model, weights, lookup_without_torch)
    except ModelError as exc:
        return Check("clip weights", False, str(exc))
    return Check("clip weights", True, f"{config.model.arch} from {source}")


def check_precision(config: Config) -> list[Check]:
    """The precision the model will run in, and whether this host's choice is measured yet
    (nothing when the weights are missing: check_weights says why)."""
    from photoscribe.vision.model import resolve_weights
    from photoscribe.vision.precision import planned
    from photoscribe.vision.threads import available_cores, torch_threads

    m = config.model
    try:
        model_id = resolve_weights(m).model_id
    except ModelError:
        return []
    cores = available_cores()
    threads = torch_threads(m.threads, cores, config.scan.decode_workers)
    detail = planned(m.precision, m.device, model_id, threads, config.cache_dir, cores)
    plural = "s" if threads != 1 else ""
    return [Check("clip precision", True, f"{detail}; {threads} torch thread{plural}")]


def check_llm(config: Config, make_captioner: Callable[[str], Any]) -> list[Check]:
    """The checks of every server in ``llm.base_url`` (``make_captioner(url)``); with
    several, each check's name ends in the server's number (``llm caption #2``)."""
    if not config.llm.enabled:
        return [Check("llm", True, "disabled (llm.enabled: false): keywords only")]
    urls = config.llm.base_urls or (config.llm.base_url,)
    checks = []
    for number, url in enumerate(urls, 1):
        found = _check_server(config, url, make_captioner)
        if len(urls) > 1:
            found = [replace(c, name=f"{c.name} #{number}") for c in found]
        checks += found
    return checks


def _check_server(config: Config, url: str, make_captioner: Callable[[str], Any]) -> list[Check]:
    try:
        captioner = make_captioner(url)
    except PhotoscribeError as exc:
        return [Check("llm", False, str(exc))]
    try:
        return [_check_models(config, url, captioner), *_check_completion(config, captioner)]
    finally:
        captioner.close()


def _check_models(config: Config, base_url: str, captioner: Any) -> Check:
    from photoscribe.caption.secrets import public_url

    url = public_url(base_url)
    try:
        models = captioner.list_models()
    except CaptionError as exc:
        return Check("llm models", False, str(exc))
    if config.llm.model in models:
        return Check("llm models", True, f"{url} lists {config.llm.model!r}")
    listed = ", ".join(models[:10]) or "none"
    return Check(
        "llm models",
        False,
        f"{url} does not list {config.llm.model!r} "
        f"(it lists: {listed}); set llm.model to one of them",
    )


def _check_completion(config: Config, captioner: Any) -> list[Check]:
    try:
        probe = captioner.probe(PROBE_KEYWORDS)
    except CaptionError as exc:
        return [Check("llm caption", False, str(exc))]
    checks = [Check("llm caption", True, f"{probe.latency_s:.2f} s: {probe.caption!r}")]
    if not config.llm.thinking:
        detail = (
            "the server still returns reasoning with thinking off (it is stripped, but it "
            "costs time): enable the model's chat template (llama.cpp: --jinja)"
            if probe.reasoning_seen
            else "thinking off is honoured (no reasoning returned)"
        )
        checks.append(Check("llm thinking switch", not probe.reasoning_seen, detail))
    return checks


def run_checks(config: Config, make_captioner: Callable[[str], Any]) -> list[Check]:
    return [
        check_index(config),
        *check_folders(config),
        check_weights(config),
        *check_precision(config),
        check_vocabulary(config),
        *check_llm(config, make_captioner),
    ]


def check_vocabulary(config: Config) -> Check:
    """The vocabulary loads (with the user's overrides); the language, and the note when
    only the deprecated llm.language sets it."""
    from photoscribe.config import language_note
    from photoscribe.vision.vocabulary import vocabulary_for

    try:
        vocab = vocabulary_for(config.tagging)
    except PhotoscribeError as exc:
        return Check("vocabulary", False, str(exc))
    detail = f"{len(vocab.taggable())} concepts ({vocab.source}); keywords in {config.language}"
    note = language_note(config)
    return Check("vocabulary", True, f"{detail}; {note}" if note else detail)


def _index_to_come(path: Path) -> Check:
    """An index that does not exist yet: can the first scan create it (and its folder)?"""
    existing = _nearest_existing(path.parent)
    problem = None
    if existing is None:
        problem = f"none of the folders above {display(path)} exists"
    elif not existing.is_dir():
        problem = f"{display(existing)} is not a folder"
    elif not _is_writable(existing):
        problem = f"{display(existing)} is not writable"
    if problem is None:
        return Check(
            "index", True, f"{display(path)} does not exist yet; the first scan creates it"
        )
    return Check(
        "index",
        False,
        f"{display(path)} does not exist yet and cannot be created: {problem}; "
        "set index_path to a file in a folder you can write to",
    )


def _nearest_existing(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def _is_writable(path: Path) -> bool:
    return os.access(path, os.W_OK)
