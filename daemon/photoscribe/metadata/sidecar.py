"""XMP sidecars: ``NAME.EXT.xmp`` beside photos that must not (or cannot) change.

An existing sidecar is merged into, never replaced: everything else in it (darktable's
edit history, Lightroom's develop settings, other tools' tags) is kept, because the
packet is parsed and re-serialised by exiv2 with only photoscribe's tags changed. A new
sidecar is created next to the photo without ever overwriting one that appears
meanwhile. The photo itself is only read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

from photoscribe.config import MetadataConfig
from photoscribe.contenthash import sniff_format
from photoscribe.errors import MetadataError, NotWritableError, PhotoChangedError
from photoscribe.formats import lightroom_sidecar_path, needs_sidecar, sidecar_path
from photoscribe.fsutil import (
    NAME_MAX,
    atomic_replace,
    create_temp,
    display,
    file_stat,
    fsync_dir,
    stat_or_none,
    write_all,
    write_error,
)
from photoscribe.metadata import backend
from photoscribe.metadata.merge import existing_from, plan
from photoscribe.metadata.writer import (
    Change,
    FactsOf,
    Journal,
    before_after,
    outcome,
    provenance,
    written_changes,
)
from photoscribe.records import Annotation, FileStat, WriteOutcome

SIDECAR_SCHEMAS = frozenset({"xmp"})
EMPTY_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
    ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/>\n'
    "</x:xmpmeta>\n"
    '<?xpacket end="w"?>\n'
).encode()


def wants_sidecar(path: Path, config: MetadataConfig) -> bool:
    """Whether ``path``'s annotation goes to a sidecar instead of into the file."""
    if needs_sidecar(path) or _heif_inside(path):
        if config.mode == "embed":
            raise MetadataError(
                f"{display(path)}: RAW and HEIF/AVIF files are never written into; "
                "set metadata.mode to auto or sidecar to get an XMP sidecar"
            )
        return True
    if config.mode == "sidecar":
        return True
    return config.mode == "auto" and (_read_only(path) or _read_only(path.parent))


def _heif_inside(path: Path) -> bool:
    """A HEIC/AVIF under another name (e.g. IMG_1234.jpg exported by a phone app)."""
    try:
        with open(path, "rb") as f:
            return sniff_format(f.read(16)) == "heif"
    except OSError:
        return False


def _read_only(path: Path) -> bool:
    """A file or folder without any write permission bit (what its owner means, even when
    photoscribe runs as root), or one this process may not write."""
    try:
        return not (path.stat().st_mode & 0o222) or not os.access(path, os.W_OK)
    except OSError:
        return False  # gone: the write reports it


def write_sidecars(
    path: Path,
    ann: Annotation,
    *,
    config: MetadataConfig,
    dry_run: bool = False,
    journal: Journal | None = None,
) -> WriteOutcome:
    """Merge ``ann`` into the photo's sidecar(s); the photo is read, never written."""
    _check_folder(path)
    own = _photo_description(path, config)
    targets = [_sidecar_name_fits(sidecar_path(path))]
    lightroom = lightroom_sidecar_path(path) if config.lightroom_sidecar else None
    if lightroom is not None:
        targets.append(lightroom)
    results = [_merge_into(t, ann, own, config, dry_run, journal) for t in targets]
    result = results[0][0]
    stat = None if dry_run else stat_or_none(path)
    written = tuple((t, c) for t, (_, c) in zip(targets, results, strict=True) if c)
    return outcome(result, changed=bool(written), stat=stat, changes=written)


def _merge_into(
    target: Path,
    ann: Annotation,
    own_description: bool,
    config: MetadataConfig,
    dry_run: bool,
    journal: Journal | None,
):  # -> tuple[Plan, dict[str, Change]]
    where = display(target)
    stat, data = _read_sidecar(target)
    if own_description:  # the photo carries a description of its own: keep it
        ann = dataclasses.replace(ann, description=None)
    with backend.opened(data, where, sidecar=True) as doc:
        snapshot = doc.snapshot()
        result = plan(
            snapshot.values,
            snapshot.latin1,
            ann,
            schemas=SIDECAR_SCHEMAS,
            options=config,
            provenance=provenance(),
        )
        if not result.changes:
            return result, {}
        if dry_run:
            return result, before_after(snapshot.values, result.changes)
        new_data = doc.rewrite(result.changes)
    changes: dict[str, Change] = written_changes(
        snapshot.values, new_data, result.changes, where, sidecar=True
    )
    if journal is not None:
        journal(target, changes)
    _store(target, new_data, stat)
    return result, changes


def _read_sidecar(target: Path) -> tuple[FileStat | None, bytes]:
    try:
        stat = file_stat(target)
        data = target.read_bytes()
    except FileNotFoundError:
        return None, EMPTY_PACKET
    except OSError as exc:
        raise MetadataError(f"cannot read {display(target)}: {exc.strerror or exc}") from exc
    if len(data) != stat.size:
        raise PhotoChangedError(f"{display(target)} is being changed by another program")
    return stat, data or EMPTY_PACKET


def _store(target: Path, data: bytes, stat: FileStat | None) -> None:
    try:
        if stat is not None:
            atomic_replace(target, data, stat)
        else:
            _create(target, data)
    except OSError as exc:
        raise MetadataError(write_error(target, exc)) from exc


def _create(target: Path, data: bytes) -> None:
    """A new file with all its bytes, or none: written aside, then linked into place,
    which fails (and writes nothing) if another program created the sidecar meanwhile."""
    fd, tmp = create_temp(target, 0o666)
    try:
        write_all(fd, data)
        os.fsync(fd)
        try:
            os.link(tmp, target)
        except FileExistsError as exc:
            raise PhotoChangedError(
                f"{display(target)} was created by another program meanwhile; retry later"
            ) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.close(fd)  # after the unlink: the lock keeps other processes' cleanup away
    fsync_dir(target.parent)


def _photo_description(path: Path, config: MetadataConfig) -> bool:
    """True when the photo itself holds a description that must not be overridden."""
    if config.overwrite_description:
        return False
    try:
        with backend.opened(path.read_bytes(), display(path)) as photo:
            existing = existing_from(photo.snapshot().values)
    except (OSError, MetadataError):
        return False  # exiv2 cannot read it: nothing to keep
    return bool(existing.description) and existing.description != existing.our_description


def _sidecar_name_fits(target: Path) -> Path:
    if len(os.fsencode(target.name)) > NAME_MAX:
        raise MetadataError(
            f"{display(target)}: the sidecar's name would be longer than the {NAME_MAX} bytes "
            "a file name may have; shorten the photo's name"
        )
    return target


def _check_folder(path: Path) -> None:
    if _read_only(path.parent):
        raise NotWritableError(
            f"{display(path.parent)} is read-only: neither the photo nor an XMP sidecar "
            "can be written; its keywords and caption are kept in photoscribe's index"
        )


def write_photo(
    path: Path,
    ann: Annotation,
    *,
    expected_hash: str,
    config: MetadataConfig | None = None,
    dry_run: bool = False,
    journal: Journal | None = None,
    facts: FactsOf | None = None,
) -> WriteOutcome:
    """Write ``ann`` where it belongs: into the photo, or into its sidecar(s).
    ``facts``: as for write_annotation (a sidecar write reads no facts: the outcome's
    are None)."""
    from photoscribe.metadata.writer import write_annotation

    config = config or MetadataConfig()
    if wants_sidecar(path, config):
        return write_sidecars(path, ann, config=config, dry_run=dry_run, journal=journal)
    return write_annotation(
        path,
        ann,
        expected_hash=expected_hash,
        config=config,
        dry_run=dry_run,
        journal=journal,
        facts=facts,
    )
