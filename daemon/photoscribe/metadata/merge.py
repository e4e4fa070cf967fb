"""What a photo holds now, and what to change in it: pure functions, no pyexiv2.

Values are in pyexiv2's shapes: a string, a list of strings, or a LangAlt dict
``{'lang="x-default"': text}``; None deletes a tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from photoscribe.config import MetadataConfig
from photoscribe.metadata.fields import (
    CAMERA_PLACEHOLDERS,
    FIELDS,
    IPTC_CHARSET_KEY,
    IPTC_UTF8,
    MAKERNOTE_KEY,
    PARSED_MAKERNOTE_PREFIX,
    RELOCATABLE_MAKERNOTES,
    X_DEFAULT,
    Kind,
    Tag,
    tag,
    tag_by_key,
    tags_for,
)
from photoscribe.metadata.keywords import Value, Values, as_list, merge_keywords, read_keywords
from photoscribe.metadata.text import (
    clean_description,
    dedupe,
    fit_text,
    join_xp,
    path_to_tag,
)
from photoscribe.records import Annotation

FieldValue = str | list[str]


@dataclass(frozen=True)
class Existing:
    """What a photo holds now."""

    description: str | None
    keywords: tuple[str, ...]  # dc:subject ∪ IPTC ∪ XPKeywords, deduped case-insensitively
    ours: tuple[str, ...]  # keywords photoscribe recorded that it added
    our_description: str | None  # the description photoscribe recorded that it wrote
    hierarchy: tuple[str, ...] = ()  # lr:hierarchicalSubject ∪ digiKam TagsList, "A|B"
    our_hierarchy: tuple[str, ...] = ()  # the paths photoscribe recorded that it added
    concepts: tuple[str, ...] = ()  # the concept ids photoscribe recorded behind its words


@dataclass(frozen=True)
class Plan:
    changes: dict[str, Value | None]  # exiv2 key → new value (None: delete); {} = no-op
    keywords: tuple[str, ...]  # all flat keywords after the write
    description: str | None  # the description after the write


def existing_from(values: Values) -> Existing:
    """The logical fields of a photo holding ``values``."""
    state = read_keywords(values)
    return Existing(
        description=_current_description(values),
        keywords=state.flat,
        ours=state.ours,
        our_description=_as_text(tag("added_description"), values),
        hierarchy=state.paths,
        our_hierarchy=state.our_paths,
        concepts=state.concepts,
    )


def plan(
    values: Values,
    latin1: frozenset[str],
    ann: Annotation,
    *,
    schemas: frozenset[str],
    options: MetadataConfig,
    provenance: Mapping[str, str],
    exif_required: Mapping[str, str] | None = None,
) -> Plan:
    """The tag changes that bring ``ann`` into a photo holding ``values``.

    ``exif_required``: tags to add when photoscribe creates the EXIF block itself.
    """
    words = merge_keywords(read_keywords(values), ann.keywords, options.keyword_root, ann.paths)
    fields: dict[str, FieldValue] = {
        "keywords": words.flat,
        "hierarchy": words.paths,
        "added_keywords": words.added,
        "added_hierarchy": words.added_paths,
        "added_concepts": list(ann.concepts),
        "model": ann.model,
        "content_hash": ann.content_hash,
    }
    description = _description(values, ann, options.overwrite_description)
    if description is not None:
        fields["description"] = fields["added_description"] = description
    wanted = _wanted_tags(fields, schemas)
    changes = {key: value for key, value in wanted.items() if _current(key, values) != value}
    changes.update(_iptc_charset(wanted, values, latin1))
    if changes:
        changes.update(_wanted_tags(dict(provenance), schemas))
        changes.update(_exif_basics(values, changes, exif_required or {}))
    if description is None:
        description = _current_description(values)
    return Plan(changes=changes, keywords=tuple(words.flat), description=description)


def exif_can_move(values: Values) -> bool:
    """False when rewriting the EXIF block would break its maker note: one that exiv2 could
    not parse (it is copied as a blob) and whose format does not use offsets of its own."""
    note = values.get(MAKERNOTE_KEY)
    if not isinstance(note, str) or any(k.startswith(PARSED_MAKERNOTE_PREFIX) for k in values):
        return True
    try:  # pyexiv2 gives an undefined value as decimal bytes: "65 112 112 ..."
        head = bytes(int(byte) for byte in note.split()[:16])
    except ValueError:
        return False
    return head.startswith(RELOCATABLE_MAKERNOTES)


def _description(values: Values, ann: Annotation, overwrite: bool) -> str | None:
    """The description to write, or None to leave the photo's description as it is."""
    description = clean_description(ann.description)
    if description is None:
        return None
    current = _current_description(values)
    ours = _as_text(tag("added_description"), values)
    if overwrite or current is None or _description_is_ours(values, ours):
        return description
    return None


def _wanted_tags(
    fields: Mapping[str, FieldValue], schemas: frozenset[str]
) -> dict[str, Value | None]:
    return {
        one.key: _fit(one, value)
        for name, value in fields.items()
        for one in tags_for(name, schemas)
    }


def _fit(one: Tag, value: FieldValue) -> Value | None:
    """``value`` in the shape and size ``one`` stores (None when there is nothing to store)."""
    if one.is_list:
        words = [value] if isinstance(value, str) else list(value)
        words = [path_to_tag(one, word) for word in words]
        if one.kind is Kind.JOINED:
            return join_xp(one, words) or None
        return dedupe(fit_text(one, word) for word in words) or None
    text = fit_text(one, str(value)) if value else ""
    if not text:
        return None
    return {X_DEFAULT: text} if one.kind is Kind.LANG_ALT else text


def _current(key: str, values: Values) -> Value | None:
    """The value of ``key`` in the shape _fit produces, to compare the two."""
    one = tag_by_key(key)
    raw = values.get(key)
    if raw is None or one is None:
        return raw
    if one.is_list and one.kind is not Kind.JOINED:
        return as_list(raw) or None
    if one.kind is Kind.LANG_ALT and isinstance(raw, str):
        return {X_DEFAULT: raw}
    return raw or None


def _iptc_charset(
    wanted: Mapping[str, Value | None], values: Values, latin1: frozenset[str]
) -> dict[str, Value | None]:
    """Declare UTF-8 whenever IPTC is written; re-encode Latin-1 datasets we do not set."""
    writes_iptc = any(k.startswith("Iptc.") and v is not None for k, v in wanted.items())
    if not writes_iptc or values.get(IPTC_CHARSET_KEY) == IPTC_UTF8:
        return {}
    reencoded = {key: values[key] for key in latin1 if key not in wanted}
    return {IPTC_CHARSET_KEY: IPTC_UTF8, **reencoded}


def _exif_basics(
    values: Values, changes: Mapping[str, Value | None], required: Mapping[str, str]
) -> dict[str, Value | None]:
    """``required`` when this write creates the EXIF block (the photo had no EXIF tag)."""
    had_exif = any(key.startswith("Exif.") for key in values)
    writes_exif = any(k.startswith("Exif.") and v is not None for k, v in changes.items())
    return dict(required) if writes_exif and not had_exif else {}


def _current_description(values: Values) -> str | None:
    for one in FIELDS["description"]:
        text = _meaningful(_as_text(one, values))
        if text is not None:
            return text
    return None


def _description_is_ours(values: Values, ours: str | None) -> bool:
    """True when every description the photo holds is (a cut of) the one photoscribe wrote."""
    if ours is None:
        return False
    for one in FIELDS["description"]:
        text = _meaningful(_as_text(one, values))
        if text is not None and text != _meaningful(fit_text(one, ours)):
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
