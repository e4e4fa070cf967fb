"""Read what a photo holds; write an annotation into it atomically, pixels untouched."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import photoscribe
from photoscribe.config import MetadataConfig
from photoscribe.contenthash import content_hash, sniff_format
from photoscribe.errors import DecodeError, MetadataError, PhotoChangedError
from photoscribe.fsutil import atomic_replace, display, file_stat, read_photo, write_error
from photoscribe.metadata import backend, webp
from photoscribe.metadata.fields import EXIF_IFD0_REQUIRED, WRITABLE_SCHEMAS, tag
from photoscribe.metadata.merge import Existing, Plan, exif_can_move, existing_from, plan
from photoscribe.metadata.packets import tiff_ifd0_sound, xmp_packets
from photoscribe.records import Annotation, FileStat, PhotoFacts, WriteOutcome

FORMAT_NAMES = {"heif": "HEIF/AVIF"}
Change = tuple[Any, Any]  # (value before, value after); None: the tag is absent
Journal = Callable[[Path, dict[str, Change]], None]
FactsOf = Callable[[Mapping[str, Any]], PhotoFacts]  # exiv2 values → facts (search.facts)


def read_existing(data: bytes) -> Existing:
    """The description and keywords the photo in ``data`` holds now."""
    with backend.opened(data, "the photo") as photo:
        return existing_from(photo.snapshot().values)


def write_annotation(
    path: Path,
    ann: Annotation,
    *,
    expected_hash: str,
    config: MetadataConfig | None = None,
    dry_run: bool = False,
    journal: Journal | None = None,
    facts: FactsOf | None = None,
) -> WriteOutcome:
    """Merge ``ann`` into the photo at ``path`` and replace the file atomically.

    ``journal(file, changes)`` is told what each changed tag held before and holds after,
    right before the file is replaced (so that `photoscribe undo` can take it back).
    ``facts``: the outcome carries ``facts(values)`` of the metadata the write read (date
    taken, camera, place; a write changes none of them), so nobody parses the file again.

    ``config`` (the ``metadata:`` settings) decides whether a user's description is
    overwritten and under which root the keyword paths go. Raises PhotoChangedError
    when the photo is not the one that was tagged (``expected_hash``) or changes
    meanwhile, DecodeError when it is no readable image, MetadataError when its
    metadata cannot be written. The file is untouched whenever an error is raised,
    and when nothing would change (``changed=False``).
    """
    where = display(path)
    config = config or MetadataConfig()
    before, data = _read(path, where)
    fmt = _writable_format(data, expected_hash, where)
    with backend.opened(data, where) as photo:
        snapshot = photo.snapshot()
        result = plan(
            snapshot.values,
            snapshot.latin1,
            ann,
            schemas=_schemas(fmt, snapshot.values, where),
            options=config,
            provenance=provenance(),
            exif_required=EXIF_IFD0_REQUIRED.get(fmt),
        )
        found = facts(snapshot.values) if facts is not None and not dry_run else None
        if not result.changes or dry_run:
            planned = before_after(snapshot.values, result.changes)
            stat = None if dry_run else before
            return outcome(
                result,
                changed=bool(result.changes),
                stat=stat,
                changes=((path, planned),),
                facts=found,
            )
        new_data = photo.rewrite(result.changes)
    _check_pixels_kept(new_data, expected_hash, where)
    _check_one_packet(new_data, fmt, where)
    changes = written_changes(snapshot.values, new_data, result.changes, where)
    _check_stored(changes, result.changes, where)
    changes.update(webp.layout_change(data, new_data))  # undo gives a simple WebP back
    if journal is not None:
        journal(path, changes)
    try:
        stat = atomic_replace(path, new_data, before, keep_mtime=config.keep_mtime)
    except OSError as exc:
        raise MetadataError(write_error(path, exc)) from exc
    return outcome(result, changed=True, stat=stat, changes=((path, changes),), facts=found)


def _read(path: Path, where: str) -> tuple[FileStat, bytes]:
    """The file's identity, then its bytes; PhotoChangedError if they disagree."""
    try:
        before = file_stat(path)
        data = read_photo(path)
    except FileNotFoundError as exc:
        raise PhotoChangedError(f"{where} disappeared before its metadata was written") from exc
    except OSError as exc:
        raise MetadataError(f"cannot read {where}: {exc.strerror or exc}") from exc
    if len(data) != before.size:
        raise PhotoChangedError(f"{where} is being changed by another program; retry later")
    return before, data


def _writable_format(data: bytes, expected_hash: str, where: str) -> str:
    """The container of ``data`` after checking it is the tagged photo and writable."""
    fmt = sniff_format(data)
    if fmt == "heif":
        raise MetadataError(
            f"{where}: metadata cannot be written into HEIF/AVIF files (read-only in exiv2)"
        )
    try:
        digest = content_hash(data)
    except DecodeError as exc:
        raise DecodeError(f"{where}: {exc}") from exc
    if fmt not in WRITABLE_SCHEMAS:
        raise MetadataError(
            f"{where}: metadata can only be written into JPEG, PNG, TIFF and WebP files"
        )
    if fmt != "tiff" and not digest.startswith(f"{fmt}:"):
        raise MetadataError(f"{where}: the {fmt.upper()} structure is damaged; not writing")
    if digest != expected_hash:
        raise PhotoChangedError(
            f"{where}: the image changed since it was tagged; it will be tagged again"
        )
    return fmt


def _schemas(fmt: str, values: Mapping[str, object], where: str) -> frozenset[str]:
    """What to write into this photo. A maker note that would break when moved keeps the
    EXIF block as it is (a JPEG's XMP and IPTC are separate segments; in a TIFF every write
    lays out IFD0 anew, so nothing can be written)."""
    if exif_can_move(values):
        return WRITABLE_SCHEMAS[fmt]
    if fmt == "tiff":
        raise MetadataError(
            f"{where}: its camera maker note uses absolute offsets that rewriting the TIFF "
            "would break; not writing (use an XMP sidecar)"
        )
    return WRITABLE_SCHEMAS[fmt] - {"exif"}


def _check_pixels_kept(new_data: bytes, expected_hash: str, where: str) -> None:
    try:
        digest = content_hash(new_data)
    except DecodeError as exc:
        raise MetadataError(f"{where}: writing metadata would damage the image: {exc}") from exc
    if digest != expected_hash:
        raise MetadataError(f"{where}: writing metadata would change the image data; not writing")


def _check_one_packet(new_data: bytes, fmt: str, where: str) -> None:
    if fmt == "tiff" and not tiff_ifd0_sound(new_data):
        raise MetadataError(
            f"{where}: its TIFF directory holds an entry of no valid type, so other programs "
            "would not read the metadata; not writing (use sidecars: metadata.mode: sidecar)"
        )
    if xmp_packets(new_data, fmt) > 1:
        raise MetadataError(
            f"{where} holds a second (or damaged) XMP packet, and programs disagree about "
            "which one counts; not writing (remove the extra packet with your photo tool, or "
            "use sidecars: metadata.mode: sidecar)"
        )


def _check_stored(changes: Mapping[str, Change], wanted: Mapping[str, Any], where: str) -> None:
    """photoscribe's record reads back from the new bytes (exiv2 may "succeed" without
    storing anything in a file whose structure it does not follow, e.g. a PNG without IHDR)."""
    for name in ("content_hash", "model"):
        key = tag(name).key
        if key in wanted and changes[key][1] != wanted[key]:
            raise MetadataError(
                f"{where}: its structure is damaged, so the metadata would not be stored; "
                "not writing"
            )


def provenance() -> dict[str, str]:
    """Written along with every change, never a reason to write by itself."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"version": photoscribe.__version__, "time": now}


def before_after(values: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Change]:
    return {key: (values.get(key), value) for key, value in changes.items()}


def written_changes(
    values: Mapping[str, Any],
    new_data: bytes,
    changes: Mapping[str, Any],
    where: str,
    *,
    sidecar: bool = False,
) -> dict[str, Change]:
    """Each changed tag's value before and, as exiv2 reads it back, after the write."""
    with backend.opened(new_data, where, sidecar=sidecar) as written:
        after = written.snapshot().values
    return {key: (values.get(key), after.get(key)) for key in changes}


def outcome(
    result: Plan,
    *,
    changed: bool,
    stat: FileStat | None,
    changes: tuple[tuple[Path, dict[str, Change]], ...] = (),
    facts: PhotoFacts | None = None,
) -> WriteOutcome:
    return WriteOutcome(
        changed=changed,
        stat=stat,
        keywords=result.keywords,
        description=result.description,
        changes=changes if changed else (),
        facts=facts,
    )
