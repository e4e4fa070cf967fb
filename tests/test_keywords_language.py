"""Keywords in the configured language(s): concept ids → words and paths with parents,
written by pyexiv2 and read back by exiftool; the user's keywords kept in every language."""

from __future__ import annotations

from pathlib import Path

import pytest

from photoscribe.config import MetadataConfig
from photoscribe.contenthash import content_hash
from photoscribe.keywording import Wording
from photoscribe.metadata import write_annotation
from photoscribe.records import Keyword, Tagging
from photoscribe.vision.vocabulary import load_vocabulary
from photoscribe.writing import annotation_of
from test_metadata import exiftool_write, make_photo

from fixtures.exiftool import read_tags

VOCAB = Path(__file__).parent / "data" / "vocab"
SMALL = load_vocabulary(VOCAB / "small.tsv")
EN, ZH, BOTH = ("en",), ("zh",), ("zh", "en")
TEMPLE_ZH = SMALL.name("temple", "zh")  # 22 characters, 66 bytes of UTF-8


def wording(languages: tuple[str, ...]) -> Wording:
    return Wording(SMALL, languages)


def write(path: Path, languages: tuple[str, ...], *ids: str, **options: object):
    digest = content_hash(path.read_bytes())
    keywords = tuple(Keyword(cid, 0.9 - 0.1 * i) for i, cid in enumerate(ids))
    ann = annotation_of(Tagging(keywords, b"", "test-clip"), None, digest, wording(languages))
    config = MetadataConfig(**options)  # type: ignore[arg-type]
    return write_annotation(path, ann, expected_hash=digest, config=config)


def listed(tags: dict, key: str) -> list[str]:
    value = tags.get(key)
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def keywords_of(path: Path) -> dict[str, list[str]]:
    tags = read_tags(path)
    return {
        "xmp": listed(tags, "XMP-dc:Subject"),
        "iptc": listed(tags, "IPTC:Keywords"),
        "xp": [w for w in str(tags.get("IFD0:XPKeywords", "")).split(";") if w],
        "lr": listed(tags, "XMP-lr:HierarchicalSubject"),
        "digikam": listed(tags, "XMP-digiKam:TagsList"),
        "charset": listed(tags, "IPTC:CodedCharacterSet"),
    }


def test_flat_words_get_the_concept_and_its_ancestors_that_are_concepts() -> None:
    assert wording(EN).words(["golden_retriever"]) == ["golden retriever", "dog"]  # animal:
    assert wording(EN).paths(["golden_retriever"]) == ["animal|dog|golden retriever"]  # parent
    assert wording(ZH).words(["golden_retriever"]) == ["金毛", "狗"]  #                  only
    assert wording(ZH).paths(["golden_retriever"]) == ["动物|狗|金毛"]
    assert wording(BOTH).words(["golden_retriever", "dog"]) == [
        "金毛",
        "狗",
        "golden retriever",
        "dog",
    ]
    assert wording(BOTH).paths(["cake"]) == ["食物|蛋糕", "甜点|蛋糕", "food|cake", "dessert|cake"]
    assert wording(EN).words(["cake"]) == ["cake", "food", "dessert"]


def test_labels_that_are_not_ids_are_looked_up_or_kept() -> None:
    """An index from before concept ids holds English words; a removed concept stays."""
    assert wording(ZH).words(["golden retriever"]) == ["金毛", "狗"]
    assert wording(ZH).words(["sofa"]) == ["sofa"]
    assert wording(ZH).paths(["AC|DC"]) == ["AC/DC"]
    assert wording(ZH).words(["kite"]) == ["kite"]  # two concepts are called kite: not guessed
    assert wording(ZH).names(["dog", "sofa"]) == ["狗", "sofa"]


@pytest.mark.parametrize(
    ("languages", "flat", "paths"),
    [
        (EN, ["golden retriever", "dog", "cat"], ["animal|dog|golden retriever", "animal|cat"]),
        (ZH, ["金毛", "狗", "猫"], ["动物|狗|金毛", "动物|猫"]),
        (
            BOTH,
            ["金毛", "狗", "猫", "golden retriever", "dog", "cat"],
            ["动物|狗|金毛", "动物|猫", "animal|dog|golden retriever", "animal|cat"],
        ),
    ],
)
def test_each_language_is_written_and_read_back(
    tmp_path: Path, languages: tuple[str, ...], flat: list[str], paths: list[str]
) -> None:
    photo = make_photo(tmp_path)
    write(photo, languages, "golden_retriever", "cat")
    found = keywords_of(photo)
    assert found["xmp"] == found["iptc"] == found["xp"] == flat
    assert found["charset"] == ["UTF8"]  # IPTC declares UTF-8, so readers decode the Chinese
    assert found["lr"] == paths
    assert found["digikam"] == [p.replace("|", "/") for p in paths]


def test_keyword_root_goes_above_the_parents(tmp_path: Path) -> None:
    photo = make_photo(tmp_path)
    write(photo, ZH, "golden_retriever", keyword_root="AI")
    assert keywords_of(photo)["lr"] == ["AI|动物|狗|金毛"]


def test_a_language_switch_replaces_our_words_and_keeps_the_users_in_both_languages(
    tmp_path: Path,
) -> None:
    photo = make_photo(tmp_path)
    mine = ["奶奶", "Oma", "狗"]  # the user's own; "狗" is also a word photoscribe would write
    exiftool_write(photo, *(f"-XMP-dc:Subject={w}" for w in mine))
    exiftool_write(photo, "-IPTC:CodedCharacterSet=UTF8", *(f"-IPTC:Keywords={w}" for w in mine))
    write(photo, ZH, "golden_retriever")
    assert keywords_of(photo)["xmp"] == [*mine, "金毛"]
    write(photo, EN, "golden_retriever")
    found = keywords_of(photo)
    assert found["xmp"] == found["iptc"] == [*mine, "golden retriever", "dog"]
    assert "金毛" not in found["lr"] and "动物|狗|金毛" not in found["lr"]
    assert found["lr"] == ["奶奶", "Oma", "狗", "animal|dog|golden retriever"]
    write(photo, BOTH, "golden_retriever")
    assert keywords_of(photo)["xmp"] == [*mine, "金毛", "golden retriever", "dog"]
    again = write(photo, BOTH, "golden_retriever")
    assert not again.changed  # nothing new to write: the file is left alone


def test_iptc_keywords_are_cut_to_64_bytes_on_a_character_boundary(tmp_path: Path) -> None:
    photo = make_photo(tmp_path)
    assert len(TEMPLE_ZH.encode()) > 64
    write(photo, ZH, "temple")
    found = keywords_of(photo)
    assert found["xmp"] == [TEMPLE_ZH] and found["lr"] == [TEMPLE_ZH]
    (cut,) = found["iptc"]
    assert TEMPLE_ZH.startswith(cut) and len(cut.encode()) == 63  # 21 whole characters
    assert not write(photo, ZH, "temple").changed  # the cut form counts as the same word


def test_the_file_records_the_concept_ids_behind_its_words(tmp_path: Path) -> None:
    from photoscribe.metadata.recorded import read_recorded

    photo = make_photo(tmp_path)
    write(photo, ZH, "golden_retriever", "cat")
    recorded = read_recorded(photo, photo.read_bytes())
    assert recorded is not None
    assert recorded.concepts == ("golden_retriever", "cat")
    assert recorded.added_keywords == ("金毛", "狗", "猫")
