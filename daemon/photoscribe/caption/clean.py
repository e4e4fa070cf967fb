"""Turn a raw LLM reply into a caption, and decide whether it is usable.

Thinking models leak their reasoning: ``enable_thinking: false`` may still return a
``<think>…</think>`` block, some servers send only the closing ``</think>``, and some put
the answer only in a separate reasoning field. The reasoning is never used as the caption.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from photoscribe.caption.prompt import (
    KEYWORD_SEPARATOR,
    NO_THINK,
    Prompts,
    instruction_fragments,
    prompts_for,
)
from photoscribe.errors import CaptionRejected

MAX_CAPTION_CHARS = 600

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.IGNORECASE | re.DOTALL)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_SPECIAL_TOKEN = re.compile(r"<\|[^|>]{1,40}\|>|/no_think\b|/think\b")
_COLON = r"[*_]{0,2}\s*[:：]\s*[*_]{0,2}"
_PREFIX = re.compile(
    r"^[*_]{0,2}(?:(?:sure|okay|ok|certainly|of course)[,.!]?\s*)?"
    r"(?:here(?:'s| is) (?:a |the |my |your )?(?:[\w-]+ ){0,3}(?:caption|description)"
    r"[^:：\n]{0,30}"
    r"|(?:photo |image |short |natural )?(?:caption|description|answer|output)"
    r"|(?:图片|照片|图像)?(?:说明|描述|标题|图注|配文))" + _COLON + r"\s*",
    re.IGNORECASE,
)
_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」", "『": "』", "«": "»", "`": "`"}
_EMPHASIS = re.compile(r"(\*\*|__|\*)(\S(?:.*?\S)?)\1")
_HEADING = re.compile(r"^#{1,6}\s+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def strip_reasoning(text: str) -> str:
    """Drop ``<think>`` blocks, text before a lone ``</think>``, and an unclosed ``<think>``."""
    text = _THINK_BLOCK.sub(" ", text)
    parts = _THINK_CLOSE.split(text)
    text = parts[-1]  # a lone </think>: only what follows is the answer
    return _THINK_OPEN.split(text)[0]  # an unclosed <think>: the rest is reasoning


def _unwrap_once(text: str) -> str:
    text = _HEADING.sub("", text).strip()
    text = _PREFIX.sub("", text).strip()
    text = _EMPHASIS.sub(r"\2", text).strip("*_ ")
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text


def clean_reply(text: str | None, reasoning: str | None = None) -> str:
    """The caption in ``text``: reasoning, wrappers and extra whitespace removed.

    ``reasoning`` (a server's separate reasoning field) is never returned; it only serves
    to remove a copy of the reasoning that some servers also put into the content.
    """
    if not text:
        return ""
    text = strip_reasoning(text)
    if reasoning and reasoning.strip():
        text = text.replace(reasoning.strip(), " ")
    text = " ".join(_SPECIAL_TOKEN.sub(" ", text).split())
    previous = None
    while text != previous:
        previous, text = text, _unwrap_once(text)
    return text


def check_caption(
    caption: str,
    *,
    labels: Sequence[str],
    language: str,
    had_reasoning: bool = False,
    prompts: Prompts | None = None,
) -> str:
    """``caption`` if usable; else CaptionRejected saying why."""
    if not caption:
        hint = " (the answer was only in the reasoning field)" if had_reasoning else ""
        raise CaptionRejected(f"the LLM returned an empty caption{hint}")
    if len(caption) > MAX_CAPTION_CHARS:
        raise CaptionRejected(f"the caption is too long ({len(caption)} characters)")
    if _echoes_prompt(caption, labels, prompts or prompts_for(language)):
        raise CaptionRejected(f"the LLM echoed the prompt: {caption[:80]!r}")
    if not _in_language(caption, language):
        raise CaptionRejected(f"the caption is not in the configured language {language}")
    return caption


def _echoes_prompt(caption: str, labels: Sequence[str], prompts: Prompts) -> bool:
    folded = " ".join(caption.split()).casefold()
    if NO_THINK in folded or any(p in folded for p in instruction_fragments(prompts)):
        return True
    keyword_list = KEYWORD_SEPARATOR.join(labels).casefold()
    return len(labels) >= 2 and folded.startswith(keyword_list)


def _in_language(caption: str, language: str) -> bool:
    cjk = len(_CJK.findall(caption))
    letters = sum(ch.isalpha() for ch in caption)
    if language == "zh":
        return cjk >= 2 and cjk >= 0.2 * letters
    latin = len(_LATIN.findall(caption))
    return latin >= 2 and latin >= 0.8 * letters
