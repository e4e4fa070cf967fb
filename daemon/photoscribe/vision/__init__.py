"""The CLIP side: model lifecycle, decoding, label vocabulary and zero-shot tagging.

Importing this package is cheap; torch loads on first use of a model.
"""

from photoscribe.vision.loader import decode, prepare
from photoscribe.vision.model import ClipModel
from photoscribe.vision.tagger import Encoder, Tagger

__all__ = ["ClipModel", "Encoder", "Tagger", "decode", "prepare"]
