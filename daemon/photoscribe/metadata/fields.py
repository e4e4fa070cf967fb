"""The one table of what photoscribe writes: logical field → the tags of every schema.

Reading takes the first non-empty tag of a field (keyword fields: the union of all);
writing sets every tag of a field that the file's format supports. No pyexiv2 here.
Why each tag is there (who reads it) is in shared/design/METADATA.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

NS_URI = "https://photoscribe.dev/ns/1.0/"
NS_PREFIX = "photoscribe"

IPTC_CHARSET_KEY = "Iptc.Envelope.CharacterSet"
IPTC_UTF8 = "\x1b%G"  # ESC % G: "the IPTC strings are UTF-8"
X_DEFAULT = 'lang="x-default"'  # pyexiv2's spelling of a LangAlt key
XP_SEPARATOR = ";"  # Windows Explorer joins XPKeywords with ';'
PATH_SEPARATOR = "|"  # paths are held in Lightroom's form: "AI|cat"


class Kind(enum.Enum):
    TEXT = "text"  # one string
    LANG_ALT = "lang_alt"  # XMP language alternative; photoscribe writes x-default only
    BAG = "bag"  # XMP unordered array (rdf:Bag)
    SEQ = "seq"  # XMP ordered array (rdf:Seq)
    REPEATED = "repeated"  # IPTC dataset that occurs once per value
    JOINED = "joined"  # one string holding a list, XP_SEPARATOR between the items


@dataclass(frozen=True)
class Tag:
    key: str  # exiv2 key, e.g. "Xmp.dc.subject"
    kind: Kind
    # Limit per value (for JOINED: the whole string), in bytes of the tag's encoding,
    # enforced on a character boundary (never inside a UTF-8 or UTF-16 sequence).
    max_bytes: int | None = None
    ucs2: bool = False  # Windows XP* tag: UCS-2 (UTF-16LE without surrogates, so no emoji)
    path_sep: str | None = None  # hierarchical keyword tag: the separator of its paths

    @property
    def schema(self) -> str:
        """ "xmp", "iptc" or "exif"."""
        return self.key.split(".", 1)[0].lower()

    @property
    def qname(self) -> str:
        """The XML name in an XMP packet, e.g. "dc:subject"."""
        _, prefix, name = self.key.split(".", 2)
        return f"{prefix}:{name}"

    @property
    def is_list(self) -> bool:
        return self.kind in (Kind.BAG, Kind.SEQ, Kind.REPEATED, Kind.JOINED)


def _ours(name: str, kind: Kind = Kind.TEXT, max_bytes: int | None = None) -> Tag:
    return Tag(f"Xmp.{NS_PREFIX}.{name}", kind, max_bytes)


# A JPEG holds at most 64 KB of XMP and 64 KB of EXIF (exiv2 writes no ExtendedXMP), shared
# with what the camera and other programs put there; the XMP description also has a copy in
# photoscribe:addedDescription. So a description is cut (on a character boundary) to 16,000
# bytes in XMP, and to the IPTC limit of 2,000 bytes in the IPTC and EXIF tags. An LLM caption
# is a few hundred bytes; only a runaway reply gets near these limits.
XMP_TEXT_BYTES = 16_000
SHORT_TEXT_BYTES = 2_000

# Property names in photoscribe's namespace are chosen so that no exiftool tag name
# (Model, Keywords, Description, ...) is shadowed in `exiftool -j` output without groups,
# which Immich and PhotoPrism read.
FIELDS: dict[str, tuple[Tag, ...]] = {
    "description": (
        Tag("Xmp.dc.description", Kind.LANG_ALT, XMP_TEXT_BYTES),
        Tag("Iptc.Application2.Caption", Kind.TEXT, SHORT_TEXT_BYTES),
        Tag("Exif.Image.ImageDescription", Kind.TEXT, SHORT_TEXT_BYTES),  # Immich reads it first
        Tag("Exif.Image.XPComment", Kind.TEXT, 2 * SHORT_TEXT_BYTES, ucs2=True),
    ),
    # Flat keywords (each concept and its ancestors that are not parent_only, in each
    # configured language), merged with the user's own.
    "keywords": (
        Tag("Xmp.dc.subject", Kind.BAG),
        Tag("Iptc.Application2.Keywords", Kind.REPEATED, max_bytes=64),
        Tag("Exif.Image.XPKeywords", Kind.JOINED, 2 * SHORT_TEXT_BYTES, ucs2=True),
    ),
    # The concepts as paths with their parents ("animal|dog|golden retriever"); also the
    # user's flat keywords, else Immich (TagsList first)
    # and darktable (hierarchicalSubject before dc:subject) would hide them.
    "hierarchy": (
        Tag("Xmp.lr.hierarchicalSubject", Kind.BAG, path_sep="|"),
        Tag("Xmp.digiKam.TagsList", Kind.SEQ, path_sep="/"),  # digiKam's schema: rdf:Seq
    ),
    # What photoscribe wrote, so re-tagging and undo never touch the user's own values.
    "added_keywords": (_ours("addedKeywords", Kind.BAG),),
    "added_hierarchy": (_ours("addedHierarchy", Kind.BAG),),  # paths, '|'-separated
    # The concept ids behind the added keywords (language-independent; rebuild and adoption
    # read them back). The words themselves are in the configured language(s).
    "added_concepts": (_ours("addedConcepts", Kind.BAG),),
    "added_description": (_ours("addedDescription", Kind.LANG_ALT, XMP_TEXT_BYTES),),
    "model": (_ours("annotationModel"),),
    "content_hash": (_ours("contentHash"),),
    "version": (_ours("photoscribeVersion"),),
    "time": (_ours("annotatedAt"),),
}

# XMP arrays that must be rdf:Bag: exiv2 (pyexiv2.modify_xmp) writes every array as rdf:Seq.
BAG_QNAMES = tuple(one.qname for tags in FIELDS.values() for one in tags if one.kind is Kind.BAG)

# Windows XP* tags: NUL-terminated UCS-2 (as Windows and exiftool write them).
UCS2_KEYS = frozenset(one.key for tags in FIELDS.values() for one in tags if one.ucs2)

# Which schemas photoscribe writes per container (detected from the bytes, not the name).
# PNG/WebP have no standard place for IPTC; HEIF/AVIF are read-only in exiv2.
WRITABLE_SCHEMAS: dict[str, frozenset[str]] = {
    "jpeg": frozenset({"xmp", "iptc", "exif"}),
    "tiff": frozenset({"xmp", "iptc", "exif"}),
    "png": frozenset({"xmp", "exif"}),
    "webp": frozenset({"xmp", "exif"}),
}

# IFD0 tags the EXIF standard requires in a JPEG ("Missing required JPEG IFD0 tag" in
# `exiftool -validate`); set only when photoscribe creates the EXIF block itself:
# 72 × 72 dpi (the EXIF default), inches, centred chroma samples (JFIF's convention).
EXIF_IFD0_REQUIRED: dict[str, dict[str, str]] = {
    "jpeg": {
        "Exif.Image.XResolution": "72/1",
        "Exif.Image.YResolution": "72/1",
        "Exif.Image.ResolutionUnit": "2",
        "Exif.Image.YCbCrPositioning": "1",
    },
}

# Maker notes that exiv2 cannot parse are copied as an opaque blob; adding tags to IFD0 moves
# them. That is safe only where their offsets count from the maker note's own start (as
# exiftool's MakerNotes.pm says: Base => '$start - N'); others count from the TIFF header and
# break when moved (measured: Minolta DiMAGE X, "Invalid PrintIM header"). Their headers:
RELOCATABLE_MAKERNOTES = (b"Apple iOS\x00", b"MOT\x00")  # Apple, Motorola
MAKERNOTE_KEY = "Exif.Photo.MakerNote"
PARSED_MAKERNOTE_PREFIX = "Exif.MakerNote."  # exiv2 sets Exif.MakerNote.Offset when it parsed it

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


def tag_by_key(key: str) -> Tag | None:
    return _BY_KEY.get(key)


_BY_KEY = {one.key: one for tags in FIELDS.values() for one in tags}
