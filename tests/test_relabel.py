"""A change of `language` rewrites the keywords from the index (`photoscribe relabel`, no
CLIP), and undo still gives back exactly what was there before photoscribe wrote."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from photoscribe.cli import main
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures.exiftool import RESERIALISED, read_tags, whole_tags
from fixtures.synthetic import draw_shape

TINY_VOCAB = Path(__file__).parent / "data" / "vocab" / "tiny.tsv"
MINE = ["奶奶", "Oma"]  # the user's own keywords


@pytest.fixture
def cli(tmp_path: Path, fake_llm):
    """cli(*args, language=...) runs photoscribe with the tiny CLIP and tiny.tsv."""
    raw = tiny_config_dict(tmp_path, fake_llm.base_url)
    raw["tagging"]["labels_file"] = str(TINY_VOCAB)
    cfg = tmp_path / "config.yaml"

    def run(*args: str, language: str = "en") -> int:
        cfg.write_text(yaml.safe_dump({**raw, "language": language}), encoding="utf-8")
        return main(["--config", str(cfg), *args])

    run.index = Path(raw["index_path"])  # type: ignore[attr-defined]
    return run


def flat(path: Path) -> list[str]:
    value = read_tags(path).get("XMP-dc:Subject", [])
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def paths(path: Path) -> list[str]:
    value = read_tags(path).get("XMP-lr:HierarchicalSubject", [])
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def ours_and_mine(path: Path) -> tuple[list[str], set[str]]:
    """The user's words (in order, first) and photoscribe's (order: by score)."""
    words = flat(path)
    return [w for w in words if w in MINE], {w for w in words if w not in MINE}


def make_photos(folder: Path) -> list[Path]:
    folder.mkdir()
    plain, own = folder / "a.jpg", folder / "own-b.jpg"
    draw_shape("red", "circle", size=(320, 240), seed=1).save(plain, "JPEG", quality=90)
    draw_shape("blue", "square", size=(320, 240), seed=2).save(own, "JPEG", quality=90)
    words = [f"-XMP-dc:Subject={w}" for w in MINE] + [f"-IPTC:Keywords={w}" for w in MINE]
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-IPTC:CodedCharacterSet=UTF8", *words, str(own)],
        check=True,
    )
    return [plain, own]


def test_relabel_switches_the_language_and_undo_is_exact(tmp_path: Path, cli) -> None:
    plain, own = make_photos(tmp_path / "photos")
    before = {
        p: whole_tags(p, drop=RESERIALISED if p.name.startswith("own-") else ())
        for p in (plain, own)
    }
    assert cli("scan", "--no-caption", str(tmp_path / "photos")) == 0
    assert ours_and_mine(plain) == ([], {"red", "circle"})
    assert set(paths(plain)) == {"colour|red", "shape|circle"}
    assert ours_and_mine(own) == (MINE, {"blue", "square"})
    store = open_store(cli.index, readonly=True)
    try:
        ids = {k.label for k in store.by_path(plain).keywords}
    finally:
        store.close()
    assert ids == {"red", "circle"}  # the index keeps concept ids

    assert cli("relabel", language="zh") == 0
    assert ours_and_mine(plain) == ([], {"红色", "圆形"})
    assert set(paths(plain)) == {"颜色|红色", "形状|圆形"}
    assert ours_and_mine(own) == (MINE, {"蓝色", "正方形"})  # the user's words stay
    assert cli("relabel", str(own), language="zh+en") == 0
    assert ours_and_mine(own) == (MINE, {"蓝色", "正方形", "blue", "square"})
    assert ours_and_mine(plain) == ([], {"红色", "圆形"})  # not named: left as it was

    assert cli("undo", "--all") == 0
    for p, tags in before.items():
        after = whole_tags(p, drop=RESERIALISED if p.name.startswith("own-") else ())
        assert after == tags, p.name


def test_a_rebuilt_index_gets_the_concept_ids_back_from_the_files(tmp_path: Path, cli) -> None:
    plain, own = make_photos(tmp_path / "photos")
    assert cli("scan", "--no-caption", str(tmp_path / "photos"), language="zh") == 0
    assert ours_and_mine(own) == (MINE, {"蓝色", "正方形"})
    cli.index.unlink()  # lost: the files say which concepts their words stand for
    assert cli("index", "rebuild", str(tmp_path / "photos"), language="zh") == 0
    store = open_store(cli.index, readonly=True)
    try:
        assert {k.label for k in store.by_path(own).keywords} == {"blue", "square"}
        assert {k.label for k in store.by_path(plain).keywords} == {"red", "circle"}
    finally:
        store.close()
    assert cli("relabel", language="en") == 0  # so a language switch works after a rebuild
    assert ours_and_mine(own) == (MINE, {"blue", "square"})
