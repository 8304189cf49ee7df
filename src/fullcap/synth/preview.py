"""Contact sheet of synthetic samples with their labels drawn, to check the engine by eye.

Keypoints: filled green = visible, hollow red = not visible (occluded or outside); skeleton
edges (thin when an end is hidden) between points that are both inside the image. Boxes:
body white, left hand cyan, right hand magenta, face yellow; grey when ``box_valid`` is 0
(the part is not seen). Titles: index, source, shot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fullcap.io import save_png
from fullcap.render import contact_sheet, draw_keypoints
from fullcap.skeletons import KEYPOINT_SETS
from fullcap.synth.camera import SHOTS
from fullcap.synth.engine import BOXES, SynthEngine, SynthSample

__all__ = ["draw_sample", "preview"]

logger = logging.getLogger(__name__)

_BOX_COLORS = {
    "body": (255, 255, 255),
    "left_hand": (0, 255, 255),
    "right_hand": (255, 0, 255),
    "face": (255, 255, 0),
}
_SET_ALIAS = {"left_hand": "hand21", "right_hand": "hand21"}


def _edges(set_name: str, n: int) -> Sequence[tuple[int, int]]:
    ks = KEYPOINT_SETS.get(_SET_ALIAS.get(set_name, set_name))
    return ks.edges if ks is not None and len(ks) == n else ()


def draw_sample(sample: SynthSample, decode: bool = True) -> np.ndarray:
    """The stored image (decoded from its JPEG when ``decode``) with labels drawn, (H, W, 3)."""
    if decode:
        img = cv2.imdecode(np.frombuffer(sample.jpeg, np.uint8), cv2.IMREAD_COLOR)
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        img = sample.image.copy()
    lab = sample.labels
    for k, name in enumerate(BOXES):
        x0, y0, x1, y1 = lab["boxes"][k]
        if x1 <= x0:
            continue
        width = 1
        col = _BOX_COLORS[name] if lab["box_valid"][k] else (90, 90, 90)
        cv2.rectangle(img, (round(x0), round(y0)), (round(x1), round(y1)), col, width)
    for key in sorted(k for k in lab if k.startswith("kp2d/")):
        s = key.split("/", 1)[1]
        uv, vis = lab[key], lab[f"vis/{s}"].astype(bool)
        radius = 1.5 if len(uv) > 30 or "hand" in s else 2.5
        colors = np.where(vis[:, None], [[40, 230, 40]], [[235, 40, 40]])
        h, w = img.shape[:2]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        edges = [(i, j) for i, j in _edges(s, len(uv)) if inside[i] and inside[j]]
        img = draw_keypoints(img, uv, edges, vis, colors, radius=radius, thickness=1)
    return img


def preview(
    out_png: str | Path,
    source: str,
    n: int = 16,
    seed: int = 0,
    size: int = 256,
    cols: int = 4,
    engine: SynthEngine | None = None,
) -> Path:
    """Render ``n`` samples of ``source`` and write a labelled contact sheet PNG.

    Returns the path written. ``engine`` (optional) reuses an existing engine.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    eng = engine or SynthEngine(source, seed=seed, size=size)
    samples = eng.render(list(range(n)))
    tiles = [draw_sample(s) for s in samples]
    titles = [f"{s.index} {eng.source.name} {SHOTS[int(s.labels['shot'])]}" for s in samples]
    sheet = contact_sheet(tiles, cols=cols, titles=titles)
    logger.info("preview of %d %s samples -> %s", n, eng.source.name, out_png)
    return save_png(out_png, sheet)
