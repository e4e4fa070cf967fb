"""Natural-language captions from CLIP keywords, asked of an OpenAI-compatible LLM server.

``Captioner(cfg, api_key).caption(keywords)`` returns one or two sentences, or raises
CaptionUnavailable (server down, slow, failing or misconfigured: try in a later run) or
CaptionRejected (the server answered twice with something unusable).
``caption.spread.Spread`` asks several servers (``llm.base_url`` a list), one Captioner each.
"""

from __future__ import annotations

from photoscribe.caption.clean import clean_reply
from photoscribe.caption.client import Captioner
from photoscribe.caption.prompt import build_messages

__all__ = ["Captioner", "build_messages", "clean_reply"]
