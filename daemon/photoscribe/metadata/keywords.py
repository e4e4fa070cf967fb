"""Keywords: read them from every keyword tag, merge new ones in (pure functions, no pyexiv2).

Two shapes are written: flat words (dc:subject, IPTC Keywords, XPKeywords) and paths
(lr:hierarchicalSubject "AI|cat", digiKam TagsList "AI/cat"). Paths are held in Lightroom's
'|' form here and converted per tag. The user's own keywords are never changed; only those
recorded in photoscribe:addedKeywords / photoscribe:addedHierarchy are replaced on re-tagging.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from photoscribe.metadata.fields import FIELDS, PATH_SEPARATOR, XP_SEPARATOR, Kind, Tag, tag
from photoscribe.metadata.text import (
    dedupe,
    fit_text,
    keyword_key,
    path_from_tag,
    path_part,
    path_parts,
    root_parts,
    sanitize_keyword,
    split_xp,
)

Value = str | list[str] | dict[str, str]
Values = Mapping[str, Value]


@dataclass(frozen=True)
class KeywordState:
    """The keywords a photo holds now."""

    flat: tuple[str, ...]  # dc:subject ∪ IPTC ∪ XPKeywords, deduped case-insensitively
    paths: tuple[str, ...]  # hierarchicalSubject ∪ TagsList, as "A|B"
    ours: tuple[str, ...]  # the flat keywords photoscribe recorded that it added
    our_paths: tuple[str, ...]  # the paths photoscribe recorded that it added
    concepts: tuple[str, ...] = ()  # the concept ids photoscribe recorded behind its words


@dataclass(frozen=True)
class KeywordPlan:
    """The keywords after a write."""

    flat: list[str]  # the user's, then ours
    added: list[str]  # ours (flat)
    paths: list[str]  # the user's, then ours ('|' form)
    added_paths: list[str]  # ours, including the user's flat words carried into the paths


def read_keywords(values: Values) -> KeywordState:
    return KeywordState(
        flat=tuple(_flat_words(values)),
        paths=tuple(_paths(values)),
        ours=tuple(as_list(values.get(tag("added_keywords").key))),
        our_paths=tuple(as_list(values.get(tag("added_hierarchy").key))),
        concepts=tuple(as_list(values.get(tag("added_concepts").key))),
    )


def merge_keywords(
    state: KeywordState,
    new_words: Iterable[str],
    root: str,
    new_paths: Iterable[str] | None = None,
) -> KeywordPlan:
    """Replace photoscribe's earlier keywords by ``new_words`` (sanitised), keep the user's.

    Every earlier keyword photoscribe recorded goes, in whatever language it was written:
    switching ``language`` replaces the old forms. ``new_paths`` ("animal|dog", each part
    a display name) go under ``root`` (``metadata.keyword_root``; "" = top level); None
    makes each new word a top-level path. A path whose last part the user's paths already
    hold is left out, as is a path of a flat word the user has. The user's flat words that
    no path of theirs holds are carried into the paths as top-level entries.
    """
    user = _without(state.flat, state.ours)
    user_keys = {keyword_key(word) for word in user}
    added = [word for word in dedupe(_sanitized(new_words)) if keyword_key(word) not in user_keys]
    user_paths = _without(state.paths, state.our_paths)
    in_paths = {keyword_key(part) for path in user_paths for part in path_parts(path)}
    carried = [path_part(word) for word in user if keyword_key(word) not in in_paths]
    prefix = root_parts(root)
    if new_paths is None:
        chains, skip = [[path_part(word)] for word in added], in_paths
    else:  # the user's own flat word is carried into the paths already (above)
        chains, skip = _chains(new_paths), in_paths | user_keys
    ours = [
        PATH_SEPARATOR.join([*prefix, *chain])
        for chain in chains
        if chain and keyword_key(chain[-1]) not in skip
    ]
    added_paths = _without(dedupe([*carried, *ours]), user_paths)
    return KeywordPlan(
        flat=user + added, added=added, paths=user_paths + added_paths, added_paths=added_paths
    )


def _chains(paths: Iterable[str]) -> list[list[str]]:
    """Each path as its parts, each part cleaned as a path part."""
    chains = ([path_part(part) for part in path.split(PATH_SEPARATOR)] for path in paths)
    return [chain for chain in chains if all(chain)]


def as_list(raw: Value | None) -> list[str]:
    """A tag's value as a list of non-empty strings."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw] if raw else []
    if isinstance(raw, dict):
        return list(raw.values())
    return [word for word in raw if word]


def stored_form(one: Tag, word: str) -> str:
    """The form ``word`` takes in the flat keyword tag ``one`` (cut, emoji removed, ...)."""
    if one.kind is Kind.JOINED:
        return fit_text(one, word.replace(XP_SEPARATOR, ","))
    return fit_text(one, word)


def _flat_words(values: Values) -> list[str]:
    """The flat keywords; a word that is another tag's word as this tag stores it (IPTC cut
    to 64 bytes, XPKeywords without emoji) is no new word."""
    known: list[str] = []
    for one in FIELDS["keywords"]:
        forms = {keyword_key(stored_form(one, word)) for word in known}
        known += [word for word in _stored_words(one, values) if keyword_key(word) not in forms]
    return dedupe(known)


def _stored_words(one: Tag, values: Values) -> list[str]:
    raw = values.get(one.key)
    if one.kind is Kind.JOINED:
        return split_xp(raw) if isinstance(raw, str) else []
    return as_list(raw)


def _paths(values: Values) -> list[str]:
    return dedupe(
        path_from_tag(one, stored)
        for one in FIELDS["hierarchy"]
        for stored in as_list(values.get(one.key))
    )


def _without(words: Iterable[str], drop: Iterable[str]) -> list[str]:
    dropped = {keyword_key(word) for word in drop}
    return dedupe(word for word in words if keyword_key(word) not in dropped)


def _sanitized(words: Iterable[str]) -> list[str]:
    return [clean for word in words if (clean := sanitize_keyword(word)) is not None]
