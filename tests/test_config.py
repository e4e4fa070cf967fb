from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from photoscribe.config import Config, config_from_dict, is_key, load_config
from photoscribe.errors import ConfigError

ROOT = Path(__file__).parent.parent


def test_empty_config_is_all_defaults(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("")
    assert load_config(tmp_path / "c.yaml") == Config()


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", explicit=True)


def test_photoscribe_config_naming_a_missing_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "typo.yaml"
    monkeypatch.setenv("PHOTOSCRIBE_CONFIG", str(missing))
    with pytest.raises(ConfigError) as err:
        load_config()
    assert "$PHOTOSCRIBE_CONFIG" in str(err.value) and str(missing) in str(err.value)


def test_photoscribe_config_naming_a_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c.yaml").write_text("llm:\n  timeout: 7\n")
    monkeypatch.setenv("PHOTOSCRIBE_CONFIG", str(tmp_path / "c.yaml"))
    assert load_config().llm.timeout == 7.0


def test_missing_default_file_is_all_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PHOTOSCRIBE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing"))
    assert load_config() == Config()


def test_a_section_with_every_key_commented_out_is_all_defaults(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "llm:\n  # base_url: http://nas:8000/v1\n  # model: Qwen3-1.7B\nmetadata:\n"
        "scan:\n  skip_hidden: false\n"
    )
    cfg = load_config(tmp_path / "c.yaml")
    assert cfg.llm == Config().llm and cfg.metadata == Config().metadata
    assert cfg.scan.skip_hidden is False


def test_a_null_value_for_a_plain_key_is_still_an_error() -> None:
    with pytest.raises(ConfigError, match=r"config\.index_path: expected a path"):
        config_from_dict({"index_path": None})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"llm": {"bogus": 1}}, r"config\.llm: unknown key\(s\) bogus"),
        ({"llm": {"language": "fr"}}, "not one of en, zh"),
        ({"llm": {"timeout": "soon"}}, r"config\.llm\.timeout: expected float"),
        ({"model": {"batch_size": True}}, "expected a number"),
        ({"model": {"batch_size": -1}}, "batch_size must be at least 1"),
        ({"tagging": {"templates": ["no placeholder"]}}, "needs {}"),
        ({"tagging": {"extra_labels": "cat"}}, "expected a list"),
        ({"llm": []}, "expected a mapping"),
    ],
)
def test_bad_values_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_types_are_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTO_HOME", str(tmp_path))
    cfg = config_from_dict(
        {
            "index_path": "$PHOTO_HOME/i.db",
            "llm": {"timeout": 5},
            "tagging": {"extra_labels": ["x"]},
        }
    )
    assert cfg.index_path == tmp_path / "i.db"
    assert cfg.llm.timeout == 5.0 and isinstance(cfg.llm.timeout, float)
    assert cfg.tagging.extra_labels == ("x",)


def test_api_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config_from_dict({"llm": {"api_key_env": "PS_TEST_KEY"}})
    monkeypatch.delenv("PS_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\$PS_TEST_KEY, which is not set"):
        cfg.llm_api_key()
    monkeypatch.setenv("PS_TEST_KEY", "sk-123")
    assert cfg.llm_api_key() == "sk-123"


def _keys(cls: type, prefix: str = "") -> set[str]:
    out = set()
    for f in dataclasses.fields(cls):
        if not is_key(f):  # derived from another key (llm.base_urls)
            continue
        if dataclasses.is_dataclass(f.type) or (
            isinstance(f.type, str) and f.type.endswith("Config")
        ):
            sub = getattr(Config(), f.name).__class__
            out |= _keys(sub, f"{prefix}{f.name}.")
        else:
            out.add(prefix + f.name)
    return out


def _yaml_keys(data: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in data.items():
        if isinstance(value, dict) and value:  # a section; {} is an empty mapping value
            out |= _yaml_keys(value, f"{prefix}{key}.")
        else:
            out.add(prefix + key)
    return out


def test_example_documents_every_key_with_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("STATE_DIRECTORY", "CACHE_DIRECTORY", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    raw = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    assert _yaml_keys(raw) == _keys(Config)
    assert config_from_dict(raw) == Config()


def test_llm_extras_and_key_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    cfg = config_from_dict(
        {
            "llm": {
                "api_key_file": str(key),
                "extra_headers": {"X-Team": "photos"},
                "extra_body": {"top_k": 20, "min_p": 0.0},
            }
        }
    )
    assert cfg.llm_api_key() == "sk-from-file"
    assert cfg.llm.extra_headers == {"X-Team": "photos"}
    assert cfg.llm.extra_body == {"top_k": 20, "min_p": 0.0}
    with pytest.raises(ConfigError, match=r"extra_headers\.X: expected str"):
        config_from_dict({"llm": {"extra_headers": {"X": 1}}})
    with pytest.raises(ConfigError, match=r"cannot read llm\.api_key_file"):
        config_from_dict({"llm": {"api_key_file": str(tmp_path / "none")}}).llm_api_key()


def test_base_url_may_name_one_server_or_several() -> None:
    one = config_from_dict({"llm": {"base_url": "http://gpu1:8000/v1"}}).llm
    assert one.base_url == "http://gpu1:8000/v1" and one.base_urls == ("http://gpu1:8000/v1",)
    assert Config().llm.base_urls == (Config().llm.base_url,)
    urls = ["http://gpu1:8000/v1", "https://gpu2:8443/v1"]
    # through the language's replace() in Config too (it must not forget the list)
    several = config_from_dict({"llm": {"base_url": urls}, "language": "zh"}).llm
    assert several.base_url == urls[0] and several.base_urls == tuple(urls)
    # one server picked out of the list (as builders.build_captions does): that one alone
    assert dataclasses.replace(several, base_url=urls[1]).base_urls == (urls[1],)


def test_base_url_list_from_a_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "llm:\n  base_url:\n    - http://gpu1:8000/v1\n    - http://gpu2:8000/v1\n"
    )
    llm = load_config(tmp_path / "c.yaml").llm
    assert llm.base_urls == ("http://gpu1:8000/v1", "http://gpu2:8000/v1")


def test_base_urls_is_not_a_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) base_urls"):
        config_from_dict({"llm": {"base_urls": ["http://gpu1:8000/v1"]}})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], r"llm\.base_url: the list of servers is empty"),
        (["http://gpu1:8000/v1", 8000], r"llm\.base_url\[1\]: expected a URL"),
        (["http://gpu1:8000/v1", None], r"llm\.base_url\[1\]: expected a URL"),
        (["gpu1:8000/v1"], r"llm\.base_url\[0\]: 'gpu1:8000/v1' is not an http:// or https://"),
        (["ftp://gpu1/v1"], r"llm\.base_url\[0\]: .* is not an http:// or https://"),
        ("gpu1:8000/v1", r"llm\.base_url: 'gpu1:8000/v1' is not an http:// or https://"),
        (8000, r"llm\.base_url: expected a URL"),
        ({"url": "http://gpu1:8000/v1"}, r"llm\.base_url: expected a URL"),
        (
            ["http://gpu1:8000/v1", "http://gpu2:8000/v1", "http://GPU1:8000/v1/"],
            r"llm\.base_url\[2\]: .* is listed twice \(llm\.base_url\[0\] names it too\)",
        ),
    ],
)
def test_a_bad_base_url_names_the_key(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"llm": {"base_url": value}})


def test_a_bad_base_url_hides_its_password() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(
            {"llm": {"base_url": ["http://u:hunter22@a/v1", "http://u:hunter22@a/v1"]}}
        )
    assert "hunter22" not in str(err.value) and "listed twice" in str(err.value)
