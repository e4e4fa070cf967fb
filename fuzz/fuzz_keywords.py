"""Fuzz target: keyword and text hygiene (metadata/text.py, metadata/keywords.py).

The input bytes become words (split at NUL, decoded as UTF-8 with surrogate escapes, so
any str can occur). Invariants: a sanitised keyword is None or trimmed, without commas
or control characters, and sanitising it again changes nothing; byte limits hold on
character boundaries; merging never drops a user's keyword nor repeats one."""

from __future__ import annotations

import sys
import unicodedata

from harness import ROOT, instrumented, run

with instrumented():
    from photoscribe.metadata.fields import FIELDS, PATH_SEPARATOR
    from photoscribe.metadata.keywords import KeywordState, merge_keywords
    from photoscribe.metadata.text import (
        clean_description,
        fit_text,
        join_xp,
        keyword_key,
        path_part,
        sanitize_keyword,
        truncate_utf8,
    )


CORPUS = ROOT / "fuzz" / "corpus" / "keywords"


def words_of(data: bytes) -> list[str]:
    return [part.decode("utf-8", "surrogateescape") for part in data.split(b"\x00")]


def test_one_input(data: bytes) -> None:
    words = words_of(data)
    for word in words:
        check_keyword(word)
        limit = len(word) % 70
        cut = truncate_utf8(word.encode("utf-8", "surrogatepass").decode("utf-8", "replace"), limit)
        assert len(cut.encode("utf-8")) <= limit
        description = clean_description(word)
        if description is not None:
            description.encode("utf-8")  # storable: no lone surrogate left
        for one in (*FIELDS["keywords"], *FIELDS["description"]):
            fitted = fit_text(one, sanitize_keyword(word) or "")
            if one.max_bytes and not one.ucs2:
                assert len(fitted.encode("utf-8")) <= one.max_bytes
    for one in FIELDS["keywords"]:
        if one.ucs2:
            joined = join_xp(one, [w for w in map(sanitize_keyword, words) if w])
            assert not one.max_bytes or 2 * len(joined) <= one.max_bytes
    check_merge(words)


def check_keyword(word: str) -> None:
    clean = sanitize_keyword(word)
    if clean is None:
        return
    assert clean == clean.strip() and clean, repr(clean)
    assert "," not in clean
    assert not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in clean), repr(clean)
    assert sanitize_keyword(clean) == clean
    assert PATH_SEPARATOR not in path_part(clean)


def check_merge(words: list[str]) -> None:
    half = len(words) // 2
    user = tuple(w for w in (sanitize_keyword(w) for w in words[:half]) if w)
    state = KeywordState(flat=user, paths=(), ours=(), our_paths=())
    plan = merge_keywords(state, words[half:], "AI")
    for word in plan.flat:
        word.encode("utf-8")
    keys = [keyword_key(w) for w in plan.flat]
    assert len(keys) == len(set(keys)), plan.flat
    assert {keyword_key(w) for w in user} <= set(keys)


if __name__ == "__main__":
    run(test_one_input, sys.argv, seeds=CORPUS, max_len=1024)
