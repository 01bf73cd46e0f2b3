"""Overlays: a finished facecli table drawn onto its input videos or images."""

from facecli.overlay.draw import FrameFaces, OverlayStyle, draw_faces

__all__ = ["FrameFaces", "OverlayStyle", "draw_faces"]
