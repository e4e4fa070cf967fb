"""One exception hierarchy for photoscribe.

Every error carries a message written for the user: what went wrong and what to
do about it. ``cli.main`` maps these to exit codes; nothing else prints tracebacks
for them.
"""

from __future__ import annotations


class PhotoscribeError(Exception):
    """Base of every error photoscribe raises on purpose."""

    exit_code = 1


class ConfigError(PhotoscribeError):
    """The configuration file or a command-line option is invalid."""

    exit_code = 2


class ModelError(PhotoscribeError):
    """The CLIP model cannot be loaded or run (missing weights, bad file, device)."""

    exit_code = 3


class StoreError(PhotoscribeError):
    """The SQLite index cannot be opened, migrated or written."""

    exit_code = 4


class AlreadyRunningError(PhotoscribeError):
    """Another `photoscribe run` already holds the instance lock on the same index."""

    exit_code = 5


class PhotoError(PhotoscribeError):
    """One photo cannot be processed; recorded as a failure, the scan goes on."""


class DecodeError(PhotoError):
    """The file is not an image we can decode (corrupt, empty, wrong extension)."""


class MetadataError(PhotoError):
    """Metadata could not be read from or written to a photo; the photo is untouched."""


class NotWritableError(MetadataError):
    """Neither the photo nor a sidecar beside it can be written (a read-only folder); the
    photo is still indexed."""


class PhotoChangedError(PhotoError):
    """The photo changed on disk while we worked on it; nothing was written, retry later."""


class CaptionError(PhotoscribeError):
    """The LLM did not give a usable caption."""


class CaptionUnavailable(CaptionError):
    """The LLM server is unreachable, too slow or failing; captions wait for a later run."""


class CaptionRejected(CaptionError):
    """The LLM answered, but the reply is not a usable caption (empty, echo, junk)."""
