"""2-D overlays with OpenCV: keypoints, skeleton edges, text labels and contact sheets.

Images are (H, W, 3) uint8 RGB. Pixel coordinates (u, v) use the package convention: origin at
the top-left corner of the image, so the centre of pixel (column i, row j) is (i + 0.5, j + 0.5).
OpenCV itself puts pixel centres on integers; the functions here convert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

__all__ = ["contact_sheet", "draw_keypoints", "draw_labels"]

_SHIFT = 4  # fractional bits for sub-pixel cv2 drawing
_SCALE = float(1 << _SHIFT)
_LIMIT = 1e5  # points farther than this (pixels) are skipped: they would overflow fixed point

Color = Sequence[int]


def _check_image(image: Any, name: str = "image") -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3), got {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {arr.dtype}")
    return arr


def _check_uv(uv: Any) -> np.ndarray:
    if hasattr(uv, "detach"):  # torch.Tensor
        uv = uv.detach().cpu().numpy()
    arr = np.asarray(uv, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"uv must have shape (N, 2), got {tuple(arr.shape)}")
    return arr


def _colors(color: Any, n: int) -> list[tuple[int, int, int]]:
    """One RGB int tuple per point from a single (3,) colour or an (N, 3) array."""
    arr = np.asarray(color)
    if arr.shape == (3,):
        arr = np.broadcast_to(arr, (n, 3))
    if arr.shape != (n, 3):
        raise ValueError(f"color must have shape (3,) or (N, 3) = ({n}, 3), got {arr.shape}")
    return [tuple(int(c) for c in row) for row in arr]


def _fixed(p: np.ndarray) -> tuple[int, int] | None:
    """Package pixel coords (2,) -> cv2 fixed-point point, or None if not drawable."""
    if not np.all(np.isfinite(p)) or np.any(np.abs(p) > _LIMIT):
        return None
    q = np.round((p - 0.5) * _SCALE).astype(np.int64)
    return int(q[0]), int(q[1])


def draw_keypoints(
    image: Any,
    uv: Any,
    edges: Sequence[tuple[int, int]] | None = None,
    visible: Any = None,
    color: Any = (0, 255, 0),
    radius: float = 3,
    thickness: int = 2,
) -> np.ndarray:
    """Draw points and optional skeleton edges, antialiased and sub-pixel accurate.

    Args:
        image: (H, W, 3) uint8 RGB; not modified.
        uv: (N, 2) float pixel coordinates (centre of pixel (i, j) at (i + 0.5, j + 0.5)).
            Non-finite points (and edges touching them) are skipped.
        edges: optional list of (i, j) index pairs into ``uv`` drawn as lines.
        visible: optional (N,) bool; points flagged False are drawn hollow and their edges thin.
        color: RGB (3,) for everything, or (N, 3) per point (edges take the colour of ``i``).
        radius: circle radius in pixels.
        thickness: line width in pixels for edges and hollow circles.

    Returns:
        A new (H, W, 3) uint8 image.
    """
    out = np.ascontiguousarray(_check_image(image)).copy()
    pts = _check_uv(uv)
    n = len(pts)
    vis = np.ones(n, dtype=bool) if visible is None else np.asarray(visible, dtype=bool)
    if vis.shape != (n,):
        raise ValueError(f"visible must have shape (N,) = ({n},), got {vis.shape}")
    cols = _colors(color, n)
    fixed = [_fixed(p) for p in pts]
    thickness = max(int(thickness), 1)
    for i, j in edges or ():
        if not (0 <= i < n and 0 <= j < n):
            raise ValueError(f"edges contains ({i}, {j}), out of range for {n} points")
        a, b = fixed[i], fixed[j]
        if a is None or b is None:
            continue
        width = thickness if vis[i] and vis[j] else max(thickness // 2, 1)
        cv2.line(out, a, b, cols[i], width, cv2.LINE_AA, _SHIFT)
    r = max(round(float(radius) * _SCALE), 1)
    for k, p in enumerate(fixed):
        if p is None:
            continue
        cv2.circle(out, p, r, cols[k], -1 if vis[k] else thickness, cv2.LINE_AA, _SHIFT)
    return out


def draw_labels(
    image: Any,
    uv: Any,
    names: Sequence[str],
    color: Color = (255, 255, 255),
    font_scale: float = 0.35,
    thickness: int = 1,
    offset: tuple[float, float] = (4.0, -4.0),
    outline: bool = True,
) -> np.ndarray:
    """Write a small text label next to each point.

    Args:
        image: (H, W, 3) uint8 RGB; not modified.
        uv: (N, 2) float pixel coordinates of the anchors; non-finite anchors are skipped.
        names: N strings (empty strings are skipped).
        color: RGB text colour.
        font_scale: OpenCV Hershey font scale (0.35 gives ~8 px tall text).
        thickness: stroke width in pixels.
        offset: (du, dv) pixels from the anchor to the text's bottom-left corner.
        outline: draw a dark outline under the text for legibility on any background.

    Returns:
        A new (H, W, 3) uint8 image.
    """
    out = np.ascontiguousarray(_check_image(image)).copy()
    pts = _check_uv(uv)
    if len(names) != len(pts):
        raise ValueError(f"names must have N = {len(pts)} entries, got {len(names)}")
    font = cv2.FONT_HERSHEY_SIMPLEX
    for p, name in zip(pts, names, strict=True):
        if not name or not np.all(np.isfinite(p)) or np.any(np.abs(p) > _LIMIT):
            continue
        org = (round(float(p[0]) - 0.5 + offset[0]), round(float(p[1]) - 0.5 + offset[1]))
        if outline:
            cv2.putText(
                out, str(name), org, font, font_scale, (0, 0, 0), thickness + 2, cv2.LINE_AA
            )
        cv2.putText(out, str(name), org, font, font_scale, tuple(color), thickness, cv2.LINE_AA)
    return out


def contact_sheet(
    images: Sequence[np.ndarray],
    cols: int,
    titles: Sequence[str] | None = None,
    pad: int = 2,
    title_height: int = 16,
    background: Color = (32, 32, 32),
    title_color: Color = (255, 255, 255),
) -> np.ndarray:
    """Tile same-size images into a grid, row-major, with optional titles above each tile.

    Args:
        images: list of (H, W, 3) uint8 RGB (or (H, W) uint8 grey, replicated to RGB).
        cols: number of columns (> 0); rows = ceil(len(images) / cols).
        titles: optional list of len(images) strings drawn in a band of ``title_height``
            pixels above each tile.
        pad: pixels of ``background`` between tiles and around the sheet.
        title_height: height of the title band in pixels (ignored without titles).
        background: RGB fill colour.
        title_color: RGB text colour.

    Returns:
        (rows * (H + band + pad) + pad, cols * (W + pad) + pad, 3) uint8 image, where
        band = title_height if titles else 0.
    """
    if cols <= 0:
        raise ValueError(f"cols must be positive, got {cols}")
    if len(images) == 0:
        raise ValueError("images must contain at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles must have {len(images)} entries, got {len(titles)}")
    tiles = []
    for k, img in enumerate(images):
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        tiles.append(_check_image(arr, f"images[{k}]"))
    h, w = tiles[0].shape[:2]
    for k, t in enumerate(tiles):
        if t.shape[:2] != (h, w):
            raise ValueError(
                f"images[{k}] has size {t.shape[:2]}, expected {(h, w)} like images[0]"
            )
    band = title_height if titles is not None else 0
    rows = -(-len(tiles) // cols)
    cell_h, cell_w = h + band + pad, w + pad
    sheet = np.empty((rows * cell_h + pad, cols * cell_w + pad, 3), dtype=np.uint8)
    sheet[:] = np.asarray(background, dtype=np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    for k, tile in enumerate(tiles):
        r, c = divmod(k, cols)
        y0, x0 = pad + r * cell_h, pad + c * cell_w
        sheet[y0 + band : y0 + band + h, x0 : x0 + w] = tile
        if titles is not None and titles[k]:
            text = str(titles[k])
            (_, th), _ = cv2.getTextSize(text, font, scale, 1)
            cell = sheet[y0 : y0 + band, x0 : x0 + w]  # a view: text is clipped to its band
            org = (2, (band + th) // 2)
            cv2.putText(cell, text, org, font, scale, tuple(title_color), 1, cv2.LINE_AA)
    return sheet
