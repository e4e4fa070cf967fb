"""The one table of what photoscribe writes: logical field → the tags of every schema.

Reading takes the first non-empty tag of a field (keywords: the union of all);
writing sets every tag of a field that the file's format supports. No pyexiv2 here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

NS_URI = "https://photoscribe.dev/ns/1.0/"
NS_PREFIX = "photoscribe"

IPTC_CHARSET_KEY = "Iptc.Envelope.CharacterSet"
IPTC_UTF8 = "\x1b%G"  # ESC % G: "the IPTC strings are UTF-8"
X_DEFAULT = 'lang="x-default"'  # pyexiv2's spelling of a LangAlt key


class Kind(enum.Enum):
    TEXT = "text"  # one string
    LANG_ALT = "lang_alt"  # XMP language alternative; photoscribe writes x-default only
    BAG = "bag"  # XMP unordered array (rdf:Bag)
    REPEATED = "repeated"  # IPTC dataset that occurs once per value


@dataclass(frozen=True)
class Tag:
    key: str  # exiv2 key, e.g. "Xmp.dc.subject"
    kind: Kind
    max_bytes: int | None = None  # limit per value, enforced on a UTF-8 boundary

    @property
    def schema(self) -> str:
        """ "xmp", "iptc" or "exif"."""
        return self.key.split(".", 1)[0].lower()


def _ours(name: str, kind: Kind = Kind.TEXT) -> Tag:
    return Tag(f"Xmp.{NS_PREFIX}.{name}", kind)


# Property names in photoscribe's namespace are chosen so that no exiftool tag name
# (Model, Keywords, Description, ...) is shadowed in `exiftool -j` output without groups,
# which Immich and PhotoPrism read.
FIELDS: dict[str, tuple[Tag, ...]] = {
    "description": (
        Tag("Xmp.dc.description", Kind.LANG_ALT),
        Tag("Iptc.Application2.Caption", Kind.TEXT, max_bytes=2000),
        Tag("Exif.Image.ImageDescription", Kind.TEXT),
    ),
    "keywords": (
        Tag("Xmp.dc.subject", Kind.BAG),
        Tag("Iptc.Application2.Keywords", Kind.REPEATED, max_bytes=64),
    ),
    # What photoscribe wrote, so re-tagging and undo never touch the user's own values.
    "added_keywords": (_ours("addedKeywords", Kind.BAG),),
    "added_description": (_ours("addedDescription", Kind.LANG_ALT),),
    "model": (_ours("annotationModel"),),
    "content_hash": (_ours("contentHash"),),
    "version": (_ours("photoscribeVersion"),),
    "time": (_ours("annotatedAt"),),
}

# Our own XMP arrays: exiv2 writes unknown array properties as rdf:Seq unless told.
OWN_BAGS = tuple(
    f"{NS_PREFIX}:{tag.key.rsplit('.', 1)[1]}"
    for tags in FIELDS.values()
    for tag in tags
    if tag.kind is Kind.BAG and tag.key.startswith(f"Xmp.{NS_PREFIX}.")
)

# Which schemas photoscribe writes per container (detected from the bytes, not the name).
# PNG/WebP have no standard place for IPTC; HEIF/AVIF are read-only in exiv2.
WRITABLE_SCHEMAS: dict[str, frozenset[str]] = {
    "jpeg": frozenset({"xmp", "iptc", "exif"}),
    "tiff": frozenset({"xmp", "iptc", "exif"}),
    "png": frozenset({"xmp", "exif"}),
    "webp": frozenset({"xmp", "exif"}),
}

# Placeholders cameras put into ImageDescription; they are not a user's description.
CAMERA_PLACEHOLDERS = frozenset(
    text.casefold()
    for text in (
        "OLYMPUS DIGITAL CAMERA",
        "SONY DSC",
        "DIGITAL CAMERA",
        "KONICA MINOLTA DIGITAL CAMERA",
        "MINOLTA DIGITAL CAMERA",
        "SAMSUNG DIGITAL CAMERA",
        "SAMSUNG",
        "Default",
        "Exif_JPEG_PICTURE",
        "LEAD Technologies Inc. V1.01",
        "Image",
    )
)


def tags_for(field: str, schemas: frozenset[str]) -> tuple[Tag, ...]:
    """The tags of ``field`` that live in one of ``schemas``."""
    return tuple(tag for tag in FIELDS[field] if tag.schema in schemas)


def tag(field: str) -> Tag:
    """The only tag of a single-tag field (photoscribe's own namespace)."""
    (only,) = FIELDS[field]
    return only
