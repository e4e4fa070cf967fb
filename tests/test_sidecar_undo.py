"""Sidecars, `scan --dry-run` and `photoscribe undo`, end to end through the CLI and read
back with exiftool: RAW and HEIC get NAME.EXT.xmp, read-only photos too (mode auto),
existing sidecars are merged into; undo restores what exiftool showed before."""

from __future__ import annotations

import hashlib
import io
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from photoscribe.cli import main
from photoscribe.records import State
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures.exiftool import RESERIALISED, differences, exiftool_json, whole_tags
from fixtures.synthetic import draw_shape

DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:darktable="http://darktable.sf.net/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
   darktable:xmp_version="5"
   darktable:history_end="2">
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:num="0" darktable:operation="exposure" darktable:enabled="1"
      darktable:params="0000000000000000" darktable:multi_name=""/>
     <rdf:li darktable:num="1" darktable:operation="colorbalancergb" darktable:enabled="1"
      darktable:params="abcdef0123456789" darktable:multi_name=""/>
    </rdf:Seq>
   </darktable:history>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Oma</rdf:li>
    </rdf:Bag>
   </dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def exif(*paths: Path) -> list[dict]:
    return exiftool_json("-G1", "-a", "-struct", *paths)


def without_atime(tags: dict) -> dict:
    """Reading a file (as a dry run does) moves its access time: that is not a change."""
    return {k: v for k, v in tags.items() if k != "System:FileAccessDate"}


def as_list(value) -> list:
    return [] if value is None else value if isinstance(value, list) else [value]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def jpeg_bytes(colour: str, shape: str, seed: int, size=(640, 480)) -> bytes:
    buf = io.BytesIO()
    draw_shape(colour, shape, size=size, seed=seed).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def fake_raw(preview: bytes) -> bytes:
    """TIFF-style header, sensor-like noise, the camera's JPEG preview, more noise."""
    noise = hashlib.sha256(preview).digest() * 2000
    return b"II*\x00\x08\x00\x00\x00" + noise + preview + noise


@pytest.fixture
def run(tmp_path: Path, fake_llm):
    folder = tmp_path / "photos"
    folder.mkdir()
    raw = tiny_config_dict(tmp_path, fake_llm.base_url)

    def cli(*args: str, metadata: dict | None = None) -> int:
        raw["metadata"] = metadata or {}
        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return main(["--config", str(cfg), *args])

    cli.folder = folder  # type: ignore[attr-defined]
    cli.index = Path(raw["index_path"])  # type: ignore[attr-defined]
    return cli


def test_raw_and_heic_get_sidecars_and_stay_byte_identical(run) -> None:
    import pillow_heif

    folder = run.folder
    raw = folder / "IMG_0001.CR2"
    raw.write_bytes(fake_raw(jpeg_bytes("red", "circle", 1)))
    pillow_heif.register_heif_opener()
    heic = folder / "IMG_0002.HEIC"
    draw_shape("blue", "square", size=(400, 300), seed=2).save(heic, "HEIF", quality=80)
    avif = folder / "IMG_0003.avif"
    draw_shape("yellow", "triangle", size=(400, 300), seed=4).save(avif, "AVIF", quality=80)
    before = {p: sha(p) for p in (raw, heic, avif)}

    assert run("scan", str(folder)) == 0
    assert {p: sha(p) for p in (raw, heic, avif)} == before  # the originals are never written
    for photo, colour in ((raw, "red"), (heic, "blue"), (avif, "yellow")):
        sidecar = photo.with_name(photo.name + ".xmp")
        (tags,) = exif(sidecar)
        assert colour in as_list(tags["XMP-dc:Subject"])
        assert tags["XMP-dc:Description"]
    store = open_store(run.index)
    assert {r.state for r in store.rows_under(folder)} == {State.DONE}
    store.close()


def test_unreadable_raw_and_heic_are_recorded_and_left_alone(run, capsys) -> None:
    garbage = run.folder / "broken.NEF"
    garbage.write_bytes(b"II*\x00" + bytes(range(256)) * 64)
    empty = run.folder / "empty.heic"
    empty.write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40)
    before = {p: sha(p) for p in (garbage, empty)}
    assert run("scan", str(run.folder)) == 1
    out = capsys.readouterr().out
    assert "broken.NEF: this RAW file has no usable embedded preview" in out
    assert "empty.heic:" in out
    assert {p: sha(p) for p in (garbage, empty)} == before
    assert sorted(p.name for p in run.folder.iterdir()) == ["broken.NEF", "empty.heic"]


def test_a_heic_named_jpg_gets_a_sidecar_too(run) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    photo = run.folder / "exported.jpg"
    draw_shape("green", "circle", size=(400, 300), seed=15).save(photo, "HEIF", quality=80)
    digest = sha(photo)
    assert run("scan", str(run.folder)) == 0
    assert sha(photo) == digest
    (tags,) = exif(run.folder / "exported.jpg.xmp")
    assert "green" in as_list(tags["XMP-dc:Subject"])


def test_a_raw_with_a_jpeg_twin_is_tagged_from_the_twin(run) -> None:
    folder = run.folder
    (folder / "DSC_7.NEF").write_bytes(fake_raw(jpeg_bytes("red", "circle", 3, (120, 90))))
    (folder / "DSC_7.JPG").write_bytes(jpeg_bytes("green", "triangle", 4))  # RAW+JPEG
    assert run("scan", "--no-caption", str(folder / "DSC_7.NEF")) == 0
    (tags,) = exif(folder / "DSC_7.NEF.xmp")
    assert "green" in as_list(tags["XMP-dc:Subject"])  # the preview alone is too small


def test_existing_sidecar_is_merged_not_replaced(run) -> None:
    folder = run.folder
    raw = folder / "P1.ORF"
    raw.write_bytes(fake_raw(jpeg_bytes("yellow", "star", 5)))
    sidecar = folder / "P1.ORF.xmp"
    sidecar.write_text(DARKTABLE_SIDECAR, encoding="utf-8")
    (history_before,) = exif(sidecar)
    assert run("scan", str(folder)) == 0
    (after,) = exif(sidecar)
    assert after["XMP-darktable:History"] == history_before["XMP-darktable:History"]
    assert after["XMP-darktable:History_end"] == history_before["XMP-darktable:History_end"]
    subjects = as_list(after["XMP-dc:Subject"])
    assert "Oma" in subjects and "yellow" in subjects


def test_read_only_photo_gets_a_sidecar_in_auto_mode(run) -> None:
    photo = run.folder / "ro.jpg"
    photo.write_bytes(jpeg_bytes("purple", "circle", 6))
    photo.chmod(0o444)
    digest = sha(photo)
    assert run("scan", str(run.folder)) == 0
    assert sha(photo) == digest
    (tags,) = exif(photo.with_name("ro.jpg.xmp"))
    assert "purple" in as_list(tags["XMP-dc:Subject"])


def test_read_only_folder_keeps_tags_in_the_index_only(run) -> None:
    photo = run.folder / "locked" / "a.jpg"
    photo.parent.mkdir()
    photo.write_bytes(jpeg_bytes("orange", "square", 7))
    digest = sha(photo)
    photo.parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert run("scan", str(run.folder)) == 0
    finally:
        photo.parent.chmod(0o755)
    assert sha(photo) == digest
    assert sorted(p.name for p in photo.parent.iterdir()) == ["a.jpg"]
    store = open_store(run.index)
    row = store.by_path(photo)
    assert row.state is State.DONE and "orange" in {k.label for k in row.keywords}
    store.close()


def test_embed_mode_refuses_raw_with_a_clear_reason(run, capsys) -> None:
    raw = run.folder / "x.ARW"
    raw.write_bytes(fake_raw(jpeg_bytes("red", "circle", 8)))
    assert run("scan", str(run.folder), metadata={"mode": "embed"}) == 1
    assert "metadata.mode" in capsys.readouterr().out
    assert not (run.folder / "x.ARW.xmp").exists()


def test_sidecar_mode_and_lightroom_name(run) -> None:
    photo = run.folder / "holiday.jpg"
    photo.write_bytes(jpeg_bytes("blue", "star", 9))
    digest = sha(photo)
    settings = {"mode": "sidecar", "lightroom_sidecar": True}
    assert run("scan", str(run.folder), metadata=settings) == 0
    assert sha(photo) == digest
    for name in ("holiday.jpg.xmp", "holiday.xmp"):
        (tags,) = exif(run.folder / name)
        assert "blue" in as_list(tags["XMP-dc:Subject"])


def test_dry_run_writes_nothing_and_shows_the_changes(run, capsys) -> None:
    photo = run.folder / "a.jpg"
    photo.write_bytes(jpeg_bytes("red", "square", 10))
    digest = sha(photo)
    assert run("scan", "--dry-run", str(run.folder)) == 0
    out = capsys.readouterr().out
    assert "Xmp.dc.subject: (none) → " in out and "Xmp.dc.description" in out
    assert "nothing was written" in out
    assert sha(photo) == digest
    assert not run.index.exists() or not open_store(run.index).rows_under(run.folder)


def test_undo_restores_exactly_what_was_there(run, capsys) -> None:
    """exiftool before the scan == after undo, the whole output (but what any rewrite
    changes), while a keyword the user added in between survives."""
    photo = run.folder / "user.jpg"
    photo.write_bytes(jpeg_bytes("green", "circle", 11))
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP-dc:Subject=Oma", "-IPTC:Keywords=Oma",
         "-IFD0:ImageDescription=OLYMPUS DIGITAL CAMERA", "-IFD0:Make=OLYMPUS", str(photo)],
        check=True,
    )  # fmt: skip
    before = whole_tags(photo, drop=RESERIALISED)
    assert run("scan", str(run.folder)) == 0
    assert run("scan", "--force", str(run.folder)) == 0  # two writes in the journal
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP-dc:Subject+=Urlaub", str(photo)],
        check=True,
    )
    (tagged,) = map(without_atime, exif(photo))
    assert "green" in as_list(tagged["XMP-dc:Subject"])

    capsys.readouterr()
    assert run("undo", "--dry-run", str(photo)) == 0
    assert "Xmp.dc.subject" in capsys.readouterr().out
    assert without_atime(exif(photo)[0]) == tagged  # dry run: nothing changed (mtime too)

    assert run("undo", str(photo)) == 0
    after = whole_tags(photo, drop=RESERIALISED)
    assert differences(before, after) == {"XMP-dc:Subject": (["Oma"], ["Oma", "Urlaub"])}
    store = open_store(run.index)
    assert store.by_path(photo).state is State.UNDONE
    store.close()
    assert run("scan", str(run.folder)) == 0  # not tagged again
    assert "green" not in as_list(exif(photo)[0].get("XMP-dc:Subject"))


def test_undo_all_removes_sidecars_photoscribe_created(run) -> None:
    raw = run.folder / "r.RW2"
    raw.write_bytes(fake_raw(jpeg_bytes("red", "circle", 12)))
    merged = run.folder / "d.ORF"
    merged.write_bytes(fake_raw(jpeg_bytes("blue", "circle", 13)))
    (run.folder / "d.ORF.xmp").write_text(DARKTABLE_SIDECAR, encoding="utf-8")
    history = whole_tags(run.folder / "d.ORF.xmp", drop=("System:FileSize",))
    assert run("scan", str(run.folder)) == 0
    assert (run.folder / "r.RW2.xmp").exists()
    assert run("undo", "--all") == 0
    assert not (run.folder / "r.RW2.xmp").exists()  # it was ours alone
    after = whole_tags(run.folder / "d.ORF.xmp", drop=("System:FileSize",))
    assert differences(history, after) == {}  # darktable's stays, as it was (re-serialised)


def test_undo_of_a_photo_photoscribe_never_wrote_changes_nothing(run, capsys) -> None:
    photo = run.folder / "mine.jpg"
    photo.write_bytes(jpeg_bytes("red", "circle", 14))
    digest = sha(photo)
    assert run("scan", str(run.folder), metadata={"write": False}) == 0  # index only
    capsys.readouterr()
    assert run("undo", str(photo)) == 0
    assert "0 photos restored, 0 failed, 1 with nothing photoscribe wrote on record" in (
        capsys.readouterr().out
    )
    assert sha(photo) == digest
    store = open_store(run.index)
    assert store.by_path(photo).state is State.DONE  # still tagged in the index
    store.close()


def test_undo_needs_paths_or_all(run, capsys) -> None:
    assert run("undo") == 2
    assert "--all" in capsys.readouterr().err
