"""Pure text helpers: keyword hygiene, limits on character boundaries, paths, UCS-2."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from photoscribe.metadata.fields import PATH_SEPARATOR, XP_SEPARATOR, Tag

_SPACES = re.compile(r"[ ]{2,}")
_DROPPED = ("Cc", "Cs")  # control characters, lone surrogates


def sanitize_keyword(text: str) -> str | None:
    """Trim, drop control characters, lone surrogates (a JSON reply may hold "\\ud800";
    no file can store one) and ASCII commas (darktable splits on them), squeeze
    whitespace; None when nothing is left."""
    chars = (" " if ch == "," or unicodedata.category(ch) in _DROPPED else ch for ch in text)
    return " ".join("".join(chars).split()) or None


def keyword_key(text: str) -> str:
    """Keywords that differ only in case (or Unicode normal form) are the same keyword."""
    return unicodedata.normalize("NFC", text).casefold()


def dedupe(words: Iterable[str]) -> list[str]:
    """``words`` without empty ones and without repeats (compared by keyword_key)."""
    seen: set[str] = set()
    kept = []
    for word in words:
        if word and keyword_key(word) not in seen:
            seen.add(keyword_key(word))
            kept.append(word)
    return kept


def clean_description(text: str | None) -> str | None:
    """Strip, normalise line ends, drop control characters other than newline and tab, and
    lone surrogates."""
    if text is None:
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in _DROPPED)
    return kept.strip() or None


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def strip_non_bmp(text: str) -> str:
    """Characters outside the Basic Multilingual Plane (emoji, ...) removed, as UCS-2 has none;
    the spaces left around them squeezed."""
    kept = "".join(ch for ch in text if ord(ch) <= 0xFFFF)
    return _SPACES.sub(" ", kept).strip() if len(kept) != len(text) else text


def fit_text(one: Tag, text: str) -> str:
    """``text`` as ``one`` stores it: UCS-2-safe and within its byte limit."""
    if one.ucs2:
        text = strip_non_bmp(text)
        return text[: one.max_bytes // 2] if one.max_bytes else text  # 2 bytes per character
    return truncate_utf8(text, one.max_bytes) if one.max_bytes else text


def join_xp(one: Tag, words: Iterable[str]) -> str:
    """Windows' XPKeywords string: whole words only, ';' between them, within the limit."""
    kept: list[str] = []
    for word in dedupe(fit_text(one, w.replace(XP_SEPARATOR, ",")).strip() for w in words):
        candidate = XP_SEPARATOR.join([*kept, word])
        if one.max_bytes and 2 * len(candidate) > one.max_bytes:
            break
        kept.append(word)
    return XP_SEPARATOR.join(kept)


def split_xp(text: str) -> list[str]:
    return [word.strip() for word in text.split(XP_SEPARATOR) if word.strip()]


def path_to_tag(one: Tag, path: str) -> str:
    """A path held as "A|B" in ``one``'s form; a separator inside a part is swapped for the
    other one, as Immich does (digiKam "AC|DC" ⇄ Lightroom "AC/DC")."""
    if one.path_sep is None or one.path_sep == PATH_SEPARATOR:
        return path
    parts = (part.replace(one.path_sep, PATH_SEPARATOR) for part in path.split(PATH_SEPARATOR))
    return one.path_sep.join(parts)


def path_from_tag(one: Tag, stored: str) -> str:
    """The inverse of path_to_tag."""
    if one.path_sep is None or one.path_sep == PATH_SEPARATOR:
        return stored
    parts = (part.replace(PATH_SEPARATOR, one.path_sep) for part in stored.split(one.path_sep))
    return PATH_SEPARATOR.join(parts)


def path_part(word: str) -> str:
    """A keyword as one part of a path: no path separator ('|' becomes '/') and no comma
    (darktable splits hierarchicalSubject entries on commas too); "" when nothing is left."""
    return sanitize_keyword(word.replace(PATH_SEPARATOR, "/")) or ""


def path_parts(path: str) -> list[str]:
    return [part.strip() for part in path.split(PATH_SEPARATOR) if part.strip()]


def root_parts(root: str) -> list[str]:
    """``metadata.keyword_root`` ("AI", "AI|photoscribe" or "AI/photoscribe") as parts."""
    return path_parts(root.replace("/", PATH_SEPARATOR))
