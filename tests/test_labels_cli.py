"""`photoscribe labels`: the vocabulary with parents and aliases, filtered in any language,
without loading torch; the one `language` setting and its older spelling llm.language."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from photoscribe.caption import Captioner
from photoscribe.cli import main
from photoscribe.config import LLMConfig, config_from_dict, keyword_languages, language_note
from photoscribe.errors import ConfigError
from photoscribe.records import Keyword
from photoscribe.service import caption_names

SMALL = Path(__file__).parent / "data" / "vocab" / "small.tsv"
DAEMON = Path(__file__).parents[1] / "daemon"
HEAVY = ("torch", "open_clip", "pyexiv2", "numpy", "PIL")  # none needed to list the vocabulary


@pytest.fixture
def labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """labels(*args, **config) -> (exit code, stdout) of `photoscribe labels ARGS`."""

    def run(*args: str, **config: object) -> tuple[int, str]:
        cfg = tmp_path / "config.yaml"
        raw = {"tagging": {"labels_file": str(SMALL)}, **config}
        cfg.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        code = main(["--config", str(cfg), "labels", *args])
        return code, capsys.readouterr().out

    return run


def test_the_listing_shows_paths_other_names_and_aliases(labels) -> None:
    code, out = labels()
    assert code == 0
    rows = out.splitlines()
    assert (
        "animal|dog|golden retriever  (金毛)  aka 金毛寻回犬  [golden_retriever, threshold 0.27]"
        in rows
    )
    assert "food|cake; dessert|cake  (蛋糕)  [cake]" in rows
    assert not any(row.startswith("animal ") for row in rows)  # parent-only: not taggable
    assert len(rows) == 11


def test_a_query_in_chinese_or_english_and_the_language_switch(labels) -> None:
    code, out = labels("狗狗", "--language", "zh")
    assert (code, out.splitlines()) == (0, ["动物|狗  (dog)  aka puppy, doggy, 小狗, 狗狗  [dog]"])
    code, zh_default = labels("puppy", language="zh")  # the configured language by default
    assert zh_default.startswith("动物|狗  (dog)")
    code, out = labels("list", "Kite")
    assert [row.split("  ")[0] for row in out.splitlines()] == ["animal|kite", "kite"]
    code, out = labels("no such thing")
    assert (code, out) == (1, "")


def test_json_lists_every_field(labels) -> None:
    _, out = labels("--json", "金毛")
    (found,) = json.loads(out)
    assert found["id"] == "golden_retriever" and found["name"] == "golden retriever"
    assert found["names"] == {"en": "golden retriever", "zh": "金毛"}
    assert found["paths"] == ["animal|dog|golden retriever"] and found["parents"] == ["dog"]
    assert found["aliases"] == {"zh": ["金毛寻回犬"]} and found["threshold"] == 0.27


def test_labels_does_not_import_torch_numpy_or_pyexiv2(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"tagging": {"labels_file": str(SMALL)}}), encoding="utf-8")
    code = (
        "import sys; from photoscribe.cli import main; "
        f"code = main(['--config', {str(cfg)!r}, 'labels', 'dog']); "
        f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules); "
        "print('HEAVY', heavy); sys.exit(code)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(DAEMON), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        check=True,
    ).stdout
    assert "animal|dog" in out
    assert "HEAVY []" in out


def test_one_language_setting_and_the_deprecated_llm_language() -> None:
    both = config_from_dict({"language": "zh+en"})
    assert keyword_languages(both) == ("zh", "en") and both.llm.language == "zh"  # caption
    assert language_note(both) is None
    old = config_from_dict({"llm": {"language": "zh"}})
    assert old.language == "zh" and keyword_languages(old) == ("zh",)
    assert "llm.language is deprecated" in (language_note(old) or "")
    agreed = config_from_dict({"language": "zh", "llm": {"language": "zh"}})
    assert agreed.llm.language == "zh"
    with pytest.raises(ConfigError, match=r"language is 'en' but llm\.language is 'zh'"):
        config_from_dict({"language": "en", "llm": {"language": "zh"}})
    with pytest.raises(ConfigError, match="not one of en, zh, zh\\+en"):
        config_from_dict({"language": "fr"})
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"_legacy_language": True})  # internal, not a key of the file
    assert keyword_languages(config_from_dict({})) == ("en",)


def test_the_llm_reads_the_keywords_in_the_captions_language(fake_llm) -> None:
    config = config_from_dict(
        {
            "language": "zh",
            "tagging": {"labels_file": str(SMALL)},
            "llm": {"base_url": fake_llm.base_url},
        }
    )
    llm = LLMConfig(base_url=fake_llm.base_url, language="zh")
    captioner = Captioner(llm, "x", name_of=caption_names(config))
    captioner.caption([Keyword("golden_retriever", 0.8), Keyword("cat", 0.3)])
    user = fake_llm.requests[0]["messages"][1]["content"]
    assert "金毛, 猫" in user
    assert "golden_retriever" not in user
