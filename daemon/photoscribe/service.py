"""Builds and wires the parts from a Config (the only place that knows them all)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from photoscribe.captioning import CaptionStage
from photoscribe.config import Config
from photoscribe.errors import ConfigError
from photoscribe.pipeline import Pipeline
from photoscribe.progress import Progress
from photoscribe.records import Summary, Tagging
from photoscribe.scanner import find_photos
from photoscribe.search import Hit, search
from photoscribe.store import PhotoStore, open_store
from photoscribe.writing import Writer

log = logging.getLogger(__name__)
CAPTION_BACKLOG_PER_SLOT = 4


def build_tagger(config: Config):
    from photoscribe.vision import ClipModel, Encoder, Tagger

    return Tagger(Encoder(ClipModel(config.model)), config.tagging, config.cache_dir)


def build_captions(config: Config, enabled: bool = True) -> CaptionStage:
    source = None
    if enabled and config.llm.enabled:
        from photoscribe.caption import Captioner

        source = Captioner(config.llm, config.llm_api_key())
    concurrency = config.llm.concurrency
    return CaptionStage(source, concurrency, concurrency * CAPTION_BACKLOG_PER_SLOT)


def build_writer_factory(config: Config, store: PhotoStore):
    write_fn = None
    if config.metadata.write:
        from photoscribe.metadata import write_annotation

        write_fn = write_annotation

    def factory(report):
        return Writer(
            store, write_fn, report, overwrite_description=config.metadata.overwrite_description
        )

    return factory


def scan(
    config: Config,
    roots: Sequence[Path],
    *,
    progress: Progress,
    force: bool = False,
    captions: bool = True,
) -> Summary:
    """`photoscribe scan`: tag, caption, write and index every photo under ``roots``."""
    paths = find_photos(roots, config.scan)
    log.info("found %d photos under %s", len(paths), ", ".join(map(str, roots)))
    tagger = build_tagger(config)
    if paths:
        tagger.encoder.model.load()  # fail fast (missing weights) before touching anything
        tagger.label_matrix()
    store = open_store(config.index_path)
    try:
        pipeline = Pipeline(
            store,
            tagger,
            build_captions(config, captions),
            build_writer_factory(config, store),
            progress,
            batch_size=config.model.batch_size,
            decode_workers=config.scan.decode_workers,
            force=force,
        )
        return pipeline.run(paths)
    finally:
        store.close()


def run_search(config: Config, text: str, *, limit: int, use_clip: bool) -> list[Hit]:
    store = open_store(config.index_path, readonly=True)
    encode_text = model_id = None
    if use_clip:
        from photoscribe.vision.model import resolve_weights

        model_id = resolve_weights(config.model).model_id
        if store.embeddings_count(model_id):
            tagger = build_tagger(config)
            encode_text = tagger.encoder.encode_texts
    return search(
        store,
        text,
        limit=limit,
        model_id=model_id,
        encode_text=encode_text,
        min_similarity=config.search.min_similarity,
    )


def describe(config: Config, path: Path, on_text) -> tuple[Tagging, str]:
    """`photoscribe describe`: keywords and a streamed caption for one photo; writes nothing."""
    from photoscribe.caption import Captioner
    from photoscribe.vision import prepare

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    tagger = build_tagger(config)
    encoder = tagger.encoder
    tagging = tagger.tag([prepare(data, encoder.preprocess(), encoder.input_size())])[0]
    captioner = Captioner(config.llm, config.llm_api_key())
    try:
        return tagging, captioner.stream(tagging.keywords, on_text)
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

    def report(path: Path, outcome: str, reason: str | None) -> None:
        summary.record(path, outcome, reason)
        progress.advance(outcome, path)

    try:
        captions = build_captions(config)
        writer = build_writer_factory(config, store)(report)
        try:
            fill_captions(pending(), captions, writer, store, progress)
            captions.drain()
            writer.flush()
        finally:
            captions.close()
            writer.close()
            progress.finish()
        summary.waiting = len(pending())
    finally:
        store.close()
    return summary
