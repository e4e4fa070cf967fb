"""Keywords are stored as concept ids; search finds them by their names and aliases in
every language and by their ancestors, whatever language they were written in."""

from __future__ import annotations

from pathlib import Path

import yaml

from photoscribe.cli import main
from photoscribe.search import SearchQuery, search
from photoscribe.store import open_store

from conftest import tiny_config_dict
from fixtures.daemon import write_photo

TINY_VOCAB = Path(__file__).parent / "data" / "vocab" / "tiny.tsv"


def test_a_photo_tagged_in_english_is_found_by_its_chinese_names(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    red = write_photo(photos / "red.jpg", 0, size=(160, 160))  # a red circle
    raw = tiny_config_dict(tmp_path)
    raw["llm"] = {"enabled": False}
    raw["language"] = "en"
    raw["tagging"] = {**raw["tagging"], "labels_file": str(TINY_VOCAB)}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert main(["--config", str(config), "scan", str(photos)]) == 0
    store = open_store(Path(raw["index_path"]), readonly=True)
    row = store.by_path(red)
    assert "red" in [k.label for k in row.keywords]  # the id, written as "red"

    def found(text: str = "", keywords: tuple[str, ...] = ()) -> list[str]:
        query = SearchQuery(text, 10, keywords=keywords, use_clip=False)
        return [h.path.name for h in search(store, query)]

    assert found("红色") == ["red.jpg"]  # the zh name of a keyword written in English
    assert found("颜色") == ["red.jpg"]  # an ancestor (parent_only: never written flat)
    assert found("red") == ["red.jpg"]
    assert found(keywords=("红色",)) == ["red.jpg"]
    assert found("绿色") == []  # not a keyword of this photo
    store.close()
