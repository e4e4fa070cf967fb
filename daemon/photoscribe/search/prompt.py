"""A search text → what the CLIP text tower is given.

OpenCLIP's usual text towers read English only: a Chinese query such as 狗在海边 would be
encoded as tokens the model never learnt and rank photos at random. So each run of Chinese
(or other CJK) characters is read with the vocabulary's names and aliases in every
language, longest word first (狗 → dog, 海边 → beach), and given to CLIP as those concepts'
English prompts ("a dog, a sandy beach"); English words stay as typed. Characters no
concept names (在, 的) are left out. A query of which nothing can be read this way gets no
CLIP ranking (its full-text ranking stands alone) rather than a random one.

With ``search.translate_queries``, a query holding CJK is first given to the configured LLM
for an English phrase (search.translate, cached); the vocabulary's reading is the fallback.
A multilingual text tower (open_clip ``xlm-roberta-base-ViT-B-32`` and the like) reads the
query as typed.
"""

from __future__ import annotations

from collections.abc import Callable

from photoscribe.segment import CJK_RUN
from photoscribe.vision.vocabulary import Vocabulary

MULTILINGUAL_ARCHS = ("xlm-roberta", "nllb-clip", "mt5")  # text towers trained beyond English


def reads_every_language(arch: str) -> bool:
    """Whether the open_clip architecture's text tower was trained on many languages."""
    return arch.lower().startswith(MULTILINGUAL_ARCHS)


class ClipPrompt:
    """``(search text) → CLIP text or None`` for an English text tower."""

    def __init__(
        self,
        vocabulary: Callable[[], Vocabulary],
        translate: Callable[[str], str | None] | None = None,
    ) -> None:
        self._vocabulary = vocabulary  # loaded on the first CJK query only
        self._translate = translate  # e.g. search.translate.QueryTranslator
        self._words: dict[str, str] | None = None
        self._longest = 1

    def __call__(self, text: str) -> str | None:
        if self._translate is not None and CJK_RUN.search(text):
            english = self._translate(text)
            if english:
                return english
        parts: list[str] = []
        last = 0
        for run in CJK_RUN.finditer(text):
            parts += _english_words(text[last : run.start()])
            parts += self.concepts_in(run.group())
            last = run.end()
        parts += _english_words(text[last:])
        unique = list(dict.fromkeys(parts))
        return ", ".join(unique) or None

    def concepts_in(self, run: str) -> list[str]:
        """The English prompts of the concepts named in a CJK run, in order."""
        words = self._table()
        found: list[str] = []
        i = 0
        while i < len(run):
            for size in range(min(self._longest, len(run) - i), 0, -1):
                prompt = words.get(run[i : i + size])
                if prompt is not None:
                    found.append(prompt)
                    i += size
                    break
            else:
                i += 1  # a character no concept names (在, 的, 了)
        return found

    def _table(self) -> dict[str, str]:
        """Every non-English name and alias → the main prompt of its first concept."""
        if self._words is None:
            table: dict[str, str] = {}
            for concept in self._vocabulary():
                names = [n for lang, n in concept.names.items() if lang != "en"]
                names += [a for lang, al in concept.aliases.items() if lang != "en" for a in al]
                for name in names:
                    if CJK_RUN.fullmatch(name):
                        table.setdefault(name, concept.prompts[0])
            self._words = table
            self._longest = max(map(len, table), default=1)
        return self._words


def _english_words(text: str) -> list[str]:
    text = " ".join(text.split())
    return [text] if any(ch.isalnum() for ch in text) else []
