"""Fuzz target: the byte patchers photoscribe owns (Photoshop IPTCDigest, PNG iCCP, WebP
chunks, XMP packet counting). They promise to leave anything that does not parse alone,
so no input may raise; a patch may only change the 16 digest bytes."""

from __future__ import annotations

import sys

from harness import instrumented, run

with instrumented():
    from photoscribe.metadata import packets, photoshop, png, webp

FORMATS = ("jpeg", "tiff", "png", "webp")


def test_one_input(data: bytes) -> None:
    half = len(data) // 2
    old, new = data, data[:half] + data[half:][::-1]
    for fmt in ("jpeg", "tiff"):
        photoshop.find_digest(data, fmt)
        patched = photoshop.refresh_iptc_digest(old, new, fmt)
        assert len(patched) == len(new)
        assert sum(a != b for a, b in zip(patched, new, strict=True)) <= 16
    png.keep_icc_chunk(old, new)
    webp.chunks(data)
    webp.vp8x(data)
    webp.layout_change(old, new)
    if webp.chunks(data) is not None:
        assert webp.chunks(webp.without_xmp(data)) is not None
        assert webp.chunks(webp.simple_if_possible(data)) is not None
    for fmt in FORMATS:
        assert packets.xmp_packets(data, fmt) >= 0


if __name__ == "__main__":
    run(test_one_input, sys.argv)
