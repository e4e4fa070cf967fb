"""The only module that imports pyexiv2: one photo held in memory, errors made ours.

Works on ``pyexiv2.ImageData`` (bytes in, bytes out) and never on ``pyexiv2.Image(path)``,
which rewrites the file in place without a temp file and fails on non-UTF-8 names.
Every error pyexiv2 raises for a damaged photo (see ``_PYEXIV2_ERRORS``) becomes a
MetadataError naming the photo and the cause. What exiv2 changes beyond the tags it is
given (a PNG's ICC chunk, a Photoshop IPTCDigest) is repaired before the bytes are returned.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import pyexiv2

from photoscribe.contenthash import sniff_format
from photoscribe.errors import MetadataError
from photoscribe.metadata.fields import BAG_QNAMES, NS_PREFIX, NS_URI, UCS2_KEYS
from photoscribe.metadata.photoshop import refresh_iptc_digest
from photoscribe.metadata.png import keep_icc_chunk
from photoscribe.metadata.webp import without_xmp

Value = str | list[str] | dict[str, str]
T = TypeVar("T")
# What pyexiv2 raises for a damaged photo: exiv2's errors (RuntimeError), its overflow
# checks (OverflowError: "Overflow in addition"), text that does not decode, and its Python
# converters meeting an odd value (AttributeError: an XP tag holding a list of values).
_PYEXIV2_ERRORS = (RuntimeError, UnicodeDecodeError, ValueError, OverflowError, AttributeError)
_EMPTY_JPEG = b"\xff\xd8\xff\xd9"  # SOI, EOI: opens in exiv2 with nothing to read

# exiv2 logs warnings to fd 1 (not Python logging); level 3 mutes them but keeps errors,
# which pyexiv2 turns into RuntimeError. Never 4: a broken XMP packet would then be
# silently dropped on the next write.
pyexiv2.set_log_level(3)
# The namespaces of the XMP properties photoscribe writes. exiv2 keeps one registry of
# prefix → URI for the process and adds to it every namespace it meets in a packet it
# parses: one damaged photo declaring xmlns:dc="http://purl.org/dc/ele3ents/1.1/" made
# every later write put dc:subject into that bogus namespace, where no program looks. So
# these are registered again before every read and write (see _register_namespaces).
NAMESPACES = (
    (NS_URI, NS_PREFIX),
    ("http://purl.org/dc/elements/1.1/", "dc"),
    ("http://ns.adobe.com/lightroom/1.0/", "lr"),
    ("http://www.digikam.org/ns/1.0/", "digiKam"),
)


def _register_namespaces() -> None:
    for uri, prefix in NAMESPACES:
        pyexiv2.registerNs(uri, prefix)


_register_namespaces()


@dataclass(frozen=True)
class Snapshot:
    """Every EXIF, IPTC and XMP tag of a photo, as pyexiv2 reads them."""

    values: dict[str, Value]
    latin1: frozenset[str]  # IPTC keys whose bytes were not UTF-8 (decoded as Latin-1)


@contextmanager
def opened(data: bytes, where: str, *, sidecar: bool = False) -> Iterator[Photo]:
    """The photo in ``data`` held by exiv2 until the block ends.

    ``sidecar``: ``data`` is an XMP sidecar. exiv2 mirrors a sidecar's XMP into EXIF and
    IPTC in memory and, when writing, copies them back into any XMP property that is
    absent, which would resurrect every property photoscribe deletes; the mirrors are
    dropped so that only the XMP is read and written."""
    photo = Photo(data, where)
    try:
        if sidecar:
            photo._call("read", photo._image.clear_exif)
            photo._call("read", photo._image.clear_iptc)
        yield photo
    finally:
        photo.close()


class Photo:
    """One image in exiv2's memory; ``where`` names it in error messages."""

    def __init__(self, data: bytes, where: str) -> None:
        self.where = where
        self._data = data  # the original (a reference, not a copy)
        self._call("read", _register_namespaces)
        self._image = self._call("read", lambda: _ImageData(data))

    def close(self) -> None:
        self._call("release", self._image.close)

    def snapshot(self) -> Snapshot:
        exif, _ = self._call("read", lambda: _read_text(self._image.read_exif))
        iptc, latin1 = self._call("read", lambda: _read_text(self._image.read_iptc))
        xmp = self._call("read", self._image.read_xmp)
        for key in UCS2_KEYS & exif.keys():  # pyexiv2 keeps the NUL terminator
            exif[key] = _without_nul(exif[key])
        return Snapshot(values={**exif, **iptc, **xmp}, latin1=latin1)

    def rewrite(self, changes: dict[str, Value | None]) -> bytes:
        """Apply ``changes`` (key → value, None deletes) and return the new file's bytes."""
        by_schema: dict[str, dict[str, Value | None]] = {"Exif": {}, "Iptc": {}, "Xmp": {}}
        for key, value in changes.items():
            if key in UCS2_KEYS and isinstance(value, str):
                value += "\x00"  # NUL-terminated, as Windows and exiftool write them
            by_schema[key.split(".", 1)[0]][key] = value
        image, xmp_left = self._image, True
        self._call("write", _register_namespaces)  # this photo's own packet may have lied
        if by_schema["Exif"]:
            self._call("write", lambda: image.modify_exif(by_schema["Exif"]))
        if by_schema["Iptc"]:
            self._call("write", lambda: image.modify_iptc(by_schema["Iptc"]))
        if by_schema["Xmp"]:
            self._call("write", lambda: image.modify_xmp(by_schema["Xmp"]))
            # modify_xmp writes every array as rdf:Seq. Re-parsing the packet makes exiv2 use
            # the array type it has registered for some (dc:subject → rdf:Bag); the others
            # that must be Bags (lr:hierarchicalSubject, our own) are turned into Bags by hand.
            # With no XMP left, exiv2 still hands out the old packet: never write that back.
            xmp_left = bool(self._call("read", image.read_xmp))
            if xmp_left:
                packet = self._call("read", image.read_raw_xmp)
                self._call("write", lambda: image.modify_raw_xmp(seqs_to_bags(packet, BAG_QNAMES)))
        new = self._call("write", image.get_bytes)
        return _repair_side_effects(self._data, new, xmp_left=xmp_left)

    def _call(self, action: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except _PYEXIV2_ERRORS as exc:
            cause = _cause(exc, _stale_errors())
            raise MetadataError(f"cannot {action} the metadata of {self.where}: {cause}") from exc


class _ImageData(pyexiv2.ImageData):  # type: ignore[misc]
    """pyexiv2.ImageData that frees its copy of the bytes when exiv2 rejects them.

    pyexiv2 copies the data into a C buffer that only ``close()`` frees; when opening
    fails there is no object to close, and every rejected file leaked its size.
    """

    def __init__(self, data: bytes) -> None:
        try:
            super().__init__(data)
        except BaseException:
            buffer = getattr(self, "buffer", None)
            if buffer is not None:
                buffer.destroy()
            raise


def _stale_errors() -> str:
    """The exiv2 errors left over by a call that failed, read out (and so cleared) now.

    pyexiv2 collects exiv2's error messages in one process-wide buffer and raises them at
    the end of the call; a call that throws first leaves them there, and the next call, for
    the next photo, raised them: a sound photo was recorded as failed with the reason of
    the damaged one before it. Opening an empty JPEG raises whatever the buffer holds."""
    try:
        _ImageData(_EMPTY_JPEG).close()
    except RuntimeError as exc:
        return " ".join(str(exc).split())
    return ""


def _repair_side_effects(old: bytes, new: bytes, *, xmp_left: bool) -> bytes:
    """Undo what exiv2 changes beyond the tags it was given: a PNG's re-compressed ICC
    profile chunk, a Photoshop IPTCDigest left stale, a WebP's XMP chunk kept with every
    property deleted (see png.py, photoshop.py and webp.py)."""
    fmt = sniff_format(old)
    if fmt == "png":
        return keep_icc_chunk(old, new)
    if fmt in ("jpeg", "tiff"):
        return refresh_iptc_digest(old, new, fmt)
    if fmt == "webp" and not xmp_left:
        return without_xmp(new)
    return new


def seqs_to_bags(packet: str, qnames: tuple[str, ...]) -> str:
    """Turn ``<q><rdf:Seq>…</rdf:Seq></q>`` into a Bag for each property ``q`` in ``qnames``.

    Only applied to packets exiv2 itself serialised, whose layout is fixed.
    """
    for qname in qnames:
        pattern = re.compile(
            rf"(<{re.escape(qname)}>\s*<rdf:)Seq(>.*?</rdf:)Seq(>\s*</{re.escape(qname)}>)",
            re.DOTALL,
        )
        packet = pattern.sub(r"\1Bag\2Bag\3", packet)
    return packet


def _read_text(reader: Callable[..., dict[str, Value]]) -> tuple[dict[str, Value], frozenset[str]]:
    """Read as UTF-8; if some tag is not UTF-8, decode that tag (only) as Latin-1."""
    try:
        return reader(encoding="utf-8"), frozenset()
    except UnicodeDecodeError:
        raw = reader(encoding="latin-1")  # lossless: every byte maps to one character
    values = {key: _redecode(value) for key, value in raw.items()}
    latin1 = frozenset(key for key, value in raw.items() if not _all_utf8(value))
    return values, latin1


def _redecode(value: Value) -> Value:
    if isinstance(value, list):
        return [_utf8_or_latin1(item) for item in value]
    if isinstance(value, dict):
        return {lang: _utf8_or_latin1(text) for lang, text in value.items()}
    return _utf8_or_latin1(value)


def _utf8_or_latin1(text: str) -> str:
    """``text`` was decoded as Latin-1: its bytes as UTF-8 if they are, else as they are."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):  # not UTF-8; or UCS-2 (XP tags) as read
        return text


def _without_nul(value: Value) -> Value:
    return value.rstrip("\x00") if isinstance(value, str) else value


def _all_utf8(value: Value) -> bool:
    items = _items(value)
    return all(item.isascii() or _utf8_or_latin1(item) != item for item in items)


def _items(value: Value) -> list[str]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


# exiv2's messages that name the part of the photo at fault, and what to tell the user.
_EXPLAINED = (
    ("XMP Toolkit error", "its XMP packet is damaged, so it is left as it is"),
    ("Offset of directory", "its EXIF block is damaged, so it is left as it is"),
    ("pointer references previously read", "its EXIF block is damaged, so it is left as it is"),
    ("entries considered invalid", "its EXIF block is damaged, so it is left as it is"),
    ("larger than 65535 bytes", "the metadata would not fit into a JPEG segment (64 KB)"),
)


def _cause(exc: BaseException, stale: str = "") -> str:
    """exiv2's reason (and what it logged before it), prefixed with the damaged part when
    it names one."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.removeprefix("Caught Exiv2 exception: ")
    if stale and stale not in text:
        text = f"{text}; {stale}"
    reason = next((reason for marker, reason in _EXPLAINED if marker in text), None)
    return f"{reason} (exiv2: {text})" if reason else text
