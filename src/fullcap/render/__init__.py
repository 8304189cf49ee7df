"""Offscreen mesh rendering (headless EGL OpenGL) and 2-D drawing utilities.

Camera frame: OpenCV (metres; x right, y down, z forward). Pixels: origin at the top-left
corner, pixel (i, j) centred at (i + 0.5, j + 0.5). The GL parts need the ``render`` extra
(``pip install 'fullcap[render]'``) and EGL; the drawing helpers only need OpenCV.
"""

from fullcap.render.camera import intrinsics, orbit_camera
from fullcap.render.draw import contact_sheet, draw_keypoints, draw_labels
from fullcap.render.gl import Renderer, RenderOutput, RenderUnavailable

__all__ = [
    "RenderOutput",
    "RenderUnavailable",
    "Renderer",
    "contact_sheet",
    "draw_keypoints",
    "draw_labels",
    "intrinsics",
    "orbit_camera",
]
