"""`photoscribe relabel`: write the indexed photos' keywords again, in today's language.

The index keeps concept ids, not words, so after a change of ``language`` (or of a name in
``tagging.concepts_file``) the keywords are rewritten from the index: no CLIP, no LLM. Each
photo goes through the writer (atomic, journalled for undo); photoscribe's earlier
keywords go, in whatever language they were written, and the user's own stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from photoscribe.records import State, Summary, Tagging
from photoscribe.store import PhotoStore
from photoscribe.store.photos import PhotoRow
from photoscribe.writing import TaggedJob

WRITTEN = (State.DONE, State.NEEDS_CAPTION)  # photos whose keywords photoscribe wrote


def rows_to_relabel(store: PhotoStore, roots: Sequence[Path]) -> list[PhotoRow]:
    """The indexed photos among ``roots`` (files or folders; none: all) with keywords."""
    rows: dict[int, PhotoRow] = {}
    for root in roots or [Path("/")]:
        root = root.absolute()
        one = store.by_path(root)
        for row in [one] if one is not None else store.rows_under(root):
            rows[row.id] = row
    return [r for r in rows.values() if r.state in WRITTEN and r.content_hash and r.keywords]


def relabel(store: PhotoStore, writer_factory, roots: Sequence[Path]) -> Summary:
    """Queue every photo of ``roots`` for a keyword write from its index row."""
    summary = Summary()

    def report(path: Path, outcome: str, reason: str | None, transient: bool = False) -> None:
        summary.record(path, outcome, reason, transient=transient)

    writer = writer_factory(report)
    try:
        for row in rows_to_relabel(store, roots):
            tagging = Tagging(row.keywords, store.embedding_of(row.id), row.model or "")
            writer.put(TaggedJob(row.path, row.content_hash or "", tagging, row.caption))
    finally:
        writer.close()
    return summary
