"""Results drawn over the input: the posed mesh (blended) and the keypoints.

The mesh needs the headless renderer (:mod:`fullcap.render`); where it is unavailable the
overlay has keypoints only and :attr:`Overlay.note` says why. Videos are written with
``cv2.VideoWriter`` (MPEG-4 part 2 in .mp4), images as PNG.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from fullcap.render import RenderUnavailable, draw_keypoints
from fullcap.skeletons import BODY33_SET, HAND21_SET
from fullcap.types import FrameResult

__all__ = ["Overlay", "VideoWriter"]

_BODY = (80, 220, 80)
_LEFT, _RIGHT, _FACE = (240, 160, 40), (40, 160, 240), (240, 240, 240)
_MESH_ALPHA = 0.55


class Overlay:
    """Draws results over frames.

    Args:
        faces: (F, 3) mesh triangles (None: keypoints only); colors: (V, 3) RGB in [0, 1].
        min_conf: keypoints below this confidence are drawn hollow.
    """

    def __init__(
        self, faces: np.ndarray | None = None, colors: np.ndarray | None = None, min_conf=0.3
    ):
        self.faces, self.colors, self.min_conf = faces, colors, min_conf
        self.note: str | None = None
        self._renderer = None

    def _render(self, image: np.ndarray, vertices: np.ndarray, K: np.ndarray) -> np.ndarray:
        if self.faces is None or self.note is not None:
            return image
        h, w = image.shape[:2]
        r = self._renderer
        if r is None or (r.width, r.height) != (w, h):
            try:
                from fullcap.render import Renderer

                if r is not None:
                    r.release()
                r = self._renderer = Renderer(w, h)
            except RenderUnavailable as exc:
                self.note = f"overlay without mesh: {exc}"
                return image
        out = r.render(vertices, self.faces, K, vertex_colors=self.colors, background=image)
        mask = out.mask[..., None]
        blend = image * (1 - _MESH_ALPHA) + out.rgb * _MESH_ALPHA
        return np.where(mask, blend, image).astype(np.uint8)

    def draw(self, image: np.ndarray, result: FrameResult) -> np.ndarray:
        """(H, W, 3) uint8 RGB with ``result`` drawn on a copy of ``image``."""
        out = np.ascontiguousarray(image)
        for p in result.people:
            if p.mesh is not None and result.camera is not None:
                out = self._render(out, p.mesh.vertices, result.camera)
            x0, y0, x1, y1 = np.round(p.bbox).astype(int).tolist()
            out = out.copy()
            cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 0), 1)
            if p.body is not None:
                out = draw_keypoints(
                    out, p.body.uv, BODY33_SET.edges, p.body.conf >= self.min_conf, _BODY
                )
            for hand, color in ((p.left_hand, _LEFT), (p.right_hand, _RIGHT)):
                if hand is not None:
                    k = hand.keypoints
                    out = draw_keypoints(
                        out, k.uv, HAND21_SET.edges, k.conf >= self.min_conf, color, 2, 1
                    )
            if p.face is not None:
                k = p.face.landmarks
                out = draw_keypoints(out, k.uv, None, k.conf >= self.min_conf, _FACE, 1, 1)
        return out

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.release()
            self._renderer = None


class VideoWriter:
    """Frames (H, W, 3) uint8 RGB to a video file at ``fps``; the size is the first frame's
    (later frames of another size are resized)."""

    def __init__(self, path: str | os.PathLike[str], fps: float):
        self.path, self.fps = Path(path), float(fps)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.count = 0

    def write(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                raise OSError(f"cannot write video {self.path} (OpenCV VideoWriter failed)")
        if (w, h) != self._size:
            rgb = cv2.resize(rgb, self._size)
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.count += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
