"""The web page's routes: methods of Pages, which holds the Site and the templates."""

from __future__ import annotations

from importlib import resources
from typing import Any

from photoscribe.errors import MetadataError, PhotoError
from photoscribe.fsutil import display, read_photo
from photoscribe.store.photos import PhotoRow
from photoscribe.web.app import MAX_LIMIT, Site, photo_json, similar_rows, thumbnail_file


def template_env() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    folder = str(resources.files("photoscribe.web").joinpath("templates"))
    return Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]))


def wants_json(request: Any) -> bool:
    if request.query_params.get("format") == "json":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def limit_of(request: Any, default: int) -> int:
    try:
        limit = int(request.query_params.get("limit", default))
    except ValueError:
        return default
    return max(1, min(limit, MAX_LIMIT))


class Pages:
    """One method per route; sync, so Starlette runs them in its thread pool."""

    def __init__(self, site: Site, env: Any) -> None:
        self.site = site
        self.env = env

    def respond(self, request: Any, template: str, data: dict, status: int = 200) -> Any:
        from starlette.responses import HTMLResponse, JSONResponse

        if wants_json(request):
            return JSONResponse(data, status_code=status)
        html = self.env.get_template(template).render(**data)
        return HTMLResponse(html, status_code=status)

    def not_found(self, request: Any) -> Any:
        data = {"title": "Not found", "error": "No photo with this id in the index."}
        return self.respond(request, "error.html", data, 404)

    def search(self, request: Any) -> Any:
        from photoscribe.search import search

        site = self.site
        text = request.query_params.get("q", "").strip()
        limit = limit_of(request, site.config.search.limit)
        results = []
        if text:
            use_clip = site.encoder is not None and bool(site.model_id)
            hits = search(
                site.store,
                text,
                limit=limit,
                model_id=site.model_id if use_clip else None,
                encode_text=site.encoder if use_clip else None,
                min_similarity=site.config.search.min_similarity,
            )
            for hit in hits:
                row = site.store.by_path(hit.path)
                if row is not None and site.roots.allows(row.path):
                    results.append(photo_json(row, hit.score, hit.similarity, hit.matched_by))
        data = {"title": text or "Search", "query": text, "limit": limit, "results": results}
        return self.respond(request, "search.html", data)

    def photo(self, request: Any) -> Any:
        row = self.site.row(request.path_params["row_id"])
        if row is None:
            return self.not_found(request)
        data = {"title": row.path.name, "photo": photo_json(row), "facts": self.facts(row)}
        return self.respond(request, "photo.html", data)

    def facts(self, row: PhotoRow) -> dict[str, str]:
        """Date taken, camera and place, read from the photo."""
        from photoscribe.caption.context import context_from
        from photoscribe.metadata import backend

        try:
            with backend.opened(read_photo(row.path), "the photo") as photo:
                ctx = context_from(photo.snapshot().values)
        except (OSError, MetadataError):
            return {}
        found = {
            "taken": ctx.taken.strftime("%Y-%m-%d %H:%M") if ctx.taken else None,
            "camera": ctx.camera,
            "place": ctx.place,
        }
        return {k: v for k, v in found.items() if v}

    def similar(self, request: Any) -> Any:
        row = self.site.row(request.path_params["row_id"])
        if row is None:
            return self.not_found(request)
        limit = limit_of(request, self.site.config.search.limit)
        pairs = similar_rows(self.site, row.id, limit + 20)  # some may be outside the roots
        rows = self.site.visible(self.site.store.by_ids(i for i, _ in pairs))
        pairs = [(i, s) for i, s in pairs if i in rows][:limit]
        data = {
            "title": f"Like {row.path.name}",
            "query": "",
            "limit": limit,
            "like": photo_json(row),
            "results": [photo_json(rows[i], similarity=s) for i, s in pairs if i in rows],
        }
        return self.respond(request, "search.html", data)

    def thumbnail(self, request: Any) -> Any:
        from starlette.responses import FileResponse, PlainTextResponse

        row = self.site.row(request.path_params["row_id"])
        if row is None:
            return PlainTextResponse("no such photo", 404)
        try:
            path = thumbnail_file(self.site, row, request.path_params["size"])
        except KeyError:
            return PlainTextResponse("size must be small or large", 404)
        except PhotoError as exc:
            return PlainTextResponse(f"cannot show this photo: {exc}", 422)
        headers = {"cache-control": "private, max-age=86400"}
        return FileResponse(path, media_type="image/webp", headers=headers)

    def original(self, request: Any) -> Any:
        from starlette.responses import FileResponse, PlainTextResponse

        row = self.site.row(request.path_params["row_id"])
        if row is None:
            return PlainTextResponse("no such photo", 404)
        if not row.path.is_file():  # a link or special file put there since the scan
            return PlainTextResponse("not a regular file", 404)
        name = display(row.path.name)
        return FileResponse(row.path, filename=name, content_disposition_type="inline")

    def status(self, request: Any) -> Any:
        from photoscribe.statusreport import status_report

        report = status_report(self.site.store, self.site.config.index_path, failures=50)
        return self.respond(request, "status.html", {"title": "Status", "report": report})
