"""The interoperable field set in detail: keyword paths under keyword_root, the user's
keywords in every field, re-tagging, Windows XP fields, limits, EXIF basics, IPTCDigest,
PNG ICC profiles and maker notes."""

from __future__ import annotations

import io
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from photoscribe.config import MetadataConfig, config_from_dict
from photoscribe.contenthash import content_hash
from photoscribe.errors import ConfigError, MetadataError
from photoscribe.metadata import read_existing, write_annotation
from photoscribe.metadata.fields import FIELDS
from photoscribe.metadata.keywords import KeywordState, merge_keywords
from photoscribe.metadata.png import keep_icc_chunk
from photoscribe.metadata.text import join_xp, path_from_tag, path_to_tag, strip_non_bmp
from photoscribe.records import Annotation, WriteOutcome

from fixtures.camera import converted, copy_to
from fixtures.exiftool import read_tags
from fixtures.readrules import exiv2_raw_bytes, validate_warnings

LR, TAGS_LIST = FIELDS["hierarchy"]
XP_KEYWORDS = FIELDS["keywords"][2]


def photo(folder: Path, fmt: str = "jpeg", name: str = "photo", **save: object) -> Path:
    rng = np.random.default_rng(3)
    array = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt.upper(), **save)
    path = folder / f"{name}.{ {'jpeg': 'jpg', 'tiff': 'tif'}.get(fmt, fmt) }"
    path.write_bytes(buffer.getvalue())
    return path


def annotate(
    path: Path, keywords: tuple[str, ...], description: str | None = None, **options: object
) -> WriteOutcome:
    digest = content_hash(path.read_bytes())
    ann = Annotation(keywords, description, "test-clip", digest)
    config = MetadataConfig(**options)  # type: ignore[arg-type]
    return write_annotation(path, ann, expected_hash=digest, config=config)


def exiftool_write(path: Path, *args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(path)], check=True)


def as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def keyword_fields(path: Path) -> dict[str, list[str]]:
    t = read_tags(path)
    names = {
        "dc": "XMP-dc:Subject",
        "iptc": "IPTC:Keywords",
        "lr": "XMP-lr:HierarchicalSubject",
        "tags": "XMP-digiKam:TagsList",
        "ours": "XMP-photoscribe:AddedKeywords",
        "our_paths": "XMP-photoscribe:AddedHierarchy",
    }
    fields = {short: as_list(t.get(key)) for short, key in names.items()}
    fields["xp"] = [w for w in str(t.get("IFD0:XPKeywords", "")).split(";") if w]
    return fields


# --- keyword paths --------------------------------------------------------------------------


def test_keyword_root_nests_paths_and_flat_tags_keep_the_leaf(tmp_path: Path) -> None:
    path = photo(tmp_path)
    annotate(path, ("cat", "AC/DC"), keyword_root="AI/photoscribe")
    f = keyword_fields(path)
    assert f["dc"] == f["iptc"] == f["xp"] == ["cat", "AC/DC"]
    assert f["lr"] == ["AI|photoscribe|cat", "AI|photoscribe|AC/DC"]
    # digiKam's separator is '/': a '/' inside a name becomes '|', as Immich converts it
    assert f["tags"] == ["AI/photoscribe/cat", "AI/photoscribe/AC|DC"]


def test_without_a_root_keywords_are_top_level_paths(tmp_path: Path) -> None:
    path = photo(tmp_path, "png")
    annotate(path, ("cat",))
    f = keyword_fields(path)
    assert f["lr"] == f["tags"] == f["dc"] == ["cat"]


def test_users_own_hierarchy_is_kept_and_not_duplicated(tmp_path: Path) -> None:
    path = photo(tmp_path)
    # as Lightroom writes it: paths, and every part of them as a flat keyword
    exiftool_write(
        path,
        "-XMP-lr:HierarchicalSubject=Places|Paris",
        "-XMP-dc:Subject=Places",
        "-XMP-dc:Subject=Paris",
        "-XMP-digiKam:TagsList=People/Anna",  # digiKam-only path
    )
    annotate(path, ("paris", "river"), keyword_root="AI")
    f = keyword_fields(path)
    assert f["dc"] == ["Places", "Paris", "river"]  # "paris" is the user's "Paris"
    assert f["lr"] == ["Places|Paris", "People|Anna", "AI|river"]
    assert f["tags"] == ["Places/Paris", "People/Anna", "AI/river"]
    assert f["our_paths"] == ["AI|river"]  # nothing carried: every flat word is in a path


def test_retag_replaces_only_ours_in_every_keyword_field(tmp_path: Path) -> None:
    path = photo(tmp_path)
    exiftool_write(
        path,
        "-XMP-dc:Subject=Family",
        "-IPTC:Keywords=Family",
        "-XMP-lr:HierarchicalSubject=Trips|Rome",
        "-XPKeywords=Family;Windows tag",
    )
    annotate(path, ("dog", "beach"), keyword_root="AI")
    before = keyword_fields(path)
    assert before["lr"] == ["Trips|Rome", "Family", "Windows tag", "AI|dog", "AI|beach"]
    annotate(path, ("cat",), keyword_root="AI")
    f = keyword_fields(path)
    users = ["Family", "Windows tag"]
    assert f["dc"] == f["iptc"] == f["xp"] == [*users, "cat"]
    assert f["lr"] == ["Trips|Rome", *users, "AI|cat"]
    assert f["tags"] == ["Trips/Rome", *users, "AI/cat"]
    assert f["ours"] == ["cat"] and f["our_paths"] == [*users, "AI|cat"]


def test_changing_the_root_moves_our_paths_only(tmp_path: Path) -> None:
    path = photo(tmp_path)
    exiftool_write(path, "-XMP-lr:HierarchicalSubject=AI|mine")
    annotate(path, ("cat",), keyword_root="AI")
    annotate(path, ("cat",), keyword_root="Auto")
    assert keyword_fields(path)["lr"] == ["AI|mine", "Auto|cat"]


def test_windows_keywords_are_the_users_and_reach_every_field(tmp_path: Path) -> None:
    path = photo(tmp_path)
    exiftool_write(path, "-XPKeywords=Holiday;Beach house")
    assert read_existing(path.read_bytes()).keywords == ("Holiday", "Beach house")
    outcome = annotate(path, ("dog",))
    assert outcome.keywords == ("Holiday", "Beach house", "dog")
    assert keyword_fields(path)["dc"] == ["Holiday", "Beach house", "dog"]


def test_xp_fields_are_ucs2_le_without_emoji(tmp_path: Path) -> None:
    path = photo(tmp_path, "tiff")
    annotate(path, ("sunset 🌅", "海滩", "🎉"), "Sunset 🌅 at the beach 海滩")
    keywords = exiv2_raw_bytes(path, "Exif.Image.XPKeywords")
    comment = exiv2_raw_bytes(path, "Exif.Image.XPComment")
    for raw in (keywords, comment):
        units = struct.unpack(f"<{len(raw) // 2}H", raw)
        assert not [u for u in units if 0xD800 <= u <= 0xDFFF]  # no surrogates: UCS-2
    assert keywords.decode("utf-16-le").rstrip("\x00") == "sunset;海滩"
    assert comment.decode("utf-16-le").rstrip("\x00") == "Sunset at the beach 海滩"
    assert read_existing(path.read_bytes()).keywords == ("sunset 🌅", "海滩", "🎉")


def test_description_is_read_from_the_first_non_empty_tag(tmp_path: Path) -> None:
    path = photo(tmp_path)
    exiftool_write(path, "-XPComment=Typed in Explorer")
    assert read_existing(path.read_bytes()).description == "Typed in Explorer"
    assert annotate(path, ("x",), "Ours").description == "Typed in Explorer"
    exiftool_write(path, "-EXIF:ImageDescription=From EXIF", "-XMP-dc:Description=From XMP")
    assert read_existing(path.read_bytes()).description == "From XMP"


# --- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jpeg", "tiff", "webp"])
def test_a_64kb_description_is_cut_per_tag_on_character_boundaries(
    fmt: str, tmp_path: Path
) -> None:
    path = photo(tmp_path, fmt)
    text = "长描述 long description 🐘 " * 2400  # 72,000 UTF-8 bytes
    annotate(path, ("x",), text)
    t = read_tags(path)
    xmp, exif, xp = t["XMP-dc:Description"], t["IFD0:ImageDescription"], t["IFD0:XPComment"]
    assert xmp == utf8_prefix(text, 16_000)
    assert exif == utf8_prefix(text, 2_000)
    assert xp == ("长描述 long description " * 2400)[:2_000]  # UCS-2: no emoji, 2,000 units
    if fmt != "webp":
        assert t["IPTC:Caption-Abstract"] == utf8_prefix(text, 2_000)
    assert read_existing(path.read_bytes()).our_description == xmp
    assert not annotate(path, ("x",), text).changed  # the cut values count as ours
    assert annotate(path, ("x",), "Short again.").description == "Short again."


def utf8_prefix(text: str, limit: int) -> str:
    """The longest start of ``text`` that fits into ``limit`` UTF-8 bytes."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def test_long_keywords_and_many_of_them(tmp_path: Path) -> None:
    path = photo(tmp_path)
    words = tuple(f"keyword number {i} " + "长" * 30 for i in range(60))
    annotate(path, words)
    f = keyword_fields(path)
    assert f["dc"] == list(words)
    assert f["iptc"] == [utf8_prefix(w, 64) for w in words]
    # whole words only, within 4,000 bytes of UCS-2: 41 fit, a 42nd would not
    assert 2 * len(";".join(words[:41])) <= 4_000 < 2 * len(";".join(words[:42]))
    assert f["xp"] == list(words[:41])


def test_metadata_too_large_for_a_jpeg_is_refused_cleanly(tmp_path: Path) -> None:
    path = photo(tmp_path)
    data = path.read_bytes()
    words = tuple(f"keyword number {i} " + "长" * 30 for i in range(300))  # ~150 KB of XMP
    with pytest.raises(MetadataError, match="would not fit into a JPEG segment"):
        annotate(path, words)
    assert path.read_bytes() == data


def test_xp_keywords_join_whole_words_within_the_limit() -> None:
    words = [f"word{i:04d}" for i in range(1000)]
    # 222 words are 222 × 9 - 1 = 1,997 characters (3,994 bytes); 223 would be 4,012 bytes
    assert join_xp(XP_KEYWORDS, words) == ";".join(words[:222])
    assert join_xp(XP_KEYWORDS, ["a;b", "🎉", "ok 🎉"]) == "a,b;ok"


# --- EXIF basics, IPTCDigest, ICC, maker notes ----------------------------------------------


def test_exif_basics_are_added_only_when_photoscribe_creates_the_exif(tmp_path: Path) -> None:
    bare = photo(tmp_path, name="bare")
    annotate(bare, ("x",), "y")
    t = read_tags(bare)
    assert (t["IFD0:XResolution"], t["IFD0:YResolution"]) == (72, 72)
    assert t["IFD0:ResolutionUnit"] == "inches" and t["IFD0:YCbCrPositioning"] == "Centered"
    assert validate_warnings(bare) == []
    camera = copy_to("nikon-d2h-gps", tmp_path)  # 256 dpi, no YCbCrPositioning
    annotate(camera, ("x",), "y")
    t = read_tags(camera)
    assert t["IFD0:XResolution"] == 256 and "IFD0:YCbCrPositioning" not in t


def iptc_digests(path: Path) -> tuple[str | None, str | None]:
    t = read_tags(path)
    return t.get("Photoshop:IPTCDigest"), t.get("File:CurrentIPTCDigest")


@pytest.mark.parametrize("fmt", ["jpeg", "tiff"])
def test_a_current_iptc_digest_stays_current(fmt: str, tmp_path: Path) -> None:
    path = photo(tmp_path, fmt)
    exiftool_write(path, "-IPTC:Keywords=old", "-IPTC:CodedCharacterSet=UTF8")
    stored, current = iptc_digests(path)
    exiftool_write(path, f"-Photoshop:IPTCDigest={current}")  # current, also in a TIFF
    assert iptc_digests(path)[0] == current
    warnings_before = validate_warnings(path)
    annotate(path, ("new",), "A description")
    stored, current = iptc_digests(path)
    assert stored == current and stored is not None
    new = set(validate_warnings(path)) - set(warnings_before)
    # Known exception: exiv2 also copies the IPTC into a TIFF's Photoshop resource block
    # (tag 0x8649) whenever it writes, which exiftool notes as minor. Only TIFFs that carry
    # such a block without IPTC in it show it; where the block holds IPTC already, exiftool
    # reported it before the write.
    expected = {"[minor] Non-standard IPTC at TIFF-IFD0-Photoshop-IPTC"} if fmt == "tiff" else set()
    assert new == expected


def test_a_stale_iptc_digest_is_left_stale(tmp_path: Path) -> None:
    path = photo(tmp_path)
    exiftool_write(path, "-IPTC:Keywords=old", "-Photoshop:IPTCDigest=new")
    exiftool_write(path, "-IPTC:Keywords+=edited by an IPTC-only program")
    stored_before, current_before = iptc_digests(path)
    assert stored_before != current_before
    annotate(path, ("new",))
    assert iptc_digests(path)[0] == stored_before  # not ours to vouch for


def test_a_zero_digest_without_iptc_becomes_current(tmp_path: Path) -> None:
    path = copy_to("nikon-d2h-gps", tmp_path)  # Photoshop wrote 0…0 and no IPTC
    assert iptc_digests(path) == ("00000000000000000000000000000000", None)
    annotate(path, ("new",))
    stored, current = iptc_digests(path)
    assert stored == current and current is not None


def png_chunks(data: bytes) -> dict[bytes, bytes]:
    chunks, pos = {}, 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        chunks.setdefault(kind, data[pos : pos + 12 + length])
        pos += 12 + length
    return chunks


def test_a_pngs_icc_profile_chunk_is_kept_byte_for_byte(tmp_path: Path) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = photo(tmp_path, "png", icc_profile=icc)
    before = path.read_bytes()
    annotate(path, ("x",), "y")  # exiv2 alone re-compresses iCCP: the write would be refused
    assert png_chunks(path.read_bytes())[b"iCCP"] == png_chunks(before)[b"iCCP"]
    assert content_hash(path.read_bytes()) == content_hash(before)


def test_keep_icc_chunk_swaps_only_the_same_profile() -> None:
    def png(name: bytes, profile: bytes, level: int) -> bytes:
        body = name + b"\x00\x00" + zlib.compress(profile, level)
        chunk = struct.pack(">I", len(body)) + b"iCCP" + body + b"CRC!"
        return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00\x00\x00\x00IEND\xaeB`\x82"

    old, recompressed = png(b"sRGB", b"profile" * 50, 9), png(b"sRGB", b"profile" * 50, 1)
    assert keep_icc_chunk(old, recompressed) == old
    other = png(b"sRGB", b"another profile" * 50, 1)
    assert keep_icc_chunk(old, other) == other
    assert keep_icc_chunk(b"not a png", other) == other


def app1_exif(data: bytes) -> bytes:
    start = data.index(b"\xff\xe1")
    (length,) = struct.unpack_from(">H", data, start + 2)
    return data[start : start + 2 + length]


def test_an_opaque_maker_note_with_absolute_offsets_keeps_the_exif_as_it_is(
    tmp_path: Path,
) -> None:
    path = copy_to("minolta-dimage-x", tmp_path)
    exif_before, warnings_before = app1_exif(path.read_bytes()), validate_warnings(path)
    outcome = annotate(path, ("sign",), "A street sign")
    assert outcome.description == "A street sign"
    assert app1_exif(path.read_bytes()) == exif_before  # maker note and PrintIM untouched
    assert validate_warnings(path) == warnings_before
    t = read_tags(path)
    assert t["XMP-dc:Description"] == t["IPTC:Caption-Abstract"] == "A street sign"
    assert as_list(t["XMP-dc:Subject"]) == ["sign"]


def test_such_a_maker_note_in_a_tiff_is_refused(tmp_path: Path) -> None:
    path = converted("minolta-dimage-x", "tiff", tmp_path)
    data = path.read_bytes()
    with pytest.raises(MetadataError, match="maker note"):
        annotate(path, ("sign",))
    assert path.read_bytes() == data


# --- pure helpers and configuration -------------------------------------------------------


def test_paths_round_trip_between_lightroom_and_digikam_forms() -> None:
    for path in ("AI|cat", "AI|AC/DC", "Places|Paris"):
        assert path_from_tag(TAGS_LIST, path_to_tag(TAGS_LIST, path)) == path
        assert path_to_tag(LR, path) == path
    assert path_to_tag(TAGS_LIST, "AI|AC/DC") == "AI/AC|DC"


def test_strip_non_bmp() -> None:
    assert strip_non_bmp("a 🐕 b") == "a b"
    assert strip_non_bmp("海滩 ❤ ok") == "海滩 ❤ ok"  # BMP symbols stay


def test_merge_keywords_carries_users_flat_words_and_replaces_ours() -> None:
    state = KeywordState(
        flat=("Family", "dog", "Paris, France"),
        paths=("Family", "AI|dog", "Paris France"),
        ours=("dog",),
        our_paths=("Family", "AI|dog", "Paris France"),
    )
    plan = merge_keywords(state, ["Cat", " cat ", "a,b"], "AI")
    assert plan.flat == ["Family", "Paris, France", "Cat", "a b"]
    assert plan.paths == plan.added_paths == ["Family", "Paris France", "AI|Cat", "AI|a b"]


@pytest.mark.parametrize("root", ["AI,x", "AI||x", "/AI", "A\x07I"])
def test_bad_keyword_roots_are_config_errors(root: str) -> None:
    with pytest.raises(ConfigError, match=r"metadata\.keyword_root"):
        config_from_dict({"metadata": {"keyword_root": root}})


def test_good_keyword_roots() -> None:
    for root in ("", "AI", "AI|photoscribe", "AI/photoscribe", "Étiquettes auto"):
        assert config_from_dict({"metadata": {"keyword_root": root}}).metadata.keyword_root == root
