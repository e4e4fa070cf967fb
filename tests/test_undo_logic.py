"""The undo rules on values alone (the file round trips are in test_undo.py)."""

from __future__ import annotations

from photoscribe.undo import revert

X = 'lang="x-default"'


def test_a_value_still_ours_gets_its_old_value_back_or_goes() -> None:
    entry = {
        "Xmp.dc.description": (None, {X: "A red circle."}),
        "Exif.Image.ImageDescription": ("OLYMPUS DIGITAL CAMERA", "A red circle."),
    }
    current = {
        "Xmp.dc.description": {X: "A red circle."},
        "Exif.Image.ImageDescription": "A red circle.",
    }
    assert revert(current, [entry]) == {
        "Xmp.dc.description": None,
        "Exif.Image.ImageDescription": "OLYMPUS DIGITAL CAMERA",
    }


def test_a_value_someone_changed_since_stays() -> None:
    entry = {"Xmp.dc.description": (None, {X: "A red circle."})}
    current = {"Xmp.dc.description": {X: "Grandma's garden, 1998"}}
    assert revert(current, [entry]) == {}


def test_keywords_lose_ours_keep_theirs_and_get_back_what_we_removed() -> None:
    entry = {"Xmp.dc.subject": (["holiday", "old-ours"], ["holiday", "red", "circle"])}
    current = {"Xmp.dc.subject": ["holiday", "red", "circle", "added later by the user"]}
    assert revert(current, [entry]) == {
        "Xmp.dc.subject": ["holiday", "added later by the user", "old-ours"]
    }


def test_two_writes_are_taken_back_newest_first() -> None:
    first = {"Xmp.dc.subject": (["holiday"], ["holiday", "red"])}
    second = {"Xmp.dc.subject": (["holiday", "red"], ["holiday", "blue"])}
    current = {"Xmp.dc.subject": ["holiday", "blue"]}
    assert revert(current, [second, first]) == {"Xmp.dc.subject": ["holiday"]}


def test_windows_semicolon_lists() -> None:
    entry = {"Exif.Image.XPKeywords": ("family", "family;red;circle")}
    current = {"Exif.Image.XPKeywords": "family;red;circle;beach"}
    assert revert(current, [entry]) == {"Exif.Image.XPKeywords": "family;beach"}


def test_the_iptc_utf8_marker_stays_while_iptc_text_remains() -> None:
    entry = {
        "Iptc.Envelope.CharacterSet": (None, "\x1b%G"),
        "Iptc.Application2.Keywords": (None, ["red"]),
    }
    current = {"Iptc.Envelope.CharacterSet": "\x1b%G", "Iptc.Application2.Keywords": ["red", "Öl"]}
    assert revert(current, [entry]) == {"Iptc.Application2.Keywords": ["Öl"]}
    current = {"Iptc.Envelope.CharacterSet": "\x1b%G", "Iptc.Application2.Keywords": ["red", "Oma"]}
    assert revert(current, [entry]) == {
        "Iptc.Envelope.CharacterSet": None,
        "Iptc.Application2.Keywords": ["Oma"],
    }
    current = {"Iptc.Envelope.CharacterSet": "\x1b%G", "Iptc.Application2.Keywords": ["red"]}
    assert revert(current, [entry]) == {
        "Iptc.Envelope.CharacterSet": None,
        "Iptc.Application2.Keywords": None,
    }
