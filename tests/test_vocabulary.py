"""The vocabulary: the TSV format, its rules, the user's overrides, the older label list."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import photoscribe
from photoscribe.config import TaggingConfig
from photoscribe.errors import ConfigError
from photoscribe.vision.vocabulary import (
    FORBIDDEN,
    check,
    load_vocabulary,
    parse_vocabulary,
    slug,
    vocabulary_for,
)

from conftest import TINY_CLIP

SMALL = Path(__file__).parent / "data" / "vocab" / "small.tsv"
SHIPPED = Path(photoscribe.__file__).parent / "data" / "vocabulary.tsv"
HEADER = "id\tparents\tprompts\tname.en\tname.zh\taliases.en\taliases.zh\tthreshold\tgroup\tflags"


def write(tmp_path: Path, *lines: str, name: str = "mine.tsv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_small_file_loads_with_names_parents_and_flags() -> None:
    vocab = load_vocabulary(SMALL)
    dog = vocab["golden_retriever"]
    assert dog.names == {"en": "golden retriever", "zh": "金毛"}
    assert dog.aliases["zh"] == ("金毛寻回犬",)
    assert dog.threshold == 0.27
    assert vocab["indoor"].group == "place_io"
    assert vocab["animal"].parent_only and vocab["kite_toy"].homonym
    assert "animal" not in {c.id for c in vocab.taggable()}
    assert vocab["kite_toy"].prompts == ("kite (toy)", "a kite flying in the sky")


def test_ancestors_paths_names_and_lookup() -> None:
    vocab = load_vocabulary(SMALL)
    assert vocab.ancestors("golden_retriever") == ("dog", "animal")
    assert vocab.paths("golden_retriever") == [("animal", "dog", "golden_retriever")]
    assert vocab.paths("cake") == [("food", "cake"), ("dessert", "cake")]
    assert vocab.name("dog", "zh") == "狗"
    assert vocab.name("dog", "fr") == "dog"  # no French name: English
    assert vocab.lookup("狗狗") == ["dog"]
    assert vocab.lookup("Puppy") == ["dog"]
    assert vocab.lookup("golden retriever") == ["golden_retriever"]
    assert vocab.lookup("kite") == ["kite_bird", "kite_toy"]
    assert vocab.lookup("nothing") == []


def test_the_older_plain_label_list_still_works(tmp_path: Path) -> None:
    vocab = vocabulary_for(TaggingConfig(labels_file=TINY_CLIP / "labels.txt"))
    assert vocab["red"].names == {"en": "red"} and vocab["red"].prompts == ("red",)
    assert vocab["red"].parents == ()
    labels = write(tmp_path, "Golden Retriever", "# a comment", "sofa  # furniture", "金毛")
    vocab = vocabulary_for(TaggingConfig(labels_file=labels, extra_labels=("sofa", "bird")))
    assert [c.id for c in vocab] == ["golden_retriever", "sofa", slug("金毛"), "bird"]
    assert vocab["golden_retriever"].names["en"] == "Golden Retriever"


def test_overrides_add_rename_alias_threshold_and_parents(tmp_path: Path) -> None:
    mine = write(
        tmp_path,
        "# my own words",
        "id\tname.zh\taliases.zh\tthreshold\tparents\tprompts\tname.en",
        "golden_retriever\t金毛寻回犬\t大金毛\t0.3",
        "cat\t\t\t\t\t",  # empty cells change nothing
        "corgi\t柯基\t\t\tdog\tcorgi\tcorgi",
    )
    vocab = load_vocabulary(SMALL, mine)
    golden = vocab["golden_retriever"]
    assert golden.names == {"en": "golden retriever", "zh": "金毛寻回犬"}
    assert golden.aliases["zh"] == ("大金毛",) and golden.threshold == 0.3
    assert golden.prompts == ("golden retriever",)  # not given: kept
    assert vocab["cat"] == load_vocabulary(SMALL)["cat"]
    assert vocab.paths("corgi") == [("animal", "dog", "corgi")]
    assert vocab.lookup("大金毛") == ["golden_retriever"]


def test_disable_is_a_blocklist_and_a_disabled_parent_stays_a_path(tmp_path: Path) -> None:
    vocab = load_vocabulary(SMALL, disabled=("cat", "dog"))
    assert "cat" not in vocab
    assert vocab["dog"].parent_only  # golden retrievers are still animal|dog|…
    assert "dog" not in {c.id for c in vocab.taggable()}
    assert vocab.paths("golden_retriever") == [("animal", "dog", "golden_retriever")]
    with pytest.raises(ConfigError, match=r"tagging.disable: unicorn not in the vocabulary"):
        load_vocabulary(SMALL, disabled=("unicorn",))


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["dog\t\tdog\tdog\t狗,犬"], r"mine.tsv:3: '狗,犬' of dog contains ','"),
        (["Dog\t\tdog\tdog\t狗"], r"mine.tsv:3: id 'Dog' must be lowercase"),
        (["pup\tdoggo\tpup\tpup\t小狗2"], r"mine.tsv:3: parent\(s\) doggo of pup are not in"),
        (["pup\t\tpup\tpup"], r"mine.tsv:3: pup has no name.zh"),
        (["pup\t\t\tpup\t幼犬"], r"mine.tsv:3: pup has no prompts"),
        (["pup\t\tpup\tpup\t幼犬\t\t\thigh"], r"mine.tsv:3: threshold 'high' must be a cosine"),
        (["pup\t\tpup\tpup\t幼犬\t\t\t\t\tsecret"], r"mine.tsv:3: unknown flag\(s\) secret"),
        (["pup\t\tpup\tpuppy\t狗"], r"mine.tsv:4: name.zh '狗' of dog is also the name of pup"),
        (["a\tb\ta\ta\t甲", "b\ta\tb\tb\t乙"], r"mine.tsv:\d: the parents form a cycle"),
        (["cat\t\tcat\tcat\t猫"], r"mine.tsv:5: id cat is also used at .*mine.tsv:3"),
        (["x\t\tx\tx\t叉\t\t\t\t\t\textra"], r"mine.tsv:3: 11 tab-separated cells"),
    ],
)
def test_a_broken_file_names_the_line_and_the_fix(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = write(
        tmp_path, "# comment", HEADER, *lines, "dog\t\tdog\tdog\t狗", "cat\t\tcat\tcat\t猫"
    )
    with pytest.raises(ConfigError, match=message):
        load_vocabulary(path)


def test_a_broken_override_names_its_line(tmp_path: Path) -> None:
    bad_add = write(tmp_path, "id\tname.zh", "", "corgi\t柯基")
    with pytest.raises(ConfigError, match=r"mine.tsv:3: corgi is not in the vocabulary.*prompts"):
        load_vocabulary(SMALL, bad_add)
    bad_name = write(tmp_path, "id\tname.zh", "dog\t狗|犬", name="two.tsv")
    with pytest.raises(ConfigError, match=r"two.tsv:2: '狗\|犬' of dog contains '\|'"):
        load_vocabulary(SMALL, bad_name)
    clash = write(tmp_path, "id\tname.zh", "cat\t狗", name="three.tsv")
    with pytest.raises(ConfigError, match=r"three.tsv:2: name.zh '狗' of cat is also the name"):
        load_vocabulary(SMALL, clash)
    no_header = write(tmp_path, "dog\t狗", name="four.tsv")
    with pytest.raises(ConfigError, match=r"four.tsv:1: the header must name the columns"):
        load_vocabulary(SMALL, no_header)
    with pytest.raises(ConfigError, match=r"cannot read tagging\.concepts_file"):
        load_vocabulary(SMALL, tmp_path / "missing.tsv")


def test_config_keys_reach_the_loader(tmp_path: Path) -> None:
    mine = write(tmp_path, "id\tname.zh", "dog\t汪星人")
    cfg = TaggingConfig(labels_file=SMALL, concepts_file=mine, disable=("cat",))
    vocab = vocabulary_for(cfg)
    assert vocab.name("dog", "zh") == "汪星人" and "cat" not in vocab


def test_the_shipped_vocabulary_keeps_the_rules() -> None:
    """unique ids, en+zh names, parents exist, no cycles, no separators or commas in any
    name, no repeated display name within a language unless flagged homonym, >= 1,500."""
    assert SHIPPED.is_file(), "the package must ship data/vocabulary.tsv"
    text = SHIPPED.read_text(encoding="utf-8")
    items = parse_vocabulary(text, "vocabulary.tsv")
    check(items)  # raises ConfigError naming the line
    concepts = [c for _, c in items]
    assert len([c for c in concepts if not c.parent_only]) >= 1500
    for c in concepts:
        assert c.names.get("en") and c.names.get("zh"), c.id
        for word in (*c.prompts, *c.names.values(), *(a for g in c.aliases.values() for a in g)):
            assert not any(ch in word for ch in FORBIDDEN), (c.id, word)
    default = vocabulary_for(TaggingConfig())
    assert len(default) == len(concepts)


def test_check_catches_what_the_shipped_test_relies_on() -> None:
    """The rules the shipped-file test runs are themselves live (each one fires)."""
    good = parse_vocabulary(SMALL.read_text(encoding="utf-8"), "small.tsv")
    check(good)
    broken = [(w, replace(c, names={"en": c.names["en"]}) if c.id == "dog" else c) for w, c in good]
    with pytest.raises(ConfigError, match=r"dog has no name\.zh"):
        check(broken)
    cyc = [
        (w, replace(c, parents=("golden_retriever",)) if c.id == "animal" else c) for w, c in good
    ]
    with pytest.raises(ConfigError, match="cycle"):
        check(cyc)
