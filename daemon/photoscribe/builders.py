"""Builds the parts of a run from a Config: the tagger, captions, workers and writer.

Below both the CLI's wiring (``service``) and the daemon, so that either, or a cluster
worker, builds what it needs from a ``Config`` alone (no CLI layer, no globals).
"""

from __future__ import annotations

import dataclasses

from photoscribe.captioning import CaptionStage
from photoscribe.config import Config, LLMConfig, decode_workers, write_workers
from photoscribe.store import PhotoStore
from photoscribe.writing import Writer

CAPTION_BACKLOG_PER_SLOT = 4


def build_tagger(config: Config):
    from photoscribe.vision import ClipModel, Encoder, Tagger

    model = ClipModel(
        config.model, cache_dir=config.cache_dir, decode_workers=decode_workers(config)
    )
    return Tagger(Encoder(model), config.tagging, config.cache_dir)


def build_wording(config: Config):
    """Concept ids → keywords in the configured language(s) (loads the vocabulary)."""
    from photoscribe.config import keyword_languages
    from photoscribe.keywording import Wording
    from photoscribe.vision.vocabulary import vocabulary_for

    return Wording(vocabulary_for(config.tagging), keyword_languages(config))


def caption_names(config: Config):
    """concept id → its name in the caption's language (what the LLM is given)."""
    wording = build_wording(config)
    return lambda label: (wording.names([label]) or [label])[0]


def build_captions(config: Config, enabled: bool = True) -> CaptionStage:
    """The caption stage: one Captioner, or a Spread over the servers of llm.base_url when
    it lists several (llm.concurrency stays the requests in flight over all of them)."""
    source = None
    if enabled and config.llm.enabled:
        from photoscribe.caption import Captioner

        cfg, key, name_of = config.llm, config.llm_api_key(), caption_names(config)
        if len(cfg.base_urls) > 1:
            from photoscribe.caption.spread import Spread

            source = Spread(
                [Captioner(one_server(cfg, url), key, name_of=name_of) for url in cfg.base_urls]
            )
        else:
            source = Captioner(cfg, key, name_of=name_of)
    concurrency = config.llm.concurrency
    return CaptionStage(
        source, concurrency, concurrency * CAPTION_BACKLOG_PER_SLOT, config.llm.caption_wait
    )


def one_server(llm: LLMConfig, url: str) -> LLMConfig:
    """``llm`` with ``url`` as its only server."""
    return dataclasses.replace(llm, base_url=url, base_urls=(url,))


def build_context_reader(config: Config):
    """bytes → the prompt's context line (a ContextSpec, which can be sent to a worker),
    or None when llm.context lists nothing."""
    if not config.llm.context or not config.llm.enabled:
        return None
    from photoscribe.worktasks import ContextSpec

    return ContextSpec(config.llm.context, config.llm.language, config.llm.hemisphere)


def build_images(config: Config):
    """JPEGs decoded on the GPU when the model runs on CUDA, else everything on the CPU."""
    from photoscribe.vision.gpudecode import images_for

    return images_for(config.model)


def build_workers(config: Config, size: int | None = None):
    """The worker processes that read, decode and write photo files (one per decode
    thread and per write thread; or ``size``), with the per-file caps of ``scan:``.
    Started when first needed, so a write worker costs nothing until a write runs."""
    from photoscribe.workers import Limits, WorkerPool

    limits = Limits(config.scan.file_memory_mb, config.scan.file_timeout_seconds)
    return WorkerPool(size or decode_workers(config) + write_workers(config), limits)


def build_writer_factory(
    config: Config,
    store: PhotoStore,
    *,
    dry_run: bool = False,
    show=None,
    workers=None,
    write=None,
):
    """``workers``: run each file write there (a WorkerPool); ``write``: the write
    function (default metadata.write_photo; tests give one that crashes)."""
    from photoscribe.search.facts import read_facts

    write_fn, facts, threads = None, read_facts, 1
    if workers is not None:  # each write in a worker process: several at once
        threads = write_workers(config)
        from photoscribe.writing import IsolatedFacts

        facts = IsolatedFacts(workers)
    if config.metadata.write:
        from photoscribe.metadata import write_photo

        write_fn = write or write_photo
        if workers is not None:
            from photoscribe.writing import IsolatedWrite

            write_fn = IsolatedWrite(workers, write_fn)

    wording = build_wording(config)

    def factory(report):
        return Writer(
            store,
            write_fn,
            report,
            metadata=config.metadata,
            dry_run=dry_run,
            show=show,
            wording=wording,
            facts=facts,
            threads=threads,
        )

    return factory
