"""`photoscribe serve`: a local web page over the index (see web/app.py)."""

from __future__ import annotations

import logging
import signal
import socket
from typing import Any

from photoscribe.config import Config
from photoscribe.errors import ConfigError

log = logging.getLogger(__name__)
LOCAL = ("127.0.0.1", "localhost", "::1")


def build_site(config: Config) -> Any:
    """The Site for ``config``: read-only index, thumbnail cache, roots, vocabulary and,
    where the index holds embeddings, CLIP search with a warm text tower."""
    from photoscribe.service import clip_prompt_for, clip_search_tools
    from photoscribe.store import open_store
    from photoscribe.vision.vocabulary import vocabulary_for
    from photoscribe.web.app import Roots, Site
    from photoscribe.web.thumbs import Thumbnails

    store = open_store(config.index_path, readonly=True)
    vectors, encode_text = clip_search_tools(config, store) if config.web.clip else (None, None)
    if config.web.clip and vectors is None:
        log.info("no CLIP embeddings of the configured model in the index: text search only")
    roots = config.web.roots or (*config.watch.folders, *config.watch.poll_folders)
    vocabulary = vocabulary_for(config.tagging)
    return Site(
        config=config,
        store=store,
        thumbs=Thumbnails(config.cache_dir / "thumbs"),
        roots=Roots(roots),
        vocabulary=vocabulary,
        vectors=vectors,
        encode_text=encode_text,
        clip_prompt=clip_prompt_for(config, vocabulary),
    )


def serve(config: Config, announce=print) -> None:
    """Run the web server until SIGINT/SIGTERM; ``announce`` gets the page's address."""
    import uvicorn

    from photoscribe.web.app import build_app

    cfg = config.web
    if cfg.address not in LOCAL:
        log.warning(
            "serving on %s: anyone who can reach this address sees your photos "
            "(there is no login); add the host names you use to web.allowed_hosts",
            cfg.address,
        )
    app = build_app(build_site(config))
    sock = _listen(cfg.address, cfg.port)
    host, port = sock.getsockname()[:2]
    announce(f"serving http://{'[' + host + ']' if ':' in host else host}:{port}/")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    for sig in (signal.SIGINT, signal.SIGTERM):  # uvicorn re-raises the signal once it has
        signal.signal(sig, lambda *_: None)  # stopped; land it here: a clean exit (0)
    server.run(sockets=[sock])


def _listen(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        return socket.create_server((address, port), family=family)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve on {address}:{port}: {exc.strerror or exc}; "
            "choose another web.port (or stop what uses it)"
        ) from exc
