"""Concept ids → the words and paths written into photos, in the configured language(s).

The index keeps concept ids; the words are made when a photo is written, so changing
``language`` (or renaming a concept) rewrites the keywords without running CLIP again.

- Flat keyword fields (dc:subject, IPTC Keywords, XPKeywords) get each concept and its
  ancestors that are not ``parent_only`` (a golden retriever photo: "golden retriever",
  "dog"; "animal" only if it is a concept of its own), in each language.
- Hierarchical fields (lr:hierarchicalSubject, digiKam TagsList) get every root-to-concept
  path, parents included ("animal|dog|golden retriever", "动物|狗|金毛"), in each language.

A label that is not a concept id (an index from before concept ids, or a concept removed
since) is looked up by name; if that fails too, it is written as it is.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from photoscribe.records import Keyword
from photoscribe.vision.vocabulary import Vocabulary

PATH_SEPARATOR = "|"


def dedupe(words: Sequence[str]) -> list[str]:
    """Without repeats that differ only in case or normal form (metadata.text's rule; not
    imported from there, which would load pyexiv2)."""
    seen: set[str] = set()
    kept = []
    for word in words:
        key = unicodedata.normalize("NFC", word).casefold()
        if word and key not in seen:
            seen.add(key)
            kept.append(word)
    return kept


@dataclass(frozen=True)
class Wording:
    vocabulary: Vocabulary
    languages: tuple[str, ...] = ("en",)

    @property
    def caption_language(self) -> str:
        return self.languages[0]

    def concept_of(self, label: str) -> str | None:
        """The concept id a stored label stands for, or None."""
        if label in self.vocabulary:
            return label
        found = self.vocabulary.lookup(label)
        return found[0] if len(found) == 1 else None

    def words(self, labels: Sequence[str]) -> list[str]:
        """The flat keywords for ``labels`` (best first), language by language."""
        out: list[str] = []
        for language in self.languages:
            for label in labels:
                cid = self.concept_of(label)
                if cid is None:
                    out.append(label)
                    continue
                chain = [cid, *self.vocabulary.ancestors(cid)]
                flat = [c for c in chain if c == cid or not self.vocabulary[c].parent_only]
                out += [self.vocabulary.name(c, language) for c in flat]
        return dedupe(out)

    def search_text(self, labels: Sequence[str]) -> str:
        """What full-text search finds a photo's keywords by: each concept's and ancestor's
        names and aliases in every language of the vocabulary (not only those written), so
        狗, dog and 狗狗 all find a golden retriever."""
        out: list[str] = []
        for label in labels:
            cid = self.concept_of(label)
            if cid is None:
                out.append(label)
                continue
            for c in (cid, *self.vocabulary.ancestors(cid)):
                concept = self.vocabulary[c]
                out += concept.names.values()
                for aliases in concept.aliases.values():
                    out += aliases
        return " ".join(dedupe(out))

    def paths(self, labels: Sequence[str]) -> list[str]:
        """The hierarchical keywords ("animal|dog"), language by language."""
        out: list[str] = []
        for language in self.languages:
            for label in labels:
                cid = self.concept_of(label)
                if cid is None:
                    out.append(label.replace(PATH_SEPARATOR, "/"))
                    continue
                for chain in self.vocabulary.paths(cid):
                    names = (self.vocabulary.name(c, language) for c in chain)
                    out.append(PATH_SEPARATOR.join(names))
        return dedupe(out)

    def names(self, labels: Sequence[str], language: str | None = None) -> list[str]:
        """Each label's display name in one language (the caption's by default)."""
        language = language or self.caption_language
        out = []
        for label in labels:
            cid = self.concept_of(label)
            out.append(label if cid is None else self.vocabulary.name(cid, language))
        return out

    def render(self, keywords: Sequence[Keyword]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(flat words, paths) for a photo's keywords, best first."""
        labels = [k.label for k in sorted(keywords, key=lambda k: k.score, reverse=True)]
        return tuple(self.words(labels)), tuple(self.paths(labels))

    def concepts(self, keywords: Sequence[Keyword]) -> tuple[str, ...]:
        """The concept ids among ``keywords`` (recorded in the photo beside the words)."""
        ids = (self.concept_of(k.label) for k in keywords)
        return tuple(dict.fromkeys(cid for cid in ids if cid is not None))
