"""The chat messages that ask the LLM for a caption.

The templates are module constants so that a later change can make them configurable.
``{keywords}`` is replaced by the labels, most likely first, joined by ``KEYWORD_SEPARATOR``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from photoscribe.records import Keyword

KEYWORD_SEPARATOR = ", "
NO_THINK = "/no_think"  # Qwen3's soft switch, for servers that ignore chat_template_kwargs

SYSTEM_TEMPLATES: dict[str, str] = {
    "en": (
        "You write short, natural captions for photos in a personal photo library. "
        "Answer with one or two plain sentences in English that describe the photo. "
        "No lists, no quotes, no preamble, and never mention keywords, tags, labels or AI. "
        "Leave out any detail that seems unlikely."
    ),
    "zh": (
        "你为个人相册中的照片写简短、自然的说明。"
        "用一两句简体中文描述照片。"
        "不要列表，不要引号，不要开场白，不要提到关键词、标签或人工智能。"
        "不太可能的细节就省略。"
    ),
}

USER_TEMPLATES: dict[str, str] = {
    "en": (
        "Seen in the photo, most likely first: {keywords}\n"
        "Describe the photo in one or two natural sentences."
    ),
    "zh": "照片中可能有（可能性从高到低）：{keywords}\n请用一两句自然的简体中文描述这张照片。",
}

_SENTENCE_BREAK = re.compile(r"[.。!！?？:：\n]")


def keyword_labels(keywords: Sequence[Keyword]) -> list[str]:
    """Labels ordered by score (highest first), blank and duplicate labels dropped."""
    seen: set[str] = set()
    labels: list[str] = []
    for kw in sorted(keywords, key=lambda k: k.score, reverse=True):
        label = " ".join(kw.label.split())
        if label and label.casefold() not in seen:
            seen.add(label.casefold())
            labels.append(label)
    return labels


def build_messages(
    keywords: Sequence[Keyword], *, language: str, thinking: bool
) -> list[dict[str, str]]:
    """System + user message asking for a caption of a photo showing ``keywords``."""
    if language not in USER_TEMPLATES:
        raise ValueError(f"unsupported caption language {language!r}")
    labels = keyword_labels(keywords)
    if not labels:
        raise ValueError("no keywords to describe the photo from")
    user = USER_TEMPLATES[language].format(keywords=KEYWORD_SEPARATOR.join(labels))
    if not thinking:
        user = f"{user} {NO_THINK}"
    return [
        {"role": "system", "content": SYSTEM_TEMPLATES[language]},
        {"role": "user", "content": user},
    ]


def instruction_fragments(language: str) -> list[str]:
    """Pieces of the fixed prompt text; a reply containing one echoes the prompt."""
    text = SYSTEM_TEMPLATES[language] + "\n" + USER_TEMPLATES[language].replace("{keywords}", "\n")
    minimum = 6 if language == "zh" else 16
    pieces = (" ".join(p.split()).casefold() for p in _SENTENCE_BREAK.split(text))
    return [p for p in pieces if len(p) >= minimum]
