"""The concepts photoscribe can tag: ids, CLIP prompts, display names per language, parents.

Loaded from a tab-separated file (the format is in the README, "The vocabulary"): the one
shipped in the package, or ``tagging.labels_file`` (a TSV, or the older plain list of one
label per line), then merged with the user's ``tagging.concepts_file`` (same format, by
id) and ``tagging.disable``. The merged result is checked by the same rules as the shipped
file; a broken file is a ConfigError naming the file, the line and what to fix.
Stdlib only, so `photoscribe labels` and the daemon start stay fast.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from photoscribe.errors import ConfigError

SHIPPED = "data/vocabulary.tsv"
LEGACY_SHIPPED = "data/labels.txt"  # used only while a build has no vocabulary.tsv
ID_PATTERN = re.compile(r"[a-z0-9_]+")
LIST_SEPARATOR = ";"
FORBIDDEN = (",", ";", "|", "\t", "\n", "\r")  # never inside a name, alias or prompt
_FORBIDDEN_RE = re.compile("[" + re.escape("".join(FORBIDDEN)) + "]")
FLAGS = frozenset({"parent_only", "homonym"})
REQUIRED_COLUMNS = ("id", "prompts", "name.en", "name.zh")
BASE_LANGUAGE = "en"


@dataclass(frozen=True)
class Concept:
    id: str
    prompts: tuple[str, ...]  # English, for CLIP; the first is the main one
    names: Mapping[str, str]  # language -> display name
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # language -> synonyms
    parents: tuple[str, ...] = ()  # direct parent ids
    threshold: float | None = None
    group: str | None = None
    parent_only: bool = False
    homonym: bool = False


class Vocabulary:
    """An ordered, immutable set of concepts (checked when built)."""

    def __init__(self, concepts: Iterable[Concept], *, source: str = "vocabulary") -> None:
        self.concepts: tuple[Concept, ...] = tuple(concepts)
        self.source = source
        self._by_id = {c.id: c for c in self.concepts}
        self._ancestors: dict[str, tuple[str, ...]] = {}
        self._lookup: dict[str, list[str]] | None = None

    def __getitem__(self, concept_id: str) -> Concept:
        return self._by_id[concept_id]

    def __contains__(self, concept_id: object) -> bool:
        return concept_id in self._by_id

    def __len__(self) -> int:
        return len(self.concepts)

    def __iter__(self):
        return iter(self.concepts)

    def taggable(self) -> tuple[Concept, ...]:
        """The concepts CLIP may pick (all but parent_only ones)."""
        return tuple(c for c in self.concepts if not c.parent_only)

    def ancestors(self, concept_id: str) -> tuple[str, ...]:
        """Every ancestor id, nearest first (breadth-first), no duplicates."""
        if concept_id not in self._ancestors:
            seen: list[str] = []
            level = list(self[concept_id].parents)
            while level:
                nxt: list[str] = []
                for pid in level:
                    if pid not in seen:
                        seen.append(pid)
                        nxt.extend(self[pid].parents)
                level = nxt
            self._ancestors[concept_id] = tuple(seen)
        return self._ancestors[concept_id]

    def paths(self, concept_id: str) -> list[tuple[str, ...]]:
        """Root-to-concept id chains, one per line of parents."""
        parents = self[concept_id].parents
        if not parents:
            return [(concept_id,)]
        return [(*path, concept_id) for pid in parents for path in self.paths(pid)]

    def name(self, concept_id: str, language: str) -> str:
        names = self[concept_id].names
        return names.get(language) or names[BASE_LANGUAGE]

    def lookup(self, text: str) -> list[str]:
        """Ids whose id, name or alias (any language, case-insensitive) is ``text``."""
        if self._lookup is None:
            table: dict[str, list[str]] = {}
            for c in self.concepts:
                for word in _words_of(c):
                    ids = table.setdefault(_key(word), [])
                    if c.id not in ids:
                        ids.append(c.id)
            self._lookup = table
        return list(self._lookup.get(_key(text), ()))

    def languages(self) -> tuple[str, ...]:
        found = dict.fromkeys(lang for c in self.concepts for lang in c.names)
        return tuple(found)


def _key(text: str) -> str:
    return unicodedata.normalize("NFC", " ".join(text.split())).casefold()


def _words_of(c: Concept) -> list[str]:
    words = [c.id, c.id.replace("_", " "), *c.names.values()]
    return words + [a for group in c.aliases.values() for a in group]


# -- reading files -------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One concept line of a file, as written (empty cells omitted)."""

    where: str  # "FILE:LINE"
    cells: Mapping[str, str]


def read_rows(text: str, name: str) -> list[Row]:
    """The concept lines of a vocabulary TSV; ConfigError for a malformed line."""
    header: list[str] | None = None
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in line.split("\t")]
        where = f"{name}:{number}"
        if header is None:
            header = _header(cells, where)
            continue
        if len(cells) > len(header):
            raise ConfigError(
                f"{where}: {len(cells)} tab-separated cells but the header names "
                f"{len(header)} columns; remove the extra tabs"
            )
        rows.append(Row(where, {k: v for k, v in zip(header, cells, strict=False) if v}))
    if header is None:
        raise ConfigError(f"{name}: no header line; the first line must name the columns (id …)")
    return rows


def _header(cells: list[str], where: str) -> list[str]:
    if "id" not in cells:
        raise ConfigError(
            f"{where}: the header must name the columns, tab-separated, starting with "
            "id (e.g. id, parents, prompts, name.en, name.zh)"
        )
    doubled = sorted({c for c in cells if cells.count(c) > 1})
    if doubled:
        raise ConfigError(f"{where}: column(s) {', '.join(doubled)} named twice")
    unknown = [c for c in cells if c not in _KNOWN and not c.startswith(("name.", "aliases."))]
    if unknown:
        raise ConfigError(
            f"{where}: unknown column(s) {', '.join(unknown)}; the columns are id, parents, "
            "prompts, name.LANG, aliases.LANG, threshold, group, flags"
        )
    return cells


def concept_from_row(row: Row, base: Concept | None = None) -> Concept:
    """A concept from a full line (``base`` None), or ``base`` with the line's cells."""
    cells = row.cells
    cid = cells.get("id", "")
    if not ID_PATTERN.fullmatch(cid):
        raise ConfigError(
            f"{row.where}: id {cid!r} must be lowercase a-z, 0-9 and _ (e.g. golden_retriever)"
        )
    start = base or Concept(cid, (), {})
    names, aliases = dict(start.names), dict(start.aliases)
    for column, value in cells.items():
        if column.startswith("name."):
            names[column[5:]] = value
        elif column.startswith("aliases."):
            aliases[column[8:]] = _list(value)
    flags = set(_list(cells["flags"])) if "flags" in cells else _flags_of(start)
    if flags - FLAGS:
        raise ConfigError(
            f"{row.where}: unknown flag(s) {', '.join(sorted(flags - FLAGS))}; "
            f"use {' or '.join(sorted(FLAGS))}"
        )
    return Concept(
        id=cid,
        prompts=_list(cells["prompts"]) if "prompts" in cells else start.prompts,
        names=MappingProxyType(names),
        aliases=MappingProxyType(aliases),
        parents=_list(cells["parents"]) if "parents" in cells else start.parents,
        threshold=_threshold(row, cells["threshold"]) if "threshold" in cells else start.threshold,
        group=cells.get("group", start.group),
        parent_only="parent_only" in flags,
        homonym="homonym" in flags,
    )


_KNOWN = frozenset({"id", "parents", "prompts", "threshold", "group", "flags"})


def _flags_of(c: Concept) -> set[str]:
    return {f for f, on in (("parent_only", c.parent_only), ("homonym", c.homonym)) if on}


def _list(value: str) -> tuple[str, ...]:
    if LIST_SEPARATOR not in value:
        return (value,)  # cells are stripped already
    return tuple(part for part in map(str.strip, value.split(LIST_SEPARATOR)) if part)


def _threshold(row: Row, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not -1.0 <= number <= 1.0:
        raise ConfigError(
            f"{row.where}: threshold {value!r} must be a cosine between -1 and 1 (e.g. 0.24), "
            "or empty for the default"
        )
    return number


def parse_vocabulary(text: str, name: str) -> list[tuple[str, Concept]]:
    """(where, concept) for each line of a full vocabulary file (not yet checked)."""
    rows = read_rows(text, name)
    if rows:
        missing = [c for c in REQUIRED_COLUMNS if c not in _columns(text)]
        if missing:
            raise ConfigError(f"{name}: the header lacks the column(s) {', '.join(missing)}")
    return [(row.where, concept_from_row(row)) for row in rows]


def _columns(text: str) -> list[str]:
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return [c.strip() for c in line.split("\t")]
    return []


def slug(label: str) -> str:
    """An id for a plain label: "Golden Retriever" → golden_retriever; Chinese → u_<hex>."""
    ascii_part = re.sub(r"[^a-z0-9]+", "_", label.casefold()).strip("_")
    if ascii_part and label.isascii():
        return ascii_part
    digest = "_".join(f"{ord(ch):x}" for ch in label if not ch.isspace())
    return f"u_{digest}"[:120]


def concepts_from_labels(labels: Sequence[str]) -> list[Concept]:
    """The older plain list: each label is a concept with name = prompt = the label."""
    concepts: dict[str, Concept] = {}
    for label in labels:
        clean = " ".join(label.split())
        cid = slug(clean)
        if clean and cid not in concepts:
            concepts[cid] = Concept(
                cid, (clean,), MappingProxyType({"en": clean}), MappingProxyType({})
            )
    return list(concepts.values())


def read_label_lines(text: str) -> list[str]:
    labels = []
    for line in text.splitlines():
        label = line.split("#", 1)[0].strip()
        if label:
            labels.append(label)
    return labels


def is_table(text: str) -> bool:
    """A vocabulary TSV (a header naming id) rather than a plain label list."""
    first = _columns(text)
    return "id" in first and len(first) > 1


# -- checking --------------------------------------------------------------------------
def check(items: Sequence[tuple[str, Concept]], *, en_only: Iterable[str] = ()) -> None:
    """The format's rules; ConfigError naming the line of the first broken concept.

    ``en_only``: ids that need no Chinese name (plain labels, the user's own additions)."""
    en_only = frozenset(en_only)
    seen: dict[str, str] = {}
    for where, c in items:
        if c.id in seen:
            raise ConfigError(f"{where}: id {c.id} is also used at {seen[c.id]}; ids are unique")
        seen[c.id] = where
        _check_one(where, c, c.id not in en_only)
    ids = {c.id for _, c in items}
    for where, c in items:
        missing = [p for p in c.parents if p not in ids]
        if missing:
            raise ConfigError(
                f"{where}: parent(s) {', '.join(missing)} of {c.id} are not in the vocabulary; "
                "add them or fix the parents column"
            )
    _check_cycles(items)
    _check_homonyms(items)


def _check_one(where: str, c: Concept, require_zh: bool) -> None:
    needed = ("en", "zh") if require_zh else ("en",)
    missing = [lang for lang in needed if not c.names.get(lang)]
    if missing:
        raise ConfigError(
            f"{where}: {c.id} has no name.{missing[0]}; every concept needs a display name "
            f"in {' and '.join(needed)}"
        )
    if not c.prompts and not c.parent_only:
        raise ConfigError(
            f"{where}: {c.id} has no prompts; give CLIP an English prompt or flag it parent_only"
        )
    words = [*c.prompts, *c.names.values(), *(a for g in c.aliases.values() for a in g)]
    for word in words:
        found = _FORBIDDEN_RE.search(word)
        if found is not None or not word.isprintable():
            shown = repr(found.group()) if found else "a control character"
            raise ConfigError(
                f"{where}: {word!r} of {c.id} contains {shown}; names, aliases and prompts "
                "may not contain , ; | tabs or control characters"
            )


def _check_cycles(items: Sequence[tuple[str, Concept]]) -> None:
    parents = {c.id: c.parents for _, c in items}
    where = {c.id: w for w, c in items}
    state: dict[str, int] = {}  # 1: on the current chain, 2: done
    for start in parents:
        stack = [(start, iter(parents[start]))]
        state[start] = state.get(start, 0) or 1
        if state[start] == 2:
            continue
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                chain = [n for n, _ in stack] + [child]
                chain = chain[chain.index(child) :]
                raise ConfigError(
                    f"{where[child]}: the parents form a cycle ({' → '.join(chain)}); "
                    "a concept cannot be its own ancestor"
                )
            elif state.get(child) is None:
                state[child] = 1
                stack.append((child, iter(parents[child])))


def _check_homonyms(items: Sequence[tuple[str, Concept]]) -> None:
    first: dict[tuple[str, str], tuple[str, Concept]] = {}
    for where, c in items:
        for lang, name in c.names.items():
            key = (lang, _key(name))
            if key not in first:
                first[key] = (where, c)
                continue
            other_where, other = first[key]
            if not (c.homonym and other.homonym):
                raise ConfigError(
                    f"{where}: name.{lang} {name!r} of {c.id} is also the name of {other.id} "
                    f"({other_where}); rename one or flag both homonym"
                )


# -- loading -------------------------------------------------------------------------------
def _read(path: Path, key: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {key} {path}: {exc}") from exc


def shipped_text() -> tuple[str, str]:
    """(text, name) of the vocabulary in the package."""
    files = resources.files("photoscribe")
    table = files.joinpath(SHIPPED)
    if table.is_file():
        return table.read_text("utf-8"), SHIPPED
    return files.joinpath(LEGACY_SHIPPED).read_text("utf-8"), LEGACY_SHIPPED


def base_items(text: str, name: str) -> tuple[list[tuple[str, Concept]], bool]:
    """The concepts of a base file and whether it is a full table (vs a label list)."""
    if is_table(text):
        return parse_vocabulary(text, name), True
    concepts = concepts_from_labels(read_label_lines(text))
    return [(f"{name}:{c.id}", c) for c in concepts], False


def apply_overrides(
    items: list[tuple[str, Concept]], text: str, name: str
) -> list[tuple[str, Concept]]:
    """Merge a user's file by id: a known id takes the line's non-empty cells, a new id
    is added (and needs the required columns)."""
    index = {c.id: i for i, (_, c) in enumerate(items)}
    merged = list(items)
    for row in read_rows(text, name):
        cid = row.cells.get("id", "")
        if cid in index:
            _, old = merged[index[cid]]
            merged[index[cid]] = (row.where, concept_from_row(row, old))
            continue
        missing = [c for c in REQUIRED_COLUMNS if c not in row.cells and c != "name.zh"]
        if missing:
            raise ConfigError(
                f"{row.where}: {cid or '(no id)'} is not in the vocabulary, so this line adds "
                f"it and needs {', '.join(missing)} (or fix the id to override an existing one)"
            )
        index[cid] = len(merged)
        merged.append((row.where, concept_from_row(row)))
    return merged


def disable(items: list[tuple[str, Concept]], ids: Sequence[str]) -> list[tuple[str, Concept]]:
    """Without the ``ids`` (tagging.disable); a parent that is disabled stays as a parent
    only (its children keep their paths)."""
    known = {c.id for _, c in items}
    unknown = [cid for cid in ids if cid not in known]
    if unknown:
        raise ConfigError(
            f"tagging.disable: {', '.join(unknown)} not in the vocabulary; "
            "`photoscribe labels` lists the ids"
        )
    parents = {p for _, c in items for p in c.parents}
    off = set(ids)
    kept = []
    for where, c in items:
        if c.id not in off:
            kept.append((where, c))
        elif c.id in parents:
            kept.append((where, replace(c, parent_only=True)))
    return kept


def load_vocabulary(
    labels_file: Path | None = None,
    concepts_file: Path | None = None,
    disabled: Sequence[str] = (),
    extra_labels: Sequence[str] = (),
) -> Vocabulary:
    """The vocabulary the tagger uses: base (shipped or labels_file), the user's overrides,
    extra labels, without the disabled ids; checked."""
    if labels_file is not None:
        text, name = _read(labels_file, "tagging.labels_file"), str(labels_file)
    else:
        text, name = shipped_text()
    items, full = base_items(text, name)
    # A table's concepts need en and zh names; plain labels and the user's additions en only.
    tabled = {c.id for _, c in items} if full else set()
    if concepts_file is not None:
        user_text = _read(concepts_file, "tagging.concepts_file")
        items = apply_overrides(items, user_text, str(concepts_file))
    if extra_labels:
        known = {c.id for _, c in items}
        extra = [c for c in concepts_from_labels(extra_labels) if c.id not in known]
        items += [(f"tagging.extra_labels[{c.id}]", c) for c in extra]
    items = disable(items, disabled)
    check(items, en_only={c.id for _, c in items} - tabled)
    if not any(not c.parent_only for _, c in items):
        raise ConfigError(f"the vocabulary ({name}) is empty; add concepts or labels to it")
    return Vocabulary((c for _, c in items), source=name)


def vocabulary_for(cfg) -> Vocabulary:
    """The vocabulary of a TaggingConfig."""
    return load_vocabulary(
        cfg.labels_file,
        getattr(cfg, "concepts_file", None),
        getattr(cfg, "disable", ()),
        cfg.extra_labels,
    )
