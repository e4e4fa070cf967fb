"""Optional facts from a photo's own metadata for the caption prompt (opt-in: privacy).

Only what ``llm.context`` lists is ever sent: ``date`` (the day it was taken),
``time_of_day`` (morning/afternoon/evening/night), ``season``, ``camera`` (make and
model) and ``place`` (a place *name* the photo already carries in IPTC/XMP location
fields — never GPS coordinates; nothing is looked up). The GPS latitude's hemisphere
is used locally to get the season right and is not sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from photoscribe.caption.prompt import as_data
from photoscribe.config import CONTEXT_FIELDS

log = logging.getLogger(__name__)

FIELDS = CONTEXT_FIELDS

DATE_KEYS = (
    "Exif.Photo.DateTimeOriginal",
    "Xmp.exif.DateTimeOriginal",
    "Xmp.photoshop.DateCreated",
    "Exif.Photo.DateTimeDigitized",
    "Exif.Image.DateTime",
)
# Each part of a place name: XMP first (what photo managers write), then IPTC IIM.
PLACE_KEYS = (
    ("Xmp.iptc.Location", "Iptc.Application2.SubLocation"),
    ("Xmp.photoshop.City", "Iptc.Application2.City"),
    ("Xmp.photoshop.State", "Iptc.Application2.ProvinceState"),
    ("Xmp.photoshop.Country", "Iptc.Application2.CountryName"),
)
MONTHS_EN = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
PERIODS = {  # hour ranges → (en, zh)
    range(5, 12): ("morning", "早上"),
    range(12, 17): ("afternoon", "下午"),
    range(17, 21): ("evening", "傍晚"),
}
NIGHT = ("night", "夜晚")
SEASONS_NORTH = {12: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2, 8: 2, 9: 3, 10: 3, 11: 3}
SEASON_NAMES = (("winter", "冬天"), ("spring", "春天"), ("summer", "夏天"), ("autumn", "秋天"))
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CAMERA_MAX = 60  # characters of a camera name sent to the LLM
PLACE_MAX = 120  # characters of a place name sent to the LLM


@dataclass(frozen=True)
class PhotoContext:
    taken: datetime | None = None
    camera: str | None = None
    place: str | None = None
    southern: bool | None = None  # from the GPS latitude reference, if any


def context_from(values: Mapping[str, Any]) -> PhotoContext:
    """The facts in a photo's tags (exiv2 keys → values, as pyexiv2 reads them)."""
    ref = _text(values.get("Exif.GPSInfo.GPSLatitudeRef"))
    return PhotoContext(
        taken=_first_date(values),
        camera=_camera(_text(values.get("Exif.Image.Make")), _text(values.get("Exif.Image.Model"))),
        place=_place(values),
        southern=None if not ref else ref.upper().startswith("S"),
    )


def describe(
    ctx: PhotoContext, fields: Sequence[str], language: str, hemisphere: str = "auto"
) -> str | None:
    """One line for the prompt with the allowed facts, or None if there are none."""
    zh = language == "zh"
    parts: list[str] = []
    when = ctx.taken
    if when is not None and "date" in fields:
        parts.append(_date_text(when, zh))
    if when is not None and ("season" in fields or "time_of_day" in fields):
        parts.append(_moment(when, fields, zh, _southern(ctx, hemisphere)))
    camera = as_data(ctx.camera or "", CAMERA_MAX)  # from the file: anyone may write it
    if camera and "camera" in fields:
        article = "an" if camera[0].lower() in "aeiou" else "a"
        parts.append(f"使用{camera}拍摄" if zh else f"with {article} {camera}")
    place = as_data(ctx.place or "", PLACE_MAX)
    if place and "place" in fields:
        parts.append(f"地点：{place}" if zh else f"in {place}")
    if not parts:
        return None
    return ("照片信息：" + "，".join(parts) + "。") if zh else ("Taken " + ", ".join(parts) + ".")


def context_reader(
    fields: Sequence[str], language: str, hemisphere: str
) -> Callable[[bytes], str | None]:
    """bytes of a photo → its context line (None when it has none); never raises."""

    def read(data: bytes) -> str | None:
        from photoscribe.errors import MetadataError
        from photoscribe.metadata import backend

        try:
            with backend.opened(data, "the photo") as photo:
                values = photo.snapshot().values
        except MetadataError as exc:
            log.debug("no caption context: %s", exc)
            return None
        return describe(context_from(values), fields, language, hemisphere)

    return read


def _southern(ctx: PhotoContext, hemisphere: str) -> bool:
    if hemisphere != "auto":
        return hemisphere == "south"
    return bool(ctx.southern)


def _date_text(when: datetime, zh: bool) -> str:
    if zh:
        return f"{when.year}年{when.month}月{when.day}日"
    return f"on {when.day} {MONTHS_EN[when.month - 1]} {when.year}"


def _moment(when: datetime, fields: Sequence[str], zh: bool, southern: bool) -> str:
    """'on a summer afternoon' / '夏天的下午' from whichever of the two is allowed."""
    lang = 1 if zh else 0
    season_index = (SEASONS_NORTH[when.month] + (2 if southern else 0)) % 4
    season = SEASON_NAMES[season_index][lang] if "season" in fields else None
    period = next((names for hours, names in PERIODS.items() if when.hour in hours), NIGHT)
    part = period[lang] if "time_of_day" in fields else None
    if zh:
        return "的".join(p for p in (season, part) if p)
    if season and part:
        return f"on a {season} {part}"
    return f"in the {part}" if part else f"in {season}"


def _first_date(values: Mapping[str, Any]) -> datetime | None:
    for key in DATE_KEYS:
        found = _parse_date(_text(values.get(key)))
        if found is not None:
            return found
    return None


def _parse_date(text: str | None) -> datetime | None:
    """EXIF '2019:07:14 16:02:11' or XMP ISO '2019-07-14T16:02:11+01:00' (local time)."""
    if not text:
        return None
    match = re.match(r"(\d{4})[:-](\d{2})[:-](\d{2})(?:[ T](\d{2}):(\d{2}))?", text.strip())
    if not match:
        return None
    year, month, day, hour, minute = (int(g) if g else 0 for g in match.groups())
    try:
        return datetime(year, month, day, hour, minute)
    except ValueError:  # 0000:00:00 and other placeholders cameras write
        return None


def _camera(make: str | None, model: str | None) -> str | None:
    if not model:
        return make or None
    if make and not model.lower().startswith(make.split()[0].lower()):
        return f"{make} {model}"
    return model


def _place(values: Mapping[str, Any]) -> str | None:
    parts: list[str] = []
    for keys in PLACE_KEYS:
        value = next((v for k in keys if (v := _text(values.get(k)))), None)
        if value and value.casefold() not in (p.casefold() for p in parts):
            parts.append(value)
    return ", ".join(parts) or None


def _text(value: Any) -> str | None:
    """A tag's value as one clean line (lang-alt dicts and lists take their first value)."""
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str):
        return None
    text = " ".join(_CONTROL.sub(" ", value).split())
    return text[:200] or None
