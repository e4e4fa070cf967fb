"""What a photo holds now, and what to change in it: pure functions, no pyexiv2.

Values are in pyexiv2's shapes: a string, a list of strings, or a LangAlt dict
``{'lang="x-default"': text}``; None deletes a tag.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from photoscribe.metadata.fields import (
    CAMERA_PLACEHOLDERS,
    FIELDS,
    IPTC_CHARSET_KEY,
    IPTC_UTF8,
    X_DEFAULT,
    Kind,
    Tag,
    tag,
    tags_for,
)
from photoscribe.records import Annotation

Value = str | list[str] | dict[str, str]
Values = Mapping[str, Value]


@dataclass(frozen=True)
class Existing:
    """What a photo holds now."""

    description: str | None
    keywords: tuple[str, ...]  # dc:subject ∪ IPTC Keywords, in order, deduped case-insensitively
    ours: tuple[str, ...]  # keywords photoscribe recorded that it added
    our_description: str | None  # the description photoscribe recorded that it wrote


@dataclass(frozen=True)
class Plan:
    changes: dict[str, Value | None]  # exiv2 key → new value (None: delete); {} = no-op
    keywords: tuple[str, ...]  # all keywords after the write
    description: str | None  # the description after the write


def sanitize_keyword(text: str) -> str | None:
    """Trim, drop control characters and ASCII commas (darktable splits on them), squeeze
    whitespace; None when nothing is left."""
    chars = (" " if ch == "," or unicodedata.category(ch) == "Cc" else ch for ch in text)
    return " ".join("".join(chars).split()) or None


def keyword_key(text: str) -> str:
    """Keywords that differ only in case (or Unicode normal form) are the same keyword."""
    return unicodedata.normalize("NFC", text).casefold()


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def clean_description(text: str | None) -> str | None:
    """Strip, normalise line ends, drop control characters other than newline and tab."""
    if text is None:
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    return kept.strip() or None


def existing_from(values: Values) -> Existing:
    """Read the logical fields; an IPTC keyword that is a cut XMP keyword is no new one."""
    xmp_tag, iptc_tag = FIELDS["keywords"]
    xmp_words = _as_list(values.get(xmp_tag.key))
    iptc_words = _as_list(values.get(iptc_tag.key))
    limit = iptc_tag.max_bytes or 64
    truncated = {keyword_key(truncate_utf8(word, limit)) for word in xmp_words}
    iptc_only = [word for word in iptc_words if keyword_key(word) not in truncated]
    return Existing(
        description=_current_description(values),
        keywords=tuple(_dedupe([*xmp_words, *iptc_only])),
        ours=tuple(_as_list(values.get(tag("added_keywords").key))),
        our_description=_as_text(tag("added_description"), values),
    )


def plan(
    values: Values,
    latin1: frozenset[str],
    ann: Annotation,
    *,
    schemas: frozenset[str],
    overwrite_description: bool,
    provenance: Mapping[str, str],
) -> Plan:
    """The tag changes that bring ``ann`` into a photo holding ``values``."""
    existing = existing_from(values)
    ours = {keyword_key(word) for word in existing.ours}
    # The user's own keywords are kept verbatim (never rewritten); only ours are sanitised.
    user = _dedupe(w for w in existing.keywords if keyword_key(w) not in ours)
    user_keys = {keyword_key(word) for word in user}
    added = [w for w in _dedupe(_sanitized(ann.keywords)) if keyword_key(w) not in user_keys]
    fields: dict[str, str | list[str]] = {
        "keywords": user + added,
        "added_keywords": added,
        "model": ann.model,
        "content_hash": ann.content_hash,
    }
    description = clean_description(ann.description)
    if description is not None and (
        overwrite_description
        or existing.description is None
        or _description_is_ours(values, existing.our_description)
    ):
        fields["description"] = fields["added_description"] = description
    else:
        description = existing.description
    wanted = _wanted_tags(fields, schemas)
    changes = {key: value for key, value in wanted.items() if _current(key, values) != value}
    changes.update(_iptc_charset(wanted, values, latin1))
    if changes:
        changes.update(_wanted_tags(dict(provenance), schemas))
    return Plan(changes=changes, keywords=tuple(user + added), description=description)


def _wanted_tags(
    fields: Mapping[str, str | list[str]], schemas: frozenset[str]
) -> dict[str, Value | None]:
    return {
        one.key: _fit(one, value)
        for name, value in fields.items()
        for one in tags_for(name, schemas)
    }


def _fit(one: Tag, value: str | list[str]) -> Value | None:
    """``value`` in the shape and size ``one`` stores (None when there is nothing to store)."""
    if not value:
        return None
    if one.kind in (Kind.BAG, Kind.REPEATED):
        words = [value] if isinstance(value, str) else list(value)
        if one.max_bytes:
            words = _dedupe(truncate_utf8(word, one.max_bytes) for word in words)
        return words
    text = truncate_utf8(str(value), one.max_bytes) if one.max_bytes else str(value)
    return {X_DEFAULT: text} if one.kind is Kind.LANG_ALT else text


def _current(key: str, values: Values) -> Value | None:
    """The value of ``key`` in the shape _fit produces, to compare the two."""
    one = _tag_by_key(key)
    raw = values.get(key)
    if raw is None or one is None:
        return raw
    if one.kind in (Kind.BAG, Kind.REPEATED):
        return _as_list(raw) or None
    if one.kind is Kind.LANG_ALT and isinstance(raw, str):
        return {X_DEFAULT: raw}
    return raw


def _iptc_charset(
    wanted: Mapping[str, Value | None], values: Values, latin1: frozenset[str]
) -> dict[str, Value | None]:
    """Declare UTF-8 whenever IPTC is written; re-encode Latin-1 datasets we do not set."""
    writes_iptc = any(k.startswith("Iptc.") and v is not None for k, v in wanted.items())
    if not writes_iptc or values.get(IPTC_CHARSET_KEY) == IPTC_UTF8:
        return {}
    reencoded = {key: values[key] for key in latin1 if key not in wanted}
    return {IPTC_CHARSET_KEY: IPTC_UTF8, **reencoded}


def _current_description(values: Values) -> str | None:
    for one in FIELDS["description"]:
        text = _meaningful(_as_text(one, values))
        if text is not None:
            return text
    return None


def _description_is_ours(values: Values, ours: str | None) -> bool:
    """True when every description the photo holds is the one photoscribe wrote."""
    if ours is None:
        return False
    for one in FIELDS["description"]:
        text = _meaningful(_as_text(one, values))
        expected = truncate_utf8(ours, one.max_bytes) if one.max_bytes else ours
        if text is not None and text != _meaningful(expected):
            return False
    return True


def _as_text(one: Tag, values: Values) -> str | None:
    raw = values.get(one.key)
    if isinstance(raw, dict):
        return raw.get(X_DEFAULT) or next(iter(raw.values()), None)
    if isinstance(raw, list):
        return raw[0] if raw else None
    return raw


def _meaningful(text: str | None) -> str | None:
    """None for empty text and for placeholders cameras write ("OLYMPUS DIGITAL CAMERA")."""
    if text is None or not text.strip() or text.strip().casefold() in CAMERA_PLACEHOLDERS:
        return None
    return text.strip()


def _as_list(raw: Value | None) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw] if raw else []
    if isinstance(raw, dict):
        return list(raw.values())
    return [word for word in raw if word]


def _sanitized(words: Iterable[str]) -> list[str]:
    return [clean for word in words if (clean := sanitize_keyword(word)) is not None]


def _dedupe(words: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for word in words:
        if keyword_key(word) not in seen:
            seen.add(keyword_key(word))
            kept.append(word)
    return kept


def _tag_by_key(key: str) -> Tag | None:
    return next((one for tags in FIELDS.values() for one in tags if one.key == key), None)
