"""The format matrix: JPEG, PNG, TIFF, WebP × a photo full of a user's and a camera's
metadata, an empty one, and real camera files; read back with exiftool, exiv2 and the read
rules of Immich and PhotoPrism. (Unparseable files: test_metadata_bad.py.)"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photoscribe.config import MetadataConfig
from photoscribe.contenthash import content_hash
from photoscribe.metadata import read_existing, write_annotation
from photoscribe.records import Annotation, WriteOutcome

from fixtures.camera import CAMERA_JPEGS, converted, copy_to
from fixtures.readrules import (
    exiv2_iptc,
    exiv2_raw_xmp,
    exiv2_types,
    flat_tags,
    grouped_tags,
    immich_description,
    immich_tags,
    photoprism_description,
    photoprism_search_words,
    validate_warnings,
)

DESCRIPTION = "A grey heron waits in shallow water 🐦 — 一只苍鹭在浅水中等待"
KEYWORDS = ("heron", "shallow water", "bird 🐦", "苍鹭")
ROOT = "AI"
USER_DESCRIPTION = "Grandma's garden pond, summer 2019"
USER_KEYWORDS = ("Family", "Paris, France")
WITH_IPTC = ("jpeg", "tiff")
SUFFIX = {"jpeg": ".jpg", "png": ".png", "tiff": ".tif", "webp": ".webp"}

# Camera facts that must survive a write unchanged (family-2 names, any group).
CAMERA_TAGS = re.compile(
    r"^EXIF:[^:]+:(Make|Model|DateTimeOriginal|CreateDate|Orientation|GPS\w+|ExposureTime"
    r"|FNumber|ISO|FocalLength|LensModel)$"
)


def exiftool_write(path: Path, *args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)


def synthetic(fmt: str, folder: Path, name: str = "empty") -> Path:
    rng = np.random.default_rng(7)
    array = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt.upper(), **_lossless(fmt))
    path = folder / f"{name}{SUFFIX[fmt]}"
    path.write_bytes(buffer.getvalue())
    return path


def _lossless(fmt: str) -> dict[str, object]:
    return {"lossless": True} if fmt == "webp" else {}


def full(fmt: str, folder: Path) -> Path:
    """A real iPhone 6 photo (GPS, Apple maker note) in ``fmt``, plus a user's description
    and keywords in every place the format has for them."""
    if fmt == "jpeg":
        path = copy_to("iphone6-gps", folder)
    else:
        path = converted("iphone6-gps", fmt, folder)
    args = [f"-XMP-dc:Description={USER_DESCRIPTION}"]
    args += [f"-XMP-dc:Subject={word}" for word in USER_KEYWORDS]
    if fmt in WITH_IPTC:
        args += ["-IPTC:CodedCharacterSet=UTF8", f"-IPTC:Caption-Abstract={USER_DESCRIPTION}"]
        args += [f"-IPTC:Keywords={word}" for word in USER_KEYWORDS]
    exiftool_write(path, *args)
    return path


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], Path]
    fmt: str
    user_description: bool = False  # the file holds a description before (kept)
    user_keywords: tuple[str, ...] = ()
    # Its maker note would break if the EXIF block moved, so EXIF is left as it is (and
    # Immich, which reads ImageDescription first, still shows the camera's placeholder).
    exif_kept: bool = False
    # The user's description is in EXIF only: kept there, so XMP gets no dc:description.
    xmp_description: bool = True


CASES: dict[str, Case] = {
    **{
        f"{fmt}-full": Case(lambda d, f=fmt: full(f, d), fmt, True, USER_KEYWORDS) for fmt in SUFFIX
    },
    **{f"{fmt}-empty": Case(lambda d, f=fmt: synthetic(f, d), fmt) for fmt in SUFFIX},
    **{
        f"jpeg-{name}": Case(lambda d, n=name: copy_to(n, d), "jpeg")
        for name in CAMERA_JPEGS
        if name not in ("olympus-c2000z", "minolta-dimage-x")
    },
    "jpeg-minolta-dimage-x": Case(lambda d: copy_to("minolta-dimage-x", d), "jpeg", exif_kept=True),
    # a texture site's description in XMP, IPTC and EXIF (Photoshop; IPTCDigest)
    "jpeg-olympus-c2000z": Case(lambda d: copy_to("olympus-c2000z", d), "jpeg", True),
    "tiff-fax": Case(lambda d: copy_to("tiff-fax", d), "tiff", True, xmp_description=False),
    "png-adobe-xmp": Case(lambda d: copy_to("png-adobe-xmp", d), "png"),
}


@dataclass
class Written:
    path: Path
    case: Case
    outcome: WriteOutcome
    before: dict[str, object]  # grouped exiftool tags
    after: dict[str, object]
    warnings_before: list[str]
    pixels_before: np.ndarray
    description_before: str | None


def write(case: Case, folder: Path) -> Written:
    path = case.make(folder)
    before, warnings_before, pixels = grouped_tags(path), validate_warnings(path), decode(path)
    description = read_existing(path.read_bytes()).description
    assert (description is not None) == case.user_description
    digest = content_hash(path.read_bytes())
    ann = Annotation(KEYWORDS, DESCRIPTION, "test-clip", digest)
    config = MetadataConfig(keyword_root=ROOT)
    outcome = write_annotation(path, ann, expected_hash=digest, config=config)
    after = grouped_tags(path)
    return Written(path, case, outcome, before, after, warnings_before, pixels, description)


def decode(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module", params=sorted(CASES))
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Written:
    return write(CASES[request.param], tmp_path_factory.mktemp(request.param))


def expected_keywords(written: Written) -> list[str]:
    return [*written.case.user_keywords, *KEYWORDS]


def expected_description(written: Written) -> str:
    return written.description_before or DESCRIPTION


def _values(tags: dict[str, object], pattern: re.Pattern[str]) -> dict[str, object]:
    return {key: value for key, value in tags.items() if pattern.match(key)}


# --- what is written ----------------------------------------------------------------------


def test_write_reports_the_merged_result(written: Written) -> None:
    assert written.outcome.changed
    assert list(written.outcome.keywords) == expected_keywords(written)
    assert written.outcome.description == expected_description(written)
    existing = read_existing(written.path.read_bytes())
    assert list(existing.ours) == list(KEYWORDS)
    assert not annotate_again(written).changed  # the same annotation again is a no-op


def annotate_again(written: Written) -> WriteOutcome:
    digest = content_hash(written.path.read_bytes())
    ann = Annotation(KEYWORDS, DESCRIPTION, "test-clip", digest)
    config = MetadataConfig(keyword_root=ROOT)
    return write_annotation(written.path, ann, expected_hash=digest, config=config)


def test_every_keyword_field_holds_every_keyword(written: Written) -> None:
    t, words = written.after, expected_keywords(written)
    assert _list(t, "XMP:XMP-dc:Subject") == words
    hierarchy = [w.replace(", ", " ") for w in written.case.user_keywords]  # no commas in paths
    hierarchy += [f"{ROOT}|{w}" for w in KEYWORDS]
    assert _list(t, "XMP:XMP-lr:HierarchicalSubject") == hierarchy
    assert _list(t, "XMP:XMP-digiKam:TagsList") == [p.replace("|", "/") for p in hierarchy]
    if written.case.exif_kept:
        assert "EXIF:IFD0:XPKeywords" not in t
    else:
        assert t["EXIF:IFD0:XPKeywords"] == ";".join(w.replace(" 🐦", "") for w in words)
    if written.case.fmt in WITH_IPTC:
        assert _list(t, "IPTC:Keywords") == words
        assert t["IPTC:CodedCharacterSet"] == "UTF8"
    else:
        assert not [key for key in t if key.startswith("IPTC:")]


def test_description_fields(written: Written) -> None:
    t = written.after
    if written.case.user_description:  # the user's is kept, nothing of ours added
        description = re.compile(
            r"^\w+:(\w+:)?(Description|Caption-Abstract|ImageDescription|XPComment)$"
        )
        assert _values(t, description) == _values(written.before, description)
        assert "XMP:XMP-photoscribe:AddedDescription" not in t
        return
    assert t["XMP:XMP-dc:Description"] == DESCRIPTION
    assert t["XMP:XMP-photoscribe:AddedDescription"] == DESCRIPTION
    if written.case.fmt in WITH_IPTC:
        assert t["IPTC:Caption-Abstract"] == DESCRIPTION
    if not written.case.exif_kept:
        assert t["EXIF:IFD0:ImageDescription"] == DESCRIPTION
        assert t["EXIF:IFD0:XPComment"] == DESCRIPTION.replace(" 🐦", "")


def _list(tags: dict[str, object], key: str) -> list[str]:
    value = tags.get(key)
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def test_xmp_list_types_as_exiv2_and_the_packet_show_them(written: Written) -> None:
    types = exiv2_types(written.path)
    assert types["Xmp.dc.subject"] == "XmpBag"
    assert types["Xmp.lr.hierarchicalSubject"] == "XmpBag"
    assert types["Xmp.digiKam.TagsList"] == "XmpSeq"
    assert types["Xmp.photoscribe.addedKeywords"] == "XmpBag"
    has_description = written.case.xmp_description
    assert types.get("Xmp.dc.description") == ("LangAlt" if has_description else None)
    packet = exiv2_raw_xmp(written.path)
    assert re.search(r"<dc:subject>\s*<rdf:Bag>", packet)
    assert re.search(r"<lr:hierarchicalSubject>\s*<rdf:Bag>", packet)
    languages = set(re.findall(r'xml:lang="([^"]+)"', packet))
    assert languages == ({"x-default"} if has_description else set())  # no other language


def test_iptc_as_exiv2_shows_it(written: Written) -> None:
    iptc = exiv2_iptc(written.path)
    if written.case.fmt not in WITH_IPTC:
        assert iptc == []
        return
    assert ("Iptc.Envelope.CharacterSet", "\x1b%G") in iptc
    keywords = [value for key, value in iptc if key == "Iptc.Application2.Keywords"]
    assert keywords == expected_keywords(written)


# --- what survives ------------------------------------------------------------------------


def test_camera_exif_and_maker_notes_survive(written: Written) -> None:
    camera_pattern = re.compile(CAMERA_TAGS.pattern)
    assert _values(written.after, camera_pattern) == _values(written.before, camera_pattern)
    maker = re.compile(r"^MakerNotes:")
    assert _values(written.after, maker) == _values(written.before, maker)


def test_pixels_survive(written: Written) -> None:
    assert np.array_equal(decode(written.path), written.pixels_before)


def test_exiftool_validate_shows_no_new_warnings(written: Written) -> None:
    new = sorted(set(validate_warnings(written.path)) - set(written.warnings_before))
    assert new == []


# --- what the photo managers show --------------------------------------------------------


def test_immich_shows_the_description_and_every_keyword(written: Written) -> None:
    tags = flat_tags(written.path)
    if written.case.exif_kept:
        assert immich_description(tags) == "MINOLTA DIGITAL CAMERA"  # the camera's, untouched
    else:
        assert immich_description(tags) == expected_description(written)
    # the user's, top level (comma-free paths), then ours under the root
    users = [word.replace(",", "") for word in written.case.user_keywords]
    assert immich_tags(tags) == [*users, *(f"{ROOT}/{word}" for word in KEYWORDS)]


def test_photoprism_shows_the_description_and_finds_every_keyword(written: Written) -> None:
    tags = flat_tags(written.path)
    assert photoprism_description(tags) == expected_description(written)
    # the words of the description and of every keyword, and nothing else
    text = " ".join([expected_description(written), *expected_keywords(written)])
    assert photoprism_search_words(tags) == {word.casefold() for word in re.findall(r"\w+", text)}
