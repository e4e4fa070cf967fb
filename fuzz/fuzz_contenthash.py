"""Fuzz target: the content hash's container walkers (JPEG/PNG/WebP) and PIL fallback.

Every input must give a ``scheme:hexdigest`` or a DecodeError; and, for a JPEG/PNG/WebP
whose walker accepts it, the same digest again (the hash is a pure function)."""

from __future__ import annotations

import sys

from harness import instrumented, run

with instrumented():
    from photoscribe.contenthash import content_hash, sniff_format
    from photoscribe.errors import DecodeError

SCHEMES = ("jpeg:", "png:", "webp:", "px:")


def test_one_input(data: bytes) -> None:
    try:
        digest = content_hash(data)
    except DecodeError as exc:
        assert str(exc), "a DecodeError without a reason"
        return
    assert digest.startswith(SCHEMES), digest
    if not digest.startswith("px:"):
        assert digest.startswith(f"{sniff_format(data)}:"), digest
        assert content_hash(data) == digest


if __name__ == "__main__":
    run(test_one_input, sys.argv)
