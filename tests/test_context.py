"""Opt-in facts from the photo's own metadata in the caption prompt (privacy by default)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pyexiv2
import pytest

from photoscribe.caption.context import PhotoContext, context_from, context_reader, describe
from photoscribe.caption.prompt import build_messages, prompts_for
from photoscribe.cli import main
from photoscribe.config import config_from_dict
from photoscribe.errors import ConfigError
from photoscribe.records import Keyword

from conftest import tiny_config_dict
from fixtures.synthetic import draw_shape

ALL = ("date", "time_of_day", "season", "camera", "place")
TAGS = {
    "Exif.Image.Make": "Canon",
    "Exif.Image.Model": "Canon EOS 5D Mark IV",
    "Exif.Photo.DateTimeOriginal": "2019:07:14 16:02:11",
    "Exif.GPSInfo.GPSLatitudeRef": "N",
    "Exif.GPSInfo.GPSLatitude": "38/1 43/1 0/1",
}


def photo_with_metadata(path: Path) -> Path:
    draw_shape("red", "circle", size=(320, 240), seed=5).save(path, quality=90)
    with pyexiv2.Image(str(path)) as img:  # test set-up only; photoscribe never does this
        img.modify_exif(TAGS)
        img.modify_iptc(
            {"Iptc.Application2.City": "Lisbon", "Iptc.Application2.CountryName": "Portugal"}
        )
        img.modify_xmp({"Xmp.iptc.Location": "Alfama"})
    return path


def test_context_line_in_english_and_chinese() -> None:
    ctx = PhotoContext(datetime(2019, 7, 14, 16, 2), "Canon EOS 5D", "Alfama, Lisbon, Portugal")
    assert describe(ctx, ALL, "en") == (
        "Taken on 14 July 2019, on a summer afternoon, with a Canon EOS 5D, "
        "in Alfama, Lisbon, Portugal."
    )
    assert describe(ctx, ALL, "zh") == (
        "照片信息：2019年7月14日，夏天的下午，使用Canon EOS 5D拍摄，"
        "地点：Alfama, Lisbon, Portugal。"
    )
    assert describe(ctx, ("season",), "en") == "Taken in summer."
    assert describe(ctx, ("time_of_day",), "en") == "Taken in the afternoon."
    assert describe(ctx, (), "en") is None
    assert describe(PhotoContext(), ALL, "en") is None


def test_seasons_follow_the_hemisphere() -> None:
    july = PhotoContext(datetime(2019, 7, 14, 23, 0), southern=True)
    assert describe(july, ("season", "time_of_day"), "en") == "Taken on a winter night."
    assert describe(july, ("season",), "en", hemisphere="north") == "Taken in summer."
    december = PhotoContext(datetime(2019, 12, 24, 8, 0))
    assert describe(december, ("season", "time_of_day"), "en") == "Taken on a winter morning."


def test_values_read_from_tags() -> None:
    ctx = context_from(
        {
            **TAGS,
            "Exif.GPSInfo.GPSLatitudeRef": "S",
            "Xmp.photoshop.City": "Cape Town",
            "Iptc.Application2.City": "Kaapstad",  # XMP wins over IPTC for the same part
            "Xmp.photoshop.Country": {'lang="x-default"': "South Africa"},
        }
    )
    assert ctx.taken == datetime(2019, 7, 14, 16, 2)
    assert ctx.camera == "Canon EOS 5D Mark IV"  # make not repeated
    assert ctx.place == "Cape Town, South Africa"
    assert ctx.southern is True
    assert context_from({"Exif.Image.Make": "Apple", "Exif.Image.Model": "iPhone 6"}).camera == (
        "Apple iPhone 6"
    )


@pytest.mark.parametrize("bad", ["0000:00:00 00:00:00", "", "garbage", "2019:13:45 10:00:00"])
def test_placeholder_dates_are_ignored(bad: str) -> None:
    assert context_from({"Exif.Photo.DateTimeOriginal": bad}).taken is None


def test_reader_on_a_real_file_and_on_garbage(tmp_path: Path) -> None:
    path = photo_with_metadata(tmp_path / "a.jpg")
    read = context_reader(ALL, "en", "auto")
    assert read(path.read_bytes()) == (
        "Taken on 14 July 2019, on a summer afternoon, with a Canon EOS 5D Mark IV, "
        "in Alfama, Lisbon, Portugal."
    )
    assert read(b"not a photo") is None


def test_prompt_gets_context_and_scored_keywords() -> None:
    keywords = [Keyword("sofa", 0.2), Keyword("cat", 0.62)]
    messages = build_messages(keywords, language="en", thinking=False, context="Taken in summer.")
    user = messages[1]["content"]
    assert user.startswith(
        "Seen in the photo, most likely first: cat, sofa\n"
        "<photo_metadata>\nTaken in summer.\n</photo_metadata>\n"
    )
    own = prompts_for("en", user="Tags: {keywords_scored}")
    user = build_messages(keywords, language="en", thinking=True, prompts=own, context="X.")[1]
    assert user["content"] == "Tags: cat (62%), sofa (20%)\n<photo_metadata>\nX.\n</photo_metadata>"


@pytest.mark.parametrize(
    ("llm", "message"),
    [
        ({"context": ["date", "gps"]}, r"llm\.context may list only: date, time_of_day"),
        ({"user_prompt": "no placeholder"}, r"llm\.user_prompt must contain \{keywords\}"),
        ({"user_prompt": "{keywords} and {unknown}"}, r"llm\.user_prompt must contain"),
    ],
)
def test_bad_context_settings_are_config_errors(llm: dict, message: str, tmp_path: Path) -> None:
    raw = tiny_config_dict(tmp_path)
    raw["llm"].update(llm)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def scan_and_prompts(tmp_path: Path, fake_llm, llm: dict) -> list[str]:
    import yaml

    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    photo_with_metadata(folder / "trip.jpg")
    raw = tiny_config_dict(tmp_path, fake_llm.base_url)
    raw["llm"].update(llm)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["--config", str(cfg), "scan", "--force", str(folder)]) == 0
    return [m["content"] for r in fake_llm.requests for m in r["messages"] if m["role"] == "user"]


def test_by_default_only_keywords_reach_the_llm(tmp_path: Path, fake_llm) -> None:
    prompts = scan_and_prompts(tmp_path, fake_llm, {})
    assert len(prompts) == 1  # one photo, one caption request
    for text in prompts:
        for private in ("2019", "Canon", "Lisbon", "Alfama", "summer", "38"):
            assert private not in text


def test_allowed_context_reaches_the_llm(tmp_path: Path, fake_llm) -> None:
    prompts = scan_and_prompts(tmp_path, fake_llm, {"context": ["date", "season", "place"]})
    assert any(
        "Taken on 14 July 2019, in summer, in Alfama, Lisbon, Portugal." in p for p in prompts
    )
    assert not any("Canon" in p for p in prompts)  # camera was not allowed
