"""The web page's routes: methods of Pages, which holds the Site and the templates."""

from __future__ import annotations

from importlib import resources
from typing import Any

from photoscribe.errors import PhotoError
from photoscribe.fsutil import display
from photoscribe.store.photos import PhotoRow
from photoscribe.web.app import MAX_LIMIT, Site, photo_json, thumbnail_file


def template_env() -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    folder = str(resources.files("photoscribe.web").joinpath("templates"))
    return Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]))


def wants_json(request: Any) -> bool:
    if request.query_params.get("format") == "json":
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


FILTERS = ("q", "folder", "after", "before", "keyword", "camera")


def search_query(form: dict[str, str], limit: int) -> Any:
    """The search form → a SearchQuery (None when empty); ConfigError for a bad value."""
    from datetime import date
    from pathlib import Path

    from photoscribe.errors import ConfigError
    from photoscribe.search import SearchQuery

    if not any(form.values()):
        return None
    days = {}
    for key in ("after", "before"):
        try:
            days[key] = date.fromisoformat(form[key]) if form[key] else None
        except ValueError:
            raise ConfigError(f"{key}: {form[key]!r} is not a date; write YYYY-MM-DD") from None
    return SearchQuery(
        text=form["q"],
        limit=limit,
        folder=Path(form["folder"]) if form["folder"] else None,
        keywords=tuple(k for k in form["keyword"].split() if k),
        camera=form["camera"] or None,
        **days,
    )


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
        from photoscribe.errors import ConfigError
        from photoscribe.search import search

        site, params = self.site, request.query_params
        form = {k: params.get(k, "").strip() for k in FILTERS}
        data = {"title": form["q"] or "Search", "query": form["q"], "form": form}
        data["limit"] = limit = limit_of(request, site.config.search.limit)
        data["results"], data["error"] = [], None
        try:
            query = search_query(form, limit)
        except ConfigError as exc:
            data["error"] = str(exc)
            return self.respond(request, "search.html", data, 400)
        if query is not None:
            hits = search(
                site.store,
                query,
                vectors=site.vectors,
                encode_text=site.encode_text,
                min_similarity=site.config.search.min_similarity,
                clip_prompt=site.clip_prompt,
            )
            data["results"] = self.hits_json(hits)
        return self.respond(request, "search.html", data)

    def hits_json(self, hits: list) -> list[dict]:
        rows = self.site.visible(self.site.store.by_ids(h.id for h in hits))
        return [
            photo_json(self.site, rows[h.id], h.score, h.similarity, h.matched_by)
            for h in hits
            if h.id in rows
        ]

    def photo(self, request: Any) -> Any:
        row = self.site.row(request.path_params["row_id"])
        if row is None:
            return self.not_found(request)
        photo = photo_json(self.site, row)
        data = {"title": row.path.name, "photo": photo, "facts": self.facts(row)}
        return self.respond(request, "photo.html", data)

    @staticmethod
    def facts(row: PhotoRow) -> dict[str, str]:
        """Date taken, camera and place, as the index recorded them at tag time."""
        found = {
            "taken": row.date_taken.replace("T", " ") if row.date_taken else None,
            "camera": row.camera,
            "place": row.place,
        }
        return {k: v for k, v in found.items() if v}

    def similar(self, request: Any) -> Any:
        from photoscribe.search.alike import similar

        row = self.site.row(request.path_params["row_id"])
        if row is None:
            return self.not_found(request)
        limit = limit_of(request, self.site.config.search.limit)
        hits = []
        if self.site.vectors is not None and self.site.store.embedding_of(row.id):
            hits = similar(self.site.store, self.site.vectors, row.path, limit + 20)
        data = {
            "title": f"Like {row.path.name}",
            "query": "",
            "form": {},
            "limit": limit,
            "like": photo_json(self.site, row),
            "results": self.hits_json(hits)[:limit],  # some may be outside the roots
        }
        return self.respond(request, "search.html", data)

    def duplicates(self, request: Any) -> Any:
        from photoscribe.search.alike import exact_copies, near_copies

        site = self.site
        try:
            threshold = float(request.query_params.get("threshold", "0.95"))
        except ValueError:
            threshold = 0.95
        threshold = min(max(threshold, 0.5), 1.0)
        groups = exact_copies(site.store)
        if site.vectors is not None:
            groups += near_copies(site.store, site.vectors.model_id, threshold)
        shown = []
        for group in groups:
            rows = [site.store.by_path(p) for p in group.paths]
            rows = [r for r in rows if r is not None and site.roots.allows(r.path)]
            if len(rows) > 1:
                photos = [photo_json(site, r) for r in rows]
                shown.append({**group.as_json(), "photos": photos})
        data = {"title": "Duplicates", "threshold": threshold, "groups": shown, "form": {}}
        return self.respond(request, "duplicates.html", data)

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
