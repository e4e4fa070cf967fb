"""What the user typed → terms → safe FTS5 expressions.

Syntax (documented in the README): words are ANDed (if no photo has every word, any word
will do); ``"a phrase"`` keeps words together (an unclosed quote runs to the end);
``word*`` matches words starting with ``word``; ``-word`` leaves out photos whose text has
it. Chinese needs no spaces: ``猫 沙发``, ``猫沙发`` and ``猫*`` all work. Nothing the
user types reaches FTS5 unquoted, so no input can be an FTS5 syntax error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from photoscribe.segment import CJK_RUN, query_pieces

WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Term:
    text: str  # without the quotes, the leading '-' and the trailing '*'
    exclude: bool = False
    prefix: bool = False


def parse_terms(text: str) -> list[Term]:
    terms: list[Term] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        exclude = text[i] == "-" and i + 1 < n and not text[i + 1].isspace()
        i += exclude
        if text[i] == '"':
            end = text.find('"', i + 1)
            end = n if end < 0 else end
            body, i = text[i + 1 : end], end + 1
        else:
            end = i
            while end < n and not text[end].isspace():
                end += 1
            body, i = text[i:end], end
        prefix = body.endswith("*")
        if term_expression(Term(body.rstrip("*"))) is not None:
            terms.append(Term(body.rstrip("*"), exclude, prefix))
    return terms


def _quote(pieces: str) -> str:
    return '"' + pieces.replace('"', '""') + '"'


Splitter = Callable[[str], list[str]]  # a CJK run → the words it is made of


def term_expression(
    term: Term, split: Splitter | None = None, *, any_part: bool = False
) -> str | None:
    """One term → FTS5: a CJK run as the phrase of its two-character pieces (or, given
    ``split``, one phrase per word of it), other words as one phrase; the parts ANDed
    (ORed with ``any_part``). None when the term has no word characters."""
    parts: list[str] = []
    words: list[str] = []
    last_latin = False
    pos = 0
    for m in CJK_RUN.finditer(term.text):
        words += WORD.findall(term.text[pos : m.start()])
        if words:
            parts.append(_quote(" ".join(words)))
            words = []
        parts += _run_parts(m.group(), split, any_part)
        pos = m.end()
    words += WORD.findall(term.text[pos:])
    if words:
        parts.append(_quote(" ".join(words)))
        last_latin = True
    if not parts:
        return None
    if term.prefix and last_latin:  # a CJK piece already matches inside longer text
        parts[-1] += "*"
    return (" OR " if any_part else " AND ").join(parts)


def _run_parts(run: str, split: Splitter | None, any_part: bool) -> list[str]:
    """A CJK run's parts. When any part will do, single characters are too weak to find
    a photo on their own: only the run's words of two or more characters stand alone."""
    pieces = split(run) if split else [run]
    if not any_part:
        return [_quote(query_pieces(p)) for p in pieces]
    words = [p for p in pieces if len(p) > 1]
    if words:
        return [_quote(query_pieces(p)) for p in words]
    return ["(" + " AND ".join(_quote(p) for p in pieces) + ")"]


def match_expression(
    terms: list[Term], *, any_term: bool = False, split: Splitter | None = None
) -> str | None:
    """The wanted terms, ANDed (or ORed, parts of terms too); None when there are none."""
    wanted = [f"({term_expression(t, split, any_part=any_term)})" for t in terms if not t.exclude]
    if not wanted:
        return None
    return (" OR " if any_term else " AND ").join(wanted)


def has_long_run(terms: list[Term]) -> bool:
    """Whether some wanted term holds a CJK run that could be several words."""
    return any(len(m.group()) > 1 for t in terms if not t.exclude for m in CJK_RUN.finditer(t.text))


def exclusion_expression(terms: list[Term]) -> str | None:
    """Photos matching this are left out; None when nothing is excluded."""
    unwanted = [f"({term_expression(t)})" for t in terms if t.exclude]
    return " OR ".join(unwanted) or None


def clip_text(terms: list[Term]) -> str:
    """The words for the CLIP text tower: the wanted terms, without the syntax."""
    return " ".join(t.text for t in terms if not t.exclude)


def fts_expression(text: str, *, any_term: bool = False) -> str | None:
    """User text → the FTS5 expression of its wanted terms."""
    return match_expression(parse_terms(text), any_term=any_term)
