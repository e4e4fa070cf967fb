"""photoscribe: describe a photo library with AI and write the result into the photos."""

__version__ = "0.1.0"
