"""Per-concept thresholds fitted on photos the user already keyworded.

The keywords a user put on their photos (IPTC/XMP, any language) are mapped to concepts by
name or alias; each concept's cosine threshold is then the cut that best separates the
photos carrying it from the other keyworded photos (best F1 on those photos). The result
is a small tab-separated file that ``tagging.thresholds_file`` points at:

    # photoscribe thresholds (photoscribe labels calibrate)
    # concept<TAB>threshold<TAB>positives<TAB>negatives
    dog	0.2731	41	380

Only concepts with enough examples on both sides are fitted; the others keep the
vocabulary's threshold or the rule's default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photoscribe.errors import ConfigError

HEADER = "# photoscribe thresholds (photoscribe labels calibrate)\n"
COLUMNS = "# concept\tthreshold\tpositives\tnegatives\n"
MIN_EXAMPLES = 3  # of each side, for a concept to be fitted


@dataclass(frozen=True)
class Fit:
    concept: str
    threshold: float
    positives: int
    negatives: int
    precision: float  # on the photos it was fitted on
    recall: float


def read_thresholds(path: Path) -> dict[str, float]:
    """{concept id: threshold} from a thresholds file; a bad line is an error naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read tagging.thresholds_file {path}: {exc}") from exc
    out: dict[str, float] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        try:
            value = float(fields[1])
        except (IndexError, ValueError):
            value = math.nan
        if not fields[0].strip() or not -1 <= value <= 1:
            raise ConfigError(
                f"{path} line {number}: expected 'concept<TAB>threshold' with a threshold "
                f"from -1 to 1, got {line!r}; fix the line or run photoscribe labels "
                "calibrate again"
            )
        out[fields[0].strip()] = value
    return out


def write_thresholds(path: Path, fits: Iterable[Fit]) -> None:
    """Write atomically (a temporary file renamed over the old one)."""
    lines = [HEADER, COLUMNS]
    lines += [f"{f.concept}\t{f.threshold:.4f}\t{f.positives}\t{f.negatives}\n" for f in fits]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def fit_thresholds(
    sims: np.ndarray, truth: np.ndarray, ids: Sequence[str], min_examples: int = MIN_EXAMPLES
) -> list[Fit]:
    """Per concept (column), the cosine cut with the best F1 on these photos.

    ``sims``: (photos × concepts) cosines; ``truth``: (photos × concepts) bool, True where
    the user's keywords name the concept (or a descendant of it).
    """
    fits = []
    for col, concept in enumerate(ids):
        pos = int(truth[:, col].sum())
        neg = len(truth) - pos
        if pos >= min_examples and neg >= min_examples:
            fits.append(_fit_one(sims[:, col], truth[:, col], concept))
    return fits


def _fit_one(scores: np.ndarray, truth: np.ndarray, concept: str) -> Fit:
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order].astype(np.float64), truth[order]
    tp = np.cumsum(t)
    fp = np.cumsum(~t)
    f1 = 2 * tp / (tp + fp + t.sum())  # keeping the first k+1 photos
    distinct = np.r_[s[:-1] > s[1:], True]  # a cut can only fall between different scores
    k = int(np.argmax(np.where(distinct, f1, -1.0)))
    threshold = (s[k] + s[k + 1]) / 2 if k + 1 < len(s) else s[k] - 1e-4
    return Fit(
        concept=concept,
        threshold=float(threshold),
        positives=int(t.sum()),
        negatives=int((~t).sum()),
        precision=float(tp[k] / (k + 1)),
        recall=float(tp[k] / t.sum()),
    )


def concepts_named(
    keywords: Iterable[str],
    lookup: Callable[[str], Sequence[str]],
    ancestors: Callable[[str], Sequence[str]],
) -> set[str]:
    """The concepts a photo's keywords name (names and aliases, any language), with their
    ancestors; a "path|like|this" keyword names its last part."""
    found: set[str] = set()
    for word in keywords:
        for part in {word.strip(), word.split("|")[-1].strip()}:
            for cid in lookup(part):
                found.add(cid)
                found.update(ancestors(cid))
    return found


def truth_matrix(named: Sequence[set[str]], ids: Sequence[str]) -> np.ndarray:
    column = {cid: i for i, cid in enumerate(ids)}
    truth = np.zeros((len(named), len(ids)), dtype=bool)
    for row, concepts in enumerate(named):
        truth[row, [column[c] for c in concepts if c in column]] = True
    return truth


def format_fits(fits: Sequence[Fit], name: Callable[[str], str] = str) -> str:
    """The table ``photoscribe labels calibrate`` prints."""
    rows = [f"{'concept':24} {'threshold':>9} {'photos':>7} {'others':>7} {'P':>5} {'R':>5}"]
    rows += [
        f"{name(f.concept)[:24]:24} {f.threshold:9.4f} {f.positives:7d} {f.negatives:7d} "
        f"{f.precision:5.2f} {f.recall:5.2f}"
        for f in fits
    ]
    return "\n".join(rows)


# --- Reading a keyworded folder ---------------------------------------------------------------


@dataclass(frozen=True)
class Examples:
    """The keyworded photos of a folder, as the fit needs them."""

    paths: list[Path]
    embeddings: np.ndarray  # (photos × dim) float32, L2-normalised
    named: list[set[str]]  # concept ids each photo's user keywords name (with ancestors)
    unmatched: dict[str, int]  # user keywords that name no concept → photos


def photos_under(folder: Path) -> list[Path]:
    from photoscribe.formats import PHOTO_EXTENSIONS

    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in PHOTO_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def user_keywords(data: bytes) -> list[str]:
    """The keywords (flat and hierarchical) the user wrote, photoscribe's own left out."""
    from photoscribe.metadata import read_existing

    existing = read_existing(data)
    ours = {k.casefold() for k in (*existing.ours, *existing.our_hierarchy)}
    words = [*existing.keywords, *existing.hierarchy]
    return [w for w in words if w.casefold() not in ours]


def collect(
    folder: Path,
    embed: Callable[[list[tuple[Path, bytes]]], np.ndarray],
    lookup: Callable[[str], Sequence[str]],
    ancestors: Callable[[str], Sequence[str]],
    stored: Callable[[Path, bytes], np.ndarray | None] = lambda path, data: None,
) -> Examples:
    """Photos under ``folder`` whose keywords name at least one concept.

    ``stored(path, data)``: the embedding the index already holds for the photo (or None);
    ``embed([(path, data)])``: embeddings computed for the others.
    """
    from photoscribe.errors import MetadataError

    paths, named, rows, todo, unmatched = [], [], [], [], {}
    for path in photos_under(folder):
        data = path.read_bytes()
        try:
            words = user_keywords(data)
        except MetadataError:
            continue  # unreadable metadata: not an example
        concepts = concepts_named(words, lookup, ancestors)
        for word in words:
            if not lookup(word.split("|")[-1].strip()):
                unmatched[word] = unmatched.get(word, 0) + 1
        if not concepts:
            continue
        paths.append(path)
        named.append(concepts)
        rows.append(stored(path, data))
        if rows[-1] is None:
            todo.append(len(rows) - 1)
    if todo:
        fresh = embed([(paths[i], paths[i].read_bytes()) for i in todo])
        for i, vector in zip(todo, fresh, strict=True):
            rows[i] = vector
    dim = len(rows[0]) if rows else 0
    matrix = np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    return Examples(paths, matrix, named, unmatched)


# --- `photoscribe labels calibrate FOLDER [--output FILE]` -------------------------------------


def cmd_calibrate(config, args) -> int:
    from photoscribe.config import decode_workers
    from photoscribe.service import build_tagger

    if not args.folder.is_dir():
        raise ConfigError(f"{args.folder} is not a folder; give the folder of keyworded photos")
    tagger = build_tagger(config)
    vocabulary = tagger.vocabulary
    examples = collect(
        args.folder,
        lambda items: embed_photos(tagger.encoder, items, decode_workers(config)),
        vocabulary.lookup,
        vocabulary.ancestors,
        stored_embeddings(config, tagger.encoder.model_id),
    )
    if not examples.paths:
        raise ConfigError(
            f"no photo under {args.folder} carries a keyword that names a concept; "
            "`photoscribe labels` lists the names and aliases it knows"
        )
    sims = examples.embeddings @ tagger.label_matrix().T
    fits = fit_thresholds(sims, truth_matrix(examples.named, tagger.labels), tagger.labels)
    output = args.output or config.tagging.thresholds_file or config.cache_dir / "thresholds.tsv"
    write_thresholds(output, fits)
    print(format_fits(fits))
    print(
        f"\n{len(fits)} thresholds from {len(examples.paths)} keyworded photos written to {output}"
    )
    if examples.unmatched:
        common = sorted(examples.unmatched.items(), key=lambda kv: -kv[1])[:10]
        print("keywords naming no concept: " + ", ".join(f"{w} ({n})" for w, n in common))
    if config.tagging.thresholds_file != output:
        print(f"to use them, set in the config:\n  tagging:\n    thresholds_file: {output}")
    return 0


def embed_photos(encoder, items: list[tuple[Path, bytes]], workers: int = 2) -> np.ndarray:
    """Image embeddings of photos (decoded and preprocessed like a scan does)."""
    from photoscribe.formats import needs_sidecar
    from photoscribe.vision.loader import prepare

    preprocess, side = encoder.preprocess(), encoder.input_size()
    out = []
    for start in range(0, len(items), 16):
        tensors = [
            prepare(data, preprocess, side, raw=needs_sidecar(path))
            for path, data in items[start : start + 16]
        ]
        out.append(encoder.encode_images(tensors))
    return np.concatenate(out)


def stored_embeddings(config, model_id: str) -> Callable[[Path, bytes], np.ndarray | None]:
    """Looks photos up in the index: the stored embedding when the file is unchanged."""
    if not config.index_path.exists():
        return lambda path, data: None
    from photoscribe.store import open_store

    store = open_store(config.index_path, readonly=True)

    def stored(path: Path, data: bytes) -> np.ndarray | None:
        row = store.by_path(path.resolve())
        st = path.stat()
        if (
            row is None
            or row.model != model_id
            or (row.size, row.mtime_ns)
            != (
                st.st_size,
                st.st_mtime_ns,
            )
        ):
            return None
        blob = store.embedding_of(row.id)
        if not blob:
            return None
        vector = np.frombuffer(blob, dtype="<f2").astype(np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)

    return stored


# --- Measuring keywords against trusted ones ---------------------------------------------------


@dataclass(frozen=True)
class Scores:
    precision: float  # over all keywords given (micro average)
    recall: float  # over all true keywords
    per_concept: dict[str, tuple[float, float, int]]  # id → (precision, recall, true photos)


def score_keywords(predicted: Sequence[set[str]], truth: Sequence[set[str]]) -> Scores:
    """Precision and recall of predicted keyword sets against trusted ones, per photo."""
    tp: dict[str, int] = {}
    fp: dict[str, int] = {}
    fn: dict[str, int] = {}
    for said, true in zip(predicted, truth, strict=True):
        for c in said & true:
            tp[c] = tp.get(c, 0) + 1
        for c in said - true:
            fp[c] = fp.get(c, 0) + 1
        for c in true - said:
            fn[c] = fn.get(c, 0) + 1
    t, f, n = sum(tp.values()), sum(fp.values()), sum(fn.values())
    per = {
        c: (
            tp.get(c, 0) / max(1, tp.get(c, 0) + fp.get(c, 0)),
            tp.get(c, 0) / max(1, tp.get(c, 0) + fn.get(c, 0)),
            tp.get(c, 0) + fn.get(c, 0),
        )
        for c in sorted({*tp, *fp, *fn})
    }
    return Scores(t / max(1, t + f), t / max(1, t + n), per)
