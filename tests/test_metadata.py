"""Real writes into real JPEG/PNG/TIFF/WebP files, read back with exiftool."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import photoscribe
from photoscribe.config import MetadataConfig
from photoscribe.contenthash import content_hash
from photoscribe.errors import DecodeError, MetadataError, PhotoChangedError, PhotoError
from photoscribe.metadata import Existing, read_existing, sanitize_keyword, write_annotation
from photoscribe.metadata import backend as metadata_backend
from photoscribe.records import Annotation

from fixtures.exiftool import read_tags

FORMATS = {"jpeg": "jpg", "png": "png", "tiff": "tif", "webp": "webp"}
WITH_IPTC = ("jpeg", "tiff")
DESCRIPTION = "一只狗在海滩上奔跑 🐕🌊 — a dog running on the beach"
KEYWORDS = ("dog", "海滩", "sunset 🌅")


def make_photo(folder: Path, fmt: str = "jpeg", name: str = "photo", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    array = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt.upper())
    path = folder / f"{name}.{FORMATS[fmt]}"
    path.write_bytes(buffer.getvalue())
    return path


def annotate(
    path: Path,
    keywords: tuple[str, ...] = KEYWORDS,
    description: str | None = DESCRIPTION,
    *,
    dry_run: bool = False,
    **options: object,
):
    """Write an annotation; ``options`` are MetadataConfig fields."""
    digest = content_hash(path.read_bytes())
    ann = Annotation(keywords, description, "test-clip", digest)
    config = MetadataConfig(**options)  # type: ignore[arg-type]
    return write_annotation(path, ann, expected_hash=digest, config=config, dry_run=dry_run)


def exiftool_write(path: Path, *args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)


tags = read_tags


def xmp_packet(path: Path) -> str:
    out = subprocess.run(["exiftool", "-xmp", "-b", str(path)], check=True, capture_output=True)
    return out.stdout.decode("utf-8")


def as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def no_temp_files(folder: Path) -> bool:
    return not [name for name in os.listdir(folder) if "photoscribe-tmp" in name]


# --- writing ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_description_and_keywords_land_in_every_schema(fmt: str, tmp_path: Path) -> None:
    path = make_photo(tmp_path, fmt)
    digest = content_hash(path.read_bytes())
    outcome = annotate(path)
    assert outcome.changed and outcome.keywords == KEYWORDS
    assert outcome.description == DESCRIPTION
    t = tags(path)
    assert t["XMP-dc:Description"] == DESCRIPTION
    assert as_list(t["XMP-dc:Subject"]) == list(KEYWORDS)
    assert t["IFD0:ImageDescription"] == DESCRIPTION
    if fmt in WITH_IPTC:
        assert as_list(t["IPTC:Keywords"]) == list(KEYWORDS)
        assert t["IPTC:CodedCharacterSet"] == "UTF8"
        assert t["IPTC:Caption-Abstract"] == DESCRIPTION
    else:
        assert not [key for key in t if key.startswith("IPTC:")]
    assert t["XMP-photoscribe:AnnotationModel"] == "test-clip"
    assert t["XMP-photoscribe:ContentHash"] == digest
    assert as_list(t["XMP-photoscribe:AddedKeywords"]) == list(KEYWORDS)
    assert t["XMP-photoscribe:AddedDescription"] == DESCRIPTION
    assert t["XMP-photoscribe:PhotoscribeVersion"] == photoscribe.__version__
    assert re.fullmatch(r"\d{4}:\d\d:\d\d \d\d:\d\d:\d\dZ", t["XMP-photoscribe:AnnotatedAt"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_xmp_arrays_are_bags_and_description_is_x_default_only(fmt: str, tmp_path: Path) -> None:
    path = make_photo(tmp_path, fmt)
    annotate(path)
    packet = xmp_packet(path)
    for bag in ("dc:subject", "lr:hierarchicalSubject", "photoscribe:addedKeywords"):
        assert re.search(rf"<{bag}>\s*<rdf:Bag>", packet), bag
    assert re.search(r"<photoscribe:addedHierarchy>\s*<rdf:Bag>", packet)
    # digiKam's schema declares TagsList an ordered array; it is the only Seq
    assert re.findall(r"<([\w:]+)>\s*<rdf:Seq>", packet) == ["digiKam:TagsList"]
    assert re.findall(r"xml:lang=\"([^\"]+)\"", packet) == ["x-default", "x-default"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_pixels_and_content_hash_are_unchanged(fmt: str, tmp_path: Path) -> None:
    path = make_photo(tmp_path, fmt)
    pixels_before, hash_before = decoded(path), content_hash(path.read_bytes())
    annotate(path)
    assert np.array_equal(decoded(path), pixels_before)
    assert content_hash(path.read_bytes()) == hash_before


CAMERA_TAGS = ("Make", "Model", "DateTimeOriginal", "GPSLatitude", "GPSLongitude", "GPSLatitudeRef")


def camera_tags(path: Path) -> dict[str, object]:
    return {
        key: value
        for key, value in tags(path).items()
        if key.rpartition(":")[2] in CAMERA_TAGS and not key.startswith("Composite:")
    }


@pytest.mark.parametrize("fmt", FORMATS)
def test_existing_exif_survives(fmt: str, tmp_path: Path) -> None:
    path = make_photo(tmp_path, fmt)
    exiftool_write(
        path,
        "-EXIF:Make=Canon",
        "-EXIF:Model=EOS R5",
        "-EXIF:DateTimeOriginal=2024:05:06 07:08:09",
        "-GPSLatitude=48.8584",
        "-GPSLatitudeRef=N",
        "-GPSLongitude=2.2945",
        "-GPSLongitudeRef=E",
    )
    before = camera_tags(path)
    assert len(before) == len(CAMERA_TAGS)
    annotate(path)
    assert camera_tags(path) == before


@pytest.mark.parametrize("fmt", WITH_IPTC)
def test_users_keywords_survive_and_are_merged(fmt: str, tmp_path: Path) -> None:
    path = make_photo(tmp_path, fmt)
    exiftool_write(
        path,
        "-XMP-dc:Subject+=Family",
        "-XMP-dc:Subject+=Dog",
        "-IPTC:Keywords+=Family",
        "-IPTC:Keywords+=Paris, France",
        "-IPTC:CodedCharacterSet=UTF8",
    )
    assert read_existing(path.read_bytes()).keywords == ("Family", "Dog", "Paris, France")
    outcome = annotate(path, keywords=("dog", "beach"))
    # "dog" is the user's "Dog"; the user's own keywords are kept verbatim, comma included
    expected = ["Family", "Dog", "Paris, France", "beach"]
    assert list(outcome.keywords) == expected
    t = tags(path)
    assert as_list(t["XMP-dc:Subject"]) == expected
    assert as_list(t["IPTC:Keywords"]) == expected
    assert as_list(t["XMP-photoscribe:AddedKeywords"]) == ["beach"]


def test_retagging_replaces_only_photoscribes_own_keywords(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    exiftool_write(path, "-XMP-dc:Subject+=Family", "-IPTC:Keywords+=Family")
    annotate(path, keywords=("dog", "beach"))
    outcome = annotate(path, keywords=("cat", "Beach"))
    assert outcome.keywords == ("Family", "cat", "Beach")
    existing = read_existing(path.read_bytes())
    assert existing.keywords == ("Family", "cat", "Beach")
    assert existing.ours == ("cat", "Beach")
    assert as_list(tags(path)["IPTC:Keywords"]) == ["Family", "cat", "Beach"]


def test_keyword_the_user_added_later_is_kept_on_retag(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    annotate(path, keywords=("dog",))
    exiftool_write(path, "-XMP-dc:Subject+=Rex", "-IPTC:Keywords+=Rex")
    assert annotate(path, keywords=("puppy",)).keywords == ("Rex", "puppy")


def test_users_description_is_kept_unless_overwrite(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    mine = "Grandma's 80th birthday"
    exiftool_write(path, f"-XMP-dc:Description={mine}", f"-IPTC:Caption-Abstract={mine}")
    outcome = annotate(path, description="A cake with candles.")
    assert outcome.description == mine
    t = tags(path)
    assert t["XMP-dc:Description"] == mine and t["IPTC:Caption-Abstract"] == mine
    assert "IFD0:ImageDescription" not in t and "XMP-photoscribe:AddedDescription" not in t
    outcome = annotate(path, description="A cake with candles.", overwrite_description=True)
    assert outcome.description == "A cake with candles."
    assert tags(path)["XMP-dc:Description"] == "A cake with candles."


def test_our_own_earlier_description_is_replaced(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    annotate(path, description="First caption.")
    assert annotate(path, description="Better caption.").description == "Better caption."
    t = tags(path)
    assert t["XMP-dc:Description"] == t["IFD0:ImageDescription"] == "Better caption."
    assert read_existing(path.read_bytes()).our_description == "Better caption."


def test_camera_placeholder_description_is_not_a_users_description(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    exiftool_write(path, "-EXIF:ImageDescription=OLYMPUS DIGITAL CAMERA         ")
    assert read_existing(path.read_bytes()).description is None
    assert annotate(path).description == DESCRIPTION
    assert tags(path)["IFD0:ImageDescription"] == DESCRIPTION


def test_none_description_leaves_description_alone(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    outcome = annotate(path, description=None)
    assert outcome.description is None and outcome.keywords == KEYWORDS
    assert "XMP-dc:Description" not in tags(path)


def test_second_identical_write_is_a_no_op(tmp_path: Path) -> None:
    path = make_photo(tmp_path, "tiff")
    first = annotate(path)
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    second = annotate(path)
    assert not second.changed
    assert second.keywords == first.keywords and second.description == first.description
    assert second.stat == first.stat
    assert path.read_bytes() == data and path.stat().st_mtime_ns == mtime


def test_dry_run_computes_but_writes_nothing(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    data = path.read_bytes()
    outcome = annotate(path, dry_run=True)
    assert outcome.changed and outcome.stat is None and outcome.keywords == KEYWORDS
    assert path.read_bytes() == data


def test_long_keyword_and_caption_are_cut_on_utf8_boundaries_for_iptc(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    long_word, long_text = "长" * 30, "描述" * 400  # 90 and 2400 UTF-8 bytes
    annotate(path, keywords=(long_word,), description=long_text)
    t = tags(path)
    assert as_list(t["XMP-dc:Subject"]) == [long_word]
    assert as_list(t["IPTC:Keywords"]) == ["长" * 21]  # 63 bytes
    assert t["IPTC:Caption-Abstract"] == long_text[:666]  # 1998 bytes
    assert t["XMP-dc:Description"] == long_text
    assert read_existing(path.read_bytes()).keywords == (long_word,)
    assert not annotate(path, keywords=(long_word,), description=long_text).changed


def test_latin1_iptc_is_reencoded_as_utf8(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    exiftool_write(path, "-charset", "iptc=latin1", "-IPTC:Keywords=café", "-IPTC:By-line=José")
    assert read_existing(path.read_bytes()).keywords == ("café",)
    annotate(path, keywords=("dog",))
    t = tags(path)
    assert t["IPTC:CodedCharacterSet"] == "UTF8"
    assert as_list(t["IPTC:Keywords"]) == ["café", "dog"] and t["IPTC:By-line"] == "José"


def test_latin1_exif_is_read_and_kept(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    exiftool_write(path, "-charset", "exif=latin1", "-EXIF:Make=CaféCam", "-EXIF:Artist=José")
    raw_before = subprocess.run(
        ["exiv2", "-pv", "-g", "Exif.Image", str(path)], capture_output=True
    )
    annotate(path)
    raw_after = subprocess.run(["exiv2", "-pv", "-g", "Exif.Image", str(path)], capture_output=True)
    assert b"Caf\xe9Cam" in raw_before.stdout and b"Caf\xe9Cam" in raw_after.stdout
    assert b"Jos\xe9" in raw_after.stdout


def test_non_utf8_file_name(tmp_path: Path) -> None:
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9.jpg"))
    path.write_bytes(make_photo(tmp_path).read_bytes())
    assert annotate(path).changed
    assert tags(path)["XMP-dc:Description"] == DESCRIPTION


def test_file_mode_is_kept_and_no_temp_files_remain(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    path.chmod(0o640)
    annotate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["photo.jpg"]


# --- refusing ------------------------------------------------------------------------


def test_wrong_expected_hash_raises_photo_changed(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    data = path.read_bytes()
    other = content_hash(make_photo(tmp_path, name="other", seed=1).read_bytes())
    ann = Annotation(KEYWORDS, DESCRIPTION, "test-clip", other)
    with pytest.raises(PhotoChangedError, match="changed since it was tagged"):
        write_annotation(path, ann, expected_hash=other)
    assert path.read_bytes() == data


def test_file_changed_during_write_raises_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_photo(tmp_path)
    original = metadata_backend.Photo.rewrite

    def rewrite_while_another_program_writes(self, changes):  # type: ignore[no-untyped-def]
        exiftool_write(path, "-XMP-dc:Title=edited elsewhere")
        return original(self, changes)

    monkeypatch.setattr(metadata_backend.Photo, "rewrite", rewrite_while_another_program_writes)
    with pytest.raises(PhotoChangedError):
        annotate(path)
    assert tags(path)["XMP-dc:Title"] == "edited elsewhere"
    assert "XMP-dc:Subject" not in tags(path)
    assert no_temp_files(tmp_path)


def _truncated_jpeg(folder: Path) -> Path:
    path = make_photo(folder, name="truncated")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


BAD_FILES = {
    "empty": (lambda folder: _write(folder / "empty.jpg", b""), "empty"),
    "text": (lambda folder: _write(folder / "notes.jpg", b"just some text\n" * 10), "not an image"),
    "truncated": (_truncated_jpeg, "truncated"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", BAD_FILES)
def test_bad_files_raise_a_photo_error_and_stay_untouched(kind: str, tmp_path: Path) -> None:
    make, reason = BAD_FILES[kind]
    path = make(tmp_path)
    data = path.read_bytes()
    ann = Annotation(KEYWORDS, DESCRIPTION, "test-clip", "jpeg:whatever")
    with pytest.raises(PhotoError, match=reason) as info:
        write_annotation(path, ann, expected_hash="jpeg:whatever")
    assert path.name in str(info.value)
    assert isinstance(info.value, DecodeError | MetadataError)
    assert path.read_bytes() == data
    assert no_temp_files(tmp_path)


def test_broken_xmp_raises_metadata_error_and_is_not_dropped(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    data = path.read_bytes()
    payload = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta xmlns:x='adobe:ns:meta/'><broken"
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    path.write_bytes(data[:2] + segment + data[2:])
    broken = path.read_bytes()
    with pytest.raises(MetadataError, match=r"photo\.jpg.*XMP"):
        annotate(path)
    assert path.read_bytes() == broken


def test_heif_and_unknown_formats_are_refused(tmp_path: Path) -> None:
    heic = _write(tmp_path / "a.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")
    with pytest.raises(MetadataError, match="HEIF/AVIF"):
        write_annotation(heic, Annotation((), None, "m", "x"), expected_hash="x")
    gif = tmp_path / "a.gif"
    Image.new("RGB", (8, 8)).save(gif)
    digest = content_hash(gif.read_bytes())
    with pytest.raises(MetadataError, match="only be written into JPEG, PNG, TIFF and WebP"):
        write_annotation(gif, Annotation(("x",), None, "m", digest), expected_hash=digest)


def test_format_is_detected_from_the_data_not_the_name(tmp_path: Path) -> None:
    png_named_jpg = make_photo(tmp_path, "png")
    path = png_named_jpg.rename(tmp_path / "really_a_png.jpg")
    annotate(path)
    t = tags(path)
    assert t["File:FileType"] == "PNG" and as_list(t["XMP-dc:Subject"]) == list(KEYWORDS)
    assert not [key for key in t if key.startswith("IPTC:")]


# --- reading & hygiene ---------------------------------------------------------------


def test_read_existing_of_a_bare_photo(tmp_path: Path) -> None:
    bare = read_existing(make_photo(tmp_path).read_bytes())
    assert bare == Existing(description=None, keywords=(), ours=(), our_description=None)


def test_read_existing_of_garbage_raises_metadata_error() -> None:
    with pytest.raises(MetadataError, match="cannot read the metadata of the photo"):
        read_existing(b"definitely not an image")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  dog  ", "dog"),
        ("Paris, France", "Paris France"),
        ("line\nbreak\tand\x00nul", "line break and nul"),
        ("海滩 🌅", "海滩 🌅"),
        (" , \n ", None),
        ("", None),
    ],
)
def test_sanitize_keyword(raw: str, clean: str | None) -> None:
    assert sanitize_keyword(raw) == clean


def test_keywords_are_sanitized_and_deduped_case_insensitively(tmp_path: Path) -> None:
    path = make_photo(tmp_path)
    outcome = annotate(path, keywords=("Dog", "dog", " DOG ", "a,b", "", "\n"))
    assert outcome.keywords == ("Dog", "a b")


def test_rejected_files_do_not_leak_pyexiv2_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyexiv2 copies the bytes into a C buffer that only close() frees; a rejected file has
    no image to close. Every buffer made for junk must be destroyed (memory growth:
    bench/bench_bad_inputs.py)."""
    from pyexiv2.core import exiv2api

    made: list[Buffer] = []

    class Buffer(exiv2api.Buffer):  # type: ignore[misc, name-defined]
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            self.destroyed = False
            made.append(self)

        def destroy(self) -> None:
            self.destroyed = True
            super().destroy()

    monkeypatch.setattr(exiv2api, "Buffer", Buffer)
    for _ in range(3):
        with pytest.raises(MetadataError, match="cannot read the metadata"):
            read_existing(b"\x00" * 4_000_000)
    # (each failure also opens an empty JPEG to clear pyexiv2's leftover errors: backend.py)
    assert len(made) >= 3 and all(buffer.destroyed for buffer in made)
