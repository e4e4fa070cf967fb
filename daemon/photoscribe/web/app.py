"""`photoscribe serve`: the index as a local web page (server-rendered; the same routes
answer JSON with ``Accept: application/json`` or ``?format=json``).

Read-only by construction: the index is opened read-only and every route is a GET, so
there is no state to change (and nothing for a cross-site request to forge). Photos are
served by index id only, never by a path taken from the request, and only from inside the
allowed roots.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from photoscribe.config import Config
from photoscribe.fsutil import display
from photoscribe.store import PhotoStore
from photoscribe.store.photos import PhotoRow
from photoscribe.web.thumbs import SIZES, Thumbnails

EncodeText = Callable[[Sequence[str]], np.ndarray]
MAX_LIMIT = 200
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


class Roots:
    """Where served photos may live. With no roots configured, a photo is served only
    from its own indexed path (a link leading elsewhere is refused)."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = tuple(Path(os.path.realpath(r)) for r in roots)

    def allows(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))
        if self.roots:
            return any(real.is_relative_to(root) for root in self.roots)
        return real == Path(os.path.abspath(path))


@dataclass
class Site:
    """Everything the routes need, passed in (no globals)."""

    config: Config
    store: PhotoStore
    thumbs: Thumbnails
    roots: Roots
    vocabulary: Any  # vision.vocabulary.Vocabulary: keyword names
    vectors: Any = None  # search.Vectors, or None: no CLIP search
    encode_text: EncodeText | None = None  # the warm, cached text tower
    clip_prompt: Any = None  # search.prompt.ClipPrompt: Chinese queries → CLIP's English

    def row(self, row_id: int) -> PhotoRow | None:
        """The photo, if it is in the index and inside the served folders."""
        return self.visible(self.store.by_ids([row_id])).get(row_id)

    def visible(self, rows: dict[int, PhotoRow]) -> dict[int, PhotoRow]:
        return {i: r for i, r in rows.items() if self.roots.allows(r.path)}

    def names(self, concepts: Sequence[str], languages: Sequence[str]) -> list[str]:
        """Keyword names: every language in turn, each name once."""
        found = [self.vocabulary.name(c, lang) for lang in languages for c in concepts]
        return list(dict.fromkeys(found))


def build_app(site: Site) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from photoscribe.web.pages import Pages, template_env

    pages = Pages(site, template_env())
    static = resources.files("photoscribe.web").joinpath("static")
    routes = [
        Route("/", pages.search),
        Route("/photo/{row_id:int}", pages.photo),
        Route("/photo/{row_id:int}/similar", pages.similar),
        Route("/thumb/{row_id:int}/{size}", pages.thumbnail),
        Route("/original/{row_id:int}", pages.original),
        Route("/duplicates", pages.duplicates),
        Route("/status", pages.status),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts(site.config))),
        Middleware(SecurityHeaders),
    ]
    return Starlette(routes=routes, middleware=middleware)


def allowed_hosts(config: Config) -> tuple[str, ...]:
    """Host names a request may carry (DNS rebinding: any other name is refused)."""
    local = ("127.0.0.1", "localhost", "::1")
    return (*local, *config.web.allowed_hosts)


class SecurityHeaders:
    """Adds the SECURITY_HEADERS to every response (pure ASGI middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def photo_json(
    site: Site,
    row: PhotoRow,
    score: float | None = None,
    similarity: float | None = None,
    matched_by: Sequence[str] = (),
) -> dict[str, Any]:
    from photoscribe.config import keyword_languages

    concepts = [k.label for k in row.keywords]
    return {
        "id": row.id,
        "path": display(row.path),
        "name": display(row.path.name),
        "caption": row.caption,
        "keywords": site.names(concepts, keyword_languages(site.config)),
        "keywords_en": site.names(concepts, ["en"]),
        "keywords_zh": site.names(concepts, ["zh"]),
        "concepts": concepts,
        "state": row.state.value,
        "score": None if score is None else round(score, 6),
        "similarity": None if similarity is None else round(similarity, 4),
        "matched_by": list(matched_by),  # "text", "clip"
        "thumbnail": f"/thumb/{row.id}/small",
        "preview": f"/thumb/{row.id}/large",
        "page": f"/photo/{row.id}",
    }


def thumbnail_file(site: Site, row: PhotoRow, size: str) -> Path:
    """The thumbnail's file (``row`` from Site.row: inside the roots); KeyError: bad size."""
    if size not in SIZES:
        raise KeyError(size)
    return site.thumbs.get(row, size)
