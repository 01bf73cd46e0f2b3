"""Overlays: a finished facecli table drawn onto its input videos or images.

An overlay is rendered after a unit's output table is complete, from the finished rows and a
fresh decode of the input, so every column group the table has is available and resumed runs
need nothing special.

    render_overlay_video(table, src_video, dst, mesh=False, input_name=None, rotation=0)
    render_overlay_images(table, out_dir, root=None, mesh=False)
"""

from facecli.overlay.draw import FrameFaces, OverlayStyle, draw_faces
from facecli.overlay.images import ImageOverlaySummary, render_overlay_images
from facecli.overlay.paths import common_root, mirrored_path
from facecli.overlay.rows import OverlayError, read_frames
from facecli.overlay.video import OverlaySummary, render_overlay_video

__all__ = [
    "FrameFaces",
    "ImageOverlaySummary",
    "OverlayError",
    "OverlayStyle",
    "OverlaySummary",
    "common_root",
    "draw_faces",
    "mirrored_path",
    "read_frames",
    "render_overlay_images",
    "render_overlay_video",
]
