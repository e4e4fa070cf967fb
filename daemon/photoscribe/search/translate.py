"""Search queries in other languages → an English phrase for CLIP, by the configured LLM
(``search.translate_queries``), cached on disk so a query is translated once.

Any failure (server down, slow, a reply that is not a short English phrase) returns None
and the vocabulary's reading of the query (search.prompt) is used instead: a search never
waits on or fails because of the LLM beyond one request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from photoscribe.cachefile import save_text
from photoscribe.errors import CaptionRejected, CaptionUnavailable

log = logging.getLogger(__name__)

SYSTEM = (
    "You translate photo search queries into English for an image search engine. Answer "
    "with a short English phrase describing what the photos show, nothing else."
)
MAX_CHARS = 120  # a longer reply is not a search phrase
_LATIN = re.compile(r"[A-Za-z]")
_NOT_LATIN = re.compile(r"[^\x00-\x7f\u00c0-\u024f]")  # CJK, Cyrillic, ... left in the reply


class QueryTranslator:
    """``(query) → English phrase or None``; asks ``make_asker()`` (built on the first
    uncached query) for ``answer_once(system, user)``."""

    def __init__(self, folder: Path, model: str, make_asker: Callable[[], Any]) -> None:
        self.folder = folder / "search" / "translations"
        self.model = model  # the LLM's name: another model may translate otherwise
        self.make_asker = make_asker
        self._asker: Any = None
        self.asked = 0

    def __call__(self, query: str) -> str | None:
        path = self._file(query)
        try:
            return json.loads(path.read_text(encoding="utf-8"))["english"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        english = self._ask(query)
        if english is not None:
            self._store(path, query, english)
        return english

    def _file(self, query: str) -> Path:
        key = hashlib.sha256(f"{self.model}\0{query}".encode()).hexdigest()[:32]
        return self.folder / f"{key}.json"

    def _ask(self, query: str) -> str | None:
        if self._asker is None:
            self._asker = self.make_asker()
        self.asked += 1
        try:
            reply = self._asker.answer_once(SYSTEM, query)
        except (CaptionUnavailable, CaptionRejected) as exc:
            log.info("query not translated (%s); reading it with the vocabulary", exc)
            return None
        return english_phrase(reply)

    def _store(self, path: Path, query: str, english: str) -> None:
        record = {"query": query, "english": english, "model": self.model}
        try:
            save_text(path, json.dumps(record, ensure_ascii=False))
        except OSError as exc:  # a read-only cache_dir: only the speed-up is lost
            log.debug("query translation not cached: %s", exc)


def english_phrase(reply: str) -> str | None:
    """The reply as a one-line English phrase, or None if it is not one."""
    text = " ".join(reply.split()).strip(" \"'“”.")
    if not text or len(text) > MAX_CHARS or not _LATIN.search(text) or _NOT_LATIN.search(text):
        return None
    return text
