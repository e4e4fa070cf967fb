"""Which files photoscribe may write into and which get an XMP sidecar (stdlib only)."""

from __future__ import annotations

from pathlib import Path

# Camera RAW formats: never written into (vendors' parsers are fragile, and the RAW is the
# negative); their description and keywords go to a sidecar.
RAW_EXTENSIONS = frozenset(
    [
        ".3fr",
        ".ari",
        ".arw",
        ".bay",
        ".cr2",
        ".cr3",
        ".crw",
        ".dcr",
        ".dng",
        ".erf",
        ".fff",
        ".iiq",
        ".k25",
        ".kdc",
        ".mef",
        ".mos",
        ".mrw",
        ".nef",
        ".nrw",
        ".orf",
        ".ori",
        ".pef",
        ".raf",
        ".raw",
        ".rw2",
        ".rwl",
        ".sr2",
        ".srf",
        ".srw",
        ".x3f",
    ]
)
# HEIF/AVIF: exiv2 reads but cannot write them.
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".avif"})
EMBEDDABLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
PHOTO_EXTENSIONS = (
    *EMBEDDABLE_EXTENSIONS,
    *sorted(HEIF_EXTENSIONS),
    *sorted(RAW_EXTENSIONS),
)
SIDECAR_SUFFIX = ".xmp"
JPEG_SIBLINGS = (".jpg", ".JPG", ".jpeg", ".JPEG")


def is_raw(path: Path) -> bool:
    return path.suffix.lower() in RAW_EXTENSIONS


def needs_sidecar(path: Path) -> bool:
    """Formats photoscribe never writes into, whatever metadata.mode says."""
    return path.suffix.lower() in RAW_EXTENSIONS | HEIF_EXTENSIONS


def sidecar_path(path: Path) -> Path:
    """``NAME.EXT.xmp``: the name darktable and digiKam use, never ambiguous."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def lightroom_sidecar_path(path: Path) -> Path | None:
    """``NAME.xmp`` (Lightroom, Capture One) when no other photo shares the stem."""
    others = [
        p
        for p in path.parent.glob(_glob_escape(path.stem) + ".*")
        if p != path and p.suffix.lower() in PHOTO_EXTENSIONS
    ]
    return None if others else path.with_suffix(SIDECAR_SUFFIX)


def same_named_jpeg(path: Path) -> Path | None:
    """A RAW's JPEG twin (cameras shooting RAW+JPEG), to tag instead of the preview."""
    for suffix in JPEG_SIBLINGS:
        twin = path.with_suffix(suffix)
        if twin.is_file():
            return twin
    return None


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)
