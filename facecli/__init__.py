"""facecli: batch facial behaviour measurement for images and videos."""

__version__ = "0.1.0"
