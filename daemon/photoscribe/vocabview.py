"""`photoscribe labels`: what the tagger can say, with parents and aliases (no torch)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from photoscribe.vision.vocabulary import Concept, Vocabulary


def _key(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def matches(concept: Concept, query: str) -> bool:
    """``query`` is part of the id, a name or an alias, in any language."""
    q = _key(query.strip())
    words = [concept.id, *concept.names.values()]
    words += [a for group in concept.aliases.values() for a in group]
    return any(q in _key(word) for word in words)


def listed(vocab: Vocabulary, query: str | None) -> list[Concept]:
    """The taggable concepts (and, with a query, parent-only ones that match it)."""
    if not query:
        return list(vocab.taggable())
    return [c for c in vocab if matches(c, query)]


def paths_of(vocab: Vocabulary, concept: Concept, language: str) -> list[str]:
    return ["|".join(vocab.name(cid, language) for cid in path) for path in vocab.paths(concept.id)]


def as_dict(vocab: Vocabulary, concept: Concept, language: str) -> dict[str, Any]:
    return {
        "id": concept.id,
        "name": vocab.name(concept.id, language),
        "names": dict(concept.names),
        "paths": paths_of(vocab, concept, language),
        "parents": list(concept.parents),
        "aliases": {lang: list(words) for lang, words in concept.aliases.items()},
        "prompts": list(concept.prompts),
        "threshold": concept.threshold,
        "group": concept.group,
        "parent_only": concept.parent_only,
    }


def lines(vocab: Vocabulary, concepts: Sequence[Concept], language: str) -> list[str]:
    """One line per concept: the path in ``language``, the other names, aliases, the id."""
    out = []
    for c in concepts:
        path = "; ".join(paths_of(vocab, c, language))
        others = [name for lang, name in c.names.items() if lang != language]
        aliases = [a for group in c.aliases.values() for a in group]
        line = path
        if others:
            line += f"  ({' / '.join(others)})"
        if aliases:
            line += f"  aka {', '.join(aliases)}"
        notes = [c.id]
        if c.parent_only:
            notes.append("parent only")
        if c.group:
            notes.append(f"group {c.group}")
        if c.threshold is not None:
            notes.append(f"threshold {c.threshold:g}")
        out.append(f"{line}  [{', '.join(notes)}]")
    return out
