"""Chinese (and other CJK) text → space-separated pieces SQLite's unicode61 can index.

unicode61 keeps a run of CJK characters as one token, so ``海边`` never matches inside
``今天去海边玩了``. Every CJK run is rewritten as its overlapping two-character pieces
followed by its single characters: ``今天去海边`` → ``今天 天去 去海 海边 今 天 去 海 边``.
A query is rewritten the same way, a run of two or more characters as the *phrase* of its
pieces (adjacent pieces = that exact substring), a single character as itself. That finds
every substring, needs no dictionary (no load time, no memory, no unknown words) and works
for Japanese kana and Korean too. Latin text passes through untouched.
"""

from __future__ import annotations

import re

CJK_RUN = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+"
)


def bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)]


def index_text(text: str | None) -> str:
    """What the full-text table stores for ``text``: CJK runs as pieces, the rest as is."""
    if not text:
        return ""
    return " ".join(
        CJK_RUN.sub(lambda m: " " + " ".join(_index_pieces(m.group())) + " ", text).split()
    )


def _index_pieces(run: str) -> list[str]:
    return [*bigrams(run), *run] if len(run) > 1 else [run]


def query_pieces(run: str) -> str:
    """One CJK run of a query → the text of an FTS5 phrase that finds it as a substring."""
    return " ".join(bigrams(run)) if len(run) > 1 else run


def has_cjk(text: str) -> bool:
    return CJK_RUN.search(text) is not None
