"""Small immutable records passed between layers (stdlib only)."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class State(enum.StrEnum):
    """Where a photo stands in the index."""

    DONE = "done"  # keywords and caption written
    NEEDS_CAPTION = "needs_caption"  # keywords written; caption waits for the LLM
    FAILED = "failed"  # a recorded reason; transient ones are retried, others when the file
    #                    changes
    UNDONE = "undone"  # `photoscribe undo` took photoscribe's metadata back; left alone


@dataclass(frozen=True)
class FileStat:
    """What identifies one version of a file on disk."""

    size: int
    mtime_ns: int
    dev: int
    ino: int


@dataclass(frozen=True)
class Keyword:
    """One keyword the tagger chose: a concept id of the vocabulary and its score. (Rows
    indexed before concept ids hold the English word instead; keywording maps it back.)"""

    label: str  # the concept id
    score: float

    @property
    def concept(self) -> str:
        return self.label


@dataclass(frozen=True)
class Tagging:
    """What the CLIP stage learned about one photo."""

    keywords: tuple[Keyword, ...]
    embedding: bytes  # L2-normalised float16, little-endian
    model: str  # model id the embedding belongs to


@dataclass(frozen=True)
class Annotation:
    """What photoscribe writes into one photo."""

    keywords: tuple[str, ...]  # flat words, in the configured language(s)
    description: str | None  # None: leave the description as it is
    model: str
    content_hash: str
    # Hierarchical keywords ("animal|dog"), without metadata.keyword_root; None: each flat
    # word becomes a top-level path
    paths: tuple[str, ...] | None = None
    concepts: tuple[str, ...] = ()  # the concept ids the words stand for (recorded)


@dataclass(frozen=True)
class PhotoFacts:
    """What a photo's own metadata says, kept for search filters (all optional)."""

    date_taken: str | None = None  # 'YYYY-MM-DDTHH:MM'
    camera: str | None = None
    place: str | None = None


@dataclass(frozen=True)
class WriteOutcome:
    changed: bool  # False when the file already held exactly this
    stat: FileStat | None  # the file's identity after the write (None in dry runs)
    keywords: tuple[str, ...]  # all keywords in the file after the write
    description: str | None  # the description in the file after the write
    # (file written, {exiv2 key: (value before, value after)}): the photo or its sidecar(s);
    # in a dry run, what would be written
    changes: tuple[tuple[Path, dict[str, tuple[Any, Any]]], ...] = ()
    # the photo's date taken, camera and place as the write read them (None: not read,
    # e.g. only a sidecar was opened)
    facts: PhotoFacts | None = None


REJECTED = "caption rejected:"  # how the caption stage's reasons for rejected replies start


@dataclass
class Summary:
    """Counts and reasons at the end of a scan."""

    tagged: int = 0  # keywords (and maybe a caption) written in this run
    skipped: int = 0  # unchanged since the last run, moved, or failed before
    failed: int = 0
    transient: int = 0  # of the failed: may pass by itself (disk full, ...); tried again
    adopted: int = 0  # of the skipped: the file already held photoscribe's write (indexed)
    captioned: int = 0  # captions written in this run
    waiting: int = 0  # photos of this run still waiting for a caption at the end
    failures: list[tuple[Path, str]] = field(default_factory=list)
    passing: set[Path] = field(default_factory=set)  # the failed paths that count as transient
    captions_off: str | None = None  # why no caption was asked for ("llm.enabled: false")
    # the index's reason for each waiting photo (None: not asked, e.g. the LLM was down)
    waiting_reasons: list[str | None] = field(default_factory=list)
    nodes: dict[str, int] = field(default_factory=dict)  # cluster scan: photos each node read
    cluster_seconds: float = 0.0  # cluster scan: how long the cluster's stages ran

    def rejections(self) -> Counter[str]:
        """Why the LLM's replies for waiting photos were rejected: reason → photos."""
        return Counter(
            r.removeprefix(REJECTED).strip()
            for r in self.waiting_reasons
            if r and r.startswith(REJECTED)
        )

    def fail(self, path: Path, reason: str, *, transient: bool = False) -> None:
        self.failed += 1
        self.transient += transient
        self.failures.append((path, reason))
        if transient:
            self.passing.add(path)

    def record(
        self, path: Path, outcome: str, reason: str | None, *, transient: bool = False
    ) -> None:
        """Count one outcome: tagged, tagged+caption, captioned, adopted, skipped or failed."""
        if outcome == "failed":
            self.fail(path, reason or "unknown error", transient=transient)
        elif outcome == "adopted":
            self.skipped += 1
            self.adopted += 1
        elif outcome in ("tagged", "tagged+caption"):
            self.tagged += 1
            self.captioned += outcome == "tagged+caption"
        elif outcome == "captioned":
            self.captioned += 1
        elif outcome == "skipped":
            self.skipped += 1
