"""Builds and wires the parts from a Config (the only place that knows them all)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from photoscribe.builders import (
    build_captions,
    build_context_reader,
    build_images,
    build_tagger,
    build_wording,
    build_workers,
    build_writer_factory,
    caption_names,
)
from photoscribe.config import Config, decode_workers
from photoscribe.errors import ConfigError
from photoscribe.fsutil import display, read_photo, stat_or_none
from photoscribe.pipeline import Pipeline
from photoscribe.progress import Progress
from photoscribe.records import Summary, Tagging
from photoscribe.scanner import find_photos
from photoscribe.search import Hit, SearchQuery, search
from photoscribe.store import PhotoStore, open_store

log = logging.getLogger(__name__)


def scan(
    config: Config,
    roots: Sequence[Path],
    *,
    progress: Progress,
    force: bool = False,
    captions: bool = True,
    dry_run: bool = False,
    show=None,
    decode=None,
    write=None,
    images=None,
    cluster: str | None = None,
) -> Summary:
    """`photoscribe scan`: tag, caption, write and index every photo under ``roots``.

    ``dry_run``: tag and caption, but write nothing; ``show(file, changes)`` is told what
    would change in each file. ``decode``, ``write``: the functions the worker processes
    run on each file (defaults: vision.loader.decode, metadata.write_photo); ``images``:
    how photos become model input (default from ``model:``, see ``build_images``);
    ``cluster``: a Ray address (``scan --cluster``), the stages then run there."""
    if cluster is not None and dry_run:
        raise ConfigError("--dry-run and --cluster cannot be combined; dry-run a folder locally")
    paths = find_photos(roots, config.scan)
    log.info("found %d photos under %s", len(paths), ", ".join(map(display, roots)))
    tagger = build_tagger(config)
    if paths and cluster is None:  # a missing weights file has failed already
        tagger.start(background=True)  # first photos decoded while the model loads
    session = _cluster_session(cluster) if cluster is not None and paths else None
    store = open_store(config.index_path)
    workers = build_workers(config)
    kind, extra = _pipeline_kind(config, session, captions)
    try:
        pipeline = kind(
            store,
            tagger,
            build_captions(config, captions),
            build_writer_factory(
                config, store, dry_run=dry_run, show=show, workers=workers, write=write
            ),
            progress,
            batch_size=config.model.batch_size,
            decode_workers=decode_workers(config),
            force=force,
            dry_run=dry_run,
            context_of=build_context_reader(config),
            workers=workers,
            decode=decode,
            images=images or build_images(config),
            facts_at_load=not config.metadata.write,
            **extra,
        )
        summary = pipeline.run(paths)
    finally:
        workers.close()
        store.close()
        if session is not None:
            session.close()
    summary.captions_off = captions_off(config, captions)
    return summary


def _cluster_session(address: str) -> Any:
    from photoscribe.cluster.connect import connect

    return connect(address)


def _pipeline_kind(
    config: Config, session: Any, captions: bool
) -> tuple[type[Pipeline], dict[str, Any]]:
    """The local pipeline, or (a cluster session) the one whose stages run on Ray."""
    if session is None:
        return Pipeline, {}
    from photoscribe.cluster.run import ClusterPipeline

    return ClusterPipeline, {"config": cluster_config(config, captions), "session": session}


def cluster_config(config: Config, captions: bool = True) -> Config:
    """``config`` as the cluster's nodes get it: the API key resolved here (a node need
    not hold the key's file or environment variable); the LLM off with --no-caption."""
    import dataclasses

    if not config.llm.enabled:
        return config
    if not captions:
        return dataclasses.replace(config, llm=dataclasses.replace(config.llm, enabled=False))
    llm = dataclasses.replace(
        config.llm, api_key=config.llm_api_key(), api_key_env=None, api_key_file=None
    )
    return dataclasses.replace(config, llm=llm)


def captions_off(config: Config, captions: bool = True) -> str | None:
    """Why no caption is asked for, or None when captions are on."""
    if not config.llm.enabled:
        return "llm.enabled: false"
    return None if captions else "--no-caption"


def clip_search_tools(config: Config, store: PhotoStore) -> tuple[Any, Any]:
    """(vectors, encode_text) for CLIP search, or (None, None) when the index holds no
    embeddings of the configured model. The text tower loads on the first uncached query
    and stays loaded."""
    from photoscribe.search.cache import VectorCache
    from photoscribe.search.querycache import CachedEncoder
    from photoscribe.vision.model import resolve_weights

    model_id = resolve_weights(config.model).model_id
    if not store.searchable_embeddings(model_id):
        return None, None
    vectors = VectorCache(store, model_id, config.cache_dir)
    text_only = replace(config, model=replace(config.model, quick_start=False))
    encode_text = CachedEncoder(  # the full model: a kept image tower would only sit beside it
        config.cache_dir, model_id, lambda: build_tagger(text_only).encoder.encode_texts
    )
    return vectors, encode_text


def clip_prompt_for(config: Config, vocabulary: Any = None) -> Any:
    """search.prompt.ClipPrompt for the configured model (its vocabulary loaded on the first
    Chinese query), or None where the text tower reads every language."""
    from photoscribe.caption import Captioner
    from photoscribe.search.prompt import ClipPrompt, reads_every_language
    from photoscribe.search.translate import QueryTranslator
    from photoscribe.vision.vocabulary import vocabulary_for

    if reads_every_language(config.model.arch):
        return None
    translate = None
    if config.search.translate_queries and config.llm.enabled:
        translate = QueryTranslator(
            config.cache_dir,
            config.llm.model,
            lambda: Captioner(config.llm, config.llm_api_key()),
        )
    return ClipPrompt(lambda: vocabulary or vocabulary_for(config.tagging), translate)


def run_search(config: Config, query: SearchQuery) -> list[Hit]:
    store = open_store(config.index_path, readonly=True)
    encode_text = vectors = None
    if query.use_clip and query.text.strip():
        vectors, encode_text = clip_search_tools(config, store)
    return search(
        store,
        query,
        vectors=vectors,
        encode_text=encode_text,
        min_similarity=config.search.min_similarity,
        clip_prompt=clip_prompt_for(config),
    )


def describe(config: Config, path: Path, on_text) -> tuple[Tagging, str]:
    """`photoscribe describe`: keywords and a streamed caption for one photo; writes nothing."""
    from photoscribe.caption import Captioner
    from photoscribe.vision import prepare

    try:
        data = read_photo(path)
    except OSError as exc:
        raise ConfigError(f"cannot read {display(path)}: {exc.strerror or exc}") from exc
    tagger = build_tagger(config)
    encoder = tagger.encoder
    tagging = tagger.tag([prepare(data, encoder.preprocess(), encoder.input_size())])[0]
    captioner = Captioner(config.llm, config.llm_api_key(), name_of=caption_names(config))
    context_of = build_context_reader(config)
    context = context_of(data) if context_of else None
    try:
        return tagging, captioner.stream(tagging.keywords, on_text, context)
    finally:
        captioner.close()


def retry_captions(config: Config, roots: Sequence[Path], *, progress: Progress) -> Summary:
    """`photoscribe caption --retry-pending`: captions for photos that only have keywords."""
    from photoscribe.backlog import fill_captions
    from photoscribe.scanner import under

    absolute = [r.absolute() for r in roots]
    store = open_store(config.index_path)
    summary = Summary()

    def pending() -> list:
        rows = store.needing_caption()
        return [r for r in rows if not absolute or under(r.path, absolute)]

    def report(path: Path, outcome: str, reason: str | None, transient: bool = False) -> None:
        summary.record(path, outcome, reason, transient=transient)
        progress.advance(outcome, path)

    try:
        captions = build_captions(config)
        writer = build_writer_factory(config, store)(report)
        try:
            context_of = build_context_reader(config)
            fill_captions(pending(), captions, writer, store, progress, context_of=context_of)
            captions.drain()
            writer.flush()
        finally:
            captions.close()
            writer.close()
            progress.finish()
        waiting = pending()
        summary.waiting = len(waiting)
        summary.waiting_reasons = [r.error for r in waiting]
        summary.captions_off = captions_off(config)
    finally:
        store.close()
    return summary


def run_daemon(config: Config, controls, reload_config) -> None:
    """`photoscribe run`: one instance per index, until SIGTERM."""
    from photoscribe.daemon import Daemon
    from photoscribe.instancelock import InstanceLock
    from photoscribe.sdnotify import Notifier

    notifier = Notifier.from_env()
    with InstanceLock.for_index(config.index_path):
        store = open_store(config.index_path)
        try:
            daemon = Daemon(config, store, notifier, controls, reload_config=reload_config)
            daemon.run()
        finally:
            store.close()
            notifier.close()


@dataclass
class UndoSummary:
    restored: int = 0
    untouched: int = 0  # nothing photoscribe wrote is recorded for them
    failures: list[tuple[Path, str]] = field(default_factory=list)


def undo(
    config: Config, paths: Sequence[Path], *, everything: bool, dry_run: bool, show
) -> UndoSummary:
    """`photoscribe undo`: take photoscribe's metadata out of photos, restore what it replaced.

    ``show(plan)`` is called with each file's UndoPlan (before it is applied)."""
    from photoscribe.errors import PhotoError
    from photoscribe.store.journal import Journal

    store = open_store(config.index_path)
    summary = UndoSummary()
    try:
        journal = Journal(store)
        for path in journal.paths() if everything else _undo_targets(journal, paths):
            entries = journal.pending(path)
            if not entries:
                summary.untouched += 1
                continue
            try:
                _undo_photo(path, entries, dry_run=dry_run, show=show)
            except PhotoError as exc:
                summary.failures.append((path, str(exc)))
                continue
            if not dry_run:
                store.mark_undone(path, stat_or_none(path))
                journal.mark_undone(e.id for e in entries)
            summary.restored += 1
    finally:
        store.close()
    return summary


def rebuild_index(config: Config, roots: Sequence[Path], *, embeddings: bool, progress: Progress):
    """`photoscribe index rebuild`: index the photos under ``roots`` from what photoscribe
    recorded in them (no CLIP, no LLM); a damaged index is set aside first, never deleted.
    ``embeddings``: also compute CLIP embeddings for the photos restored (for search)."""
    from photoscribe.rebuild import rebuild

    aside = _set_aside_if_damaged(config.index_path)
    paths = find_photos(roots, config.scan)
    store = open_store(config.index_path)
    try:
        progress.start(len(paths), "photos")
        wording = build_wording(config)
        summary = rebuild(store, paths, progress.advance, wording.search_text)
        progress.finish()
        if embeddings:
            summary.embeddings = _fill_embeddings(config, store, paths)
    finally:
        store.close()
    return summary, aside


def _set_aside_if_damaged(path: Path) -> Path | None:
    from photoscribe.errors import DamagedIndexError
    from photoscribe.store.db import set_aside

    if not path.exists():
        return None
    try:
        store = open_store(path)
    except DamagedIndexError:
        return set_aside(path)
    try:
        problems = store.integrity_problems()
    finally:
        store.close()
    return set_aside(path) if problems else None


def _fill_embeddings(config: Config, store: PhotoStore, paths: Sequence[Path]) -> int:
    from photoscribe.rebuild import fill_embeddings

    tagger = build_tagger(config)
    tagger.encoder.model.load()
    batch_size = config.model.batch_size or build_images(config).start(tagger.encoder, 0)
    return fill_embeddings(store, tagger, paths, batch_size)


def _undo_photo(path: Path, entries: list, *, dry_run: bool, show) -> None:
    """Undo ``entries`` (newest first) in the photo and in its sidecar(s)."""
    from photoscribe.undo import apply_file, plan_file

    for target, group in _by_target(entries):
        if not target.exists():  # e.g. a sidecar deleted since: nothing to take back
            continue
        sidecar = target != path
        plan, data, stat = plan_file(target, [e.changes for e in group], sidecar=sidecar)
        show(plan)
        if not dry_run and plan.changes:
            apply_file(plan, data, stat, sidecar=sidecar)


def _undo_targets(journal, paths: Sequence[Path]) -> list[Path]:
    found: dict[Path, None] = {}
    for path in paths:
        absolute = path.absolute()
        if absolute.is_dir():
            found.update(dict.fromkeys(journal.paths(under=[absolute])))
        else:
            found[absolute] = None
    return list(found)


def _by_target(entries):
    groups: dict[Path, list] = {}
    for entry in entries:  # newest first, kept within each target
        groups.setdefault(entry.target, []).append(entry)
    return list(groups.items())
