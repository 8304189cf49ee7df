"""A labelled picture of the body model's keypoint sets, for the docs (``docs/keypoints.png``).

:func:`render_keypoint_sheet` renders the default body (``betas = 0``, reference pose, neutral
face) headlessly. It makes four views: the whole body from the front with ``body33``, each hand
from its palm side with its 21 keypoints, and the face from the front with the 68 landmarks
numbered. They are tiled with titles into one RGB image. It needs the ``render`` extra
(moderngl + EGL).

Visibility: a keypoint is drawn filled if the camera sees it, hollow if not. The check reads
the renderer's depth buffer. A keypoint counts as on the visible surface (seen) if its camera
z is within ~1 cm of a rendered depth in a 5 x 5 pixel window around its pixel (the window
absorbs the depth slope at grazing angles and outlines) or in front of all of them.
Skin points (fingertips, eyes, head top, face landmarks) are seen exactly when they face the
camera unoccluded. A joint centre lies inside its limb, so it is always behind the surface.
It counts as seen when the triangle at its pixel is carried (dominant skinning bone) by a bone
at most 3 kinematic-tree edges from the joint's own bone: its own limb is in front of it, not
another part of the body.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from fullcap.io import save_png
from fullcap.render import Renderer, contact_sheet, draw_keypoints, draw_labels
from fullcap.skeletons import BODY33_SET, FACE68_SET, HAND21_SET

if TYPE_CHECKING:
    from fullcap.bodymodel.model import BodyModel

__all__ = ["look_at", "render_keypoint_sheet", "save_keypoint_sheet", "visible_keypoints"]

_SKIN = (0.64, 0.62, 0.60)
_BODY_COLOR = (255, 60, 40)
_HAND_COLOR = (40, 120, 255)
_FACE_COLOR = (230, 30, 30)
_LABEL_COLOR = (255, 255, 255)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera pose (OpenCV frame: x right, y down, z forward) of a camera at ``eye``.

    Args:
        eye: (3,) camera centre, world metres.
        target: (3,) world point on the optical axis.
        up: (3,) world direction that should point up in the image (must not be parallel to
            the viewing direction).

    Returns:
        (R, t): R (3, 3), t (3,) float64 with x_cam = R @ X + t.
    """
    eye, target, up = (np.asarray(a, dtype=np.float64).reshape(3) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    y = -(up - (up @ z) * z)
    norm = np.linalg.norm(y)
    if norm < 1e-8:
        raise ValueError(f"up {up} is parallel to the viewing direction {z}")
    y /= norm
    x = np.cross(y, z)
    R = np.stack([x, y, z])
    return R, -R @ eye


def _project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points -> (N, 2) pixels (corner-origin convention)."""
    uvw = points_cam @ K.T
    return uvw[:, :2] / uvw[:, 2:3]


def _fit_intrinsics(points_cam: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Square-pixel K (3, 3) that centres ``points_cam`` (N, 3) in a size x size image.

    ``margin`` is the fraction of the image left free on each side.
    """
    height = size
    xy = points_cam[:, :2] / points_cam[:, 2:3]
    lo, hi = xy.min(0), xy.max(0)
    free = 2 * margin * size
    f = float(min((size - free) / (hi[0] - lo[0]), (height - free) / (hi[1] - lo[1])))
    c = (lo + hi) / 2
    return np.array([[f, 0, size / 2 - f * c[0]], [0, f, height / 2 - f * c[1]], [0, 0, 1.0]])


class _BoneTree:
    """Kinematic-tree distances between bones, and the dominant bone of each vertex."""

    def __init__(self, model: BodyModel) -> None:
        parents = list(model.bone_parents)
        chains = []
        for b in range(len(parents)):
            chain = [b]
            while parents[chain[-1]] >= 0:
                chain.append(parents[chain[-1]])
            chains.append(chain)
        n = len(parents)
        self.distance = np.zeros((n, n), dtype=np.int64)  # edges on the path from a to b
        for a in range(n):
            depth_a = {bone: k for k, bone in enumerate(chains[a])}
            for b in range(n):
                k_b = next(k for k, bone in enumerate(chains[b]) if bone in depth_a)
                self.distance[a, b] = k_b + depth_a[chains[b][k_b]]
        self.vertex_bone = model.skin_weights.argmax(1).cpu().numpy()
        self.faces = model.faces.cpu().numpy()
        self._joint_weight = model.keypoint_joint_weight.cpu().numpy()

    def keypoint_bones(self, model: BodyModel, set_name: str) -> list[np.ndarray]:
        """Per keypoint of the set, the bones whose heads it is made of (empty: vertices only)."""
        start, end = model._set(set_name)[:2]  # rows of the set in the keypoint tables
        return [np.nonzero(row > 0)[0] for row in self._joint_weight[start:end]]

    def near(self, triangle: int, bones: np.ndarray, max_edges: int) -> bool:
        """Is ``triangle`` carried by a bone within ``max_edges`` tree edges of ``bones``?"""
        carriers = self.vertex_bone[self.faces[triangle]]
        return bool(self.distance[np.ix_(carriers, bones)].min() <= max_edges)


def visible_keypoints(
    model: BodyModel,
    set_name: str,
    points_cam: np.ndarray,
    depth: np.ndarray,
    triangle_id: np.ndarray,
    K: np.ndarray,
    tol: float = 0.01,
    window: int = 2,
    max_edges: int = 3,
    bone_tree: _BoneTree | None = None,
) -> np.ndarray:
    """Which keypoints of a set the camera sees (see the module docstring).

    Args:
        model: the body model the view was rendered from.
        set_name: keypoint set of ``points_cam`` (for the bones of joint keypoints).
        points_cam: (N, 3) keypoints in the camera frame (metres, OpenCV).
        depth: (H, W) rendered camera-frame depth, metres (inf where empty).
        triangle_id: (H, W) index of the visible triangle of ``model.faces``, -1 where empty.
        K: (3, 3) intrinsics, pixels.
        tol: a point counts as on the visible surface if some rendered depth in the window
            is within ``tol`` metres of its z (or it lies in front of all of them).
        window: half size in pixels of that window (absorbs the depth slope across a
            pixel at grazing angles and at outlines).
        max_edges: a joint centre behind the surface counts as seen when the triangle at
            its pixel is carried by a bone this many kinematic-tree edges from its own.
        bone_tree: precomputed :class:`_BoneTree` of ``model`` (built if None).

    Returns:
        (N,) bool, True where the keypoint is seen.
    """
    tree = _BoneTree(model) if bone_tree is None else bone_tree
    bones = tree.keypoint_bones(model, set_name)
    h, w = depth.shape
    uv = _project(points_cam, K)
    out = np.zeros(len(points_cam), dtype=bool)
    for i, ((u, v), z) in enumerate(zip(uv, points_cam[:, 2], strict=True)):
        if not (np.isfinite(u) and np.isfinite(v)) or z <= 0:
            continue
        c, r = int(np.floor(u)), int(np.floor(v))
        if not (0 <= c < w and 0 <= r < h):
            continue
        near = depth[max(r - window, 0) : r + window + 1, max(c - window, 0) : c + window + 1]
        if z <= near.min() + tol or np.abs(near - z).min() <= tol:
            out[i] = True
        elif len(bones[i]) and triangle_id[r, c] >= 0:
            out[i] = tree.near(int(triangle_id[r, c]), bones[i], max_edges)
    return out


def _margin_labels(
    image: np.ndarray,
    uv: np.ndarray,
    names: list[str],
    on_left: np.ndarray,
    font_scale: float,
    margin: int = 4,
) -> np.ndarray:
    """Write each name in the left or right image margin, joined to its point by a thin line.

    Labels are stacked by image row with at least one text height between them, so they
    never overlap. ``on_left``: (N,) bool, True for the left margin.
    """
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, th), _ = cv2.getTextSize("Ag", font, font_scale, 1)
    gap = th + 4
    for left in (True, False):
        idx = [i for i in np.argsort(uv[:, 1], kind="stable") if bool(on_left[i]) == left]
        rows = np.clip(uv[idx, 1], gap, h - 4).astype(np.float64)
        for k in range(1, len(rows)):  # push down, then pull back up from the bottom
            rows[k] = max(rows[k], rows[k - 1] + gap)
        rows[-1:] = np.minimum(rows[-1:], h - 4)
        for k in range(len(rows) - 2, -1, -1):
            rows[k] = min(rows[k], rows[k + 1] - gap)
        for i, row in zip(idx, rows, strict=True):
            (tw, _), _ = cv2.getTextSize(names[i], font, font_scale, 1)
            x_text = margin if left else w - margin - tw
            x_end = x_text + tw + 3 if left else x_text - 3
            anchor = (round(float(uv[i, 0]) - 0.5), round(float(uv[i, 1]) - 0.5))
            end = (round(x_end), round(row - th / 2))
            cv2.line(out, anchor, end, (150, 150, 110), 1, cv2.LINE_AA)
            org = (round(x_text), round(row))
            cv2.putText(out, names[i], org, font, font_scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, names[i], org, font, font_scale, _LABEL_COLOR, 1, cv2.LINE_AA)
    return out


def _view(
    renderer: Renderer,
    model: BodyModel,
    tree: _BoneTree,
    set_name: str,
    verts: np.ndarray,
    faces: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    K: np.ndarray,
    points: np.ndarray,
    colors: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shade the mesh; return the image (H, W, 3), keypoint pixels (N, 2), visibility (N,)."""
    pts_cam = points @ R.T + t
    out = renderer.render(verts @ R.T + t, faces, K, vertex_colors=colors, ambient=0.45)
    vis = visible_keypoints(model, set_name, pts_cam, out.depth, out.triangle_id, K, bone_tree=tree)
    return out.rgb, _project(pts_cam, K), vis


def render_keypoint_sheet(model: BodyModel, size: int = 512) -> np.ndarray:
    """Render the keypoint sets of ``model`` on its default body, labelled, in one image.

    Args:
        model: a :class:`fullcap.bodymodel.model.BodyModel` with the ``body33``,
            ``left_hand``, ``right_hand`` and ``face68`` keypoint sets.
        size: edge in pixels of each of the four square views.

    Returns:
        (2 * (size + 16 + 2) + 2, 2 * (size + 2) + 2, 3) uint8 RGB image: row 1 the body
        (front) and the face (front); row 2 the right and the left hand (palm side), the right
        hand on the left as in a frontal view. Keypoints the camera cannot see are hollow.
    """
    if size < 128:
        raise ValueError(f"size must be at least 128 pixels, got {size}")
    missing = {"body33", "left_hand", "right_hand", "face68"} - set(model.keypoint_sets)
    if missing:
        raise ValueError(
            f"the model lacks the keypoint sets {sorted(missing)}; rebuild the asset with "
            "`fullcap bodymodel build`"
        )
    with torch.no_grad():
        out = model()
    verts = out.vertices[0].detach().cpu().double().numpy()
    kps = {k: v[0].detach().cpu().double().numpy() for k, v in out.keypoints.items()}
    faces = model.faces.detach().cpu().numpy().astype(np.int32)
    colors = np.broadcast_to(np.asarray(_SKIN, dtype=np.float32), verts.shape).copy()
    colors[model.part_vertex_ids("eyes").cpu().numpy()] = (0.95, 0.95, 0.95)

    tree = _BoneTree(model)
    tiles, titles = [], []
    with Renderer(size, size, near=0.02, far=20.0) as renderer:
        # -- body, front, from slightly above so that the top of the skull shows; the body
        # takes the middle of the tile, the labels the margins
        lo, hi = verts.min(0), verts.max(0)
        center = (lo + hi) / 2
        elev = np.radians(10.0)
        eye = center + 5.0 * np.array([0.0, -np.cos(elev), np.sin(elev)])
        R, t = look_at(eye, center, (0, 0, 1))
        K = _fit_intrinsics(verts @ R.T + t, size, 0.02)
        body = kps["body33"]
        rgb, uv, vis = _view(renderer, model, tree, "body33", verts, faces, R, t, K, body, colors)
        names = model.keypoint_names("body33")
        on_left = np.array([not n.startswith("left_") for n in names])  # image left: right_*
        img = _margin_labels(rgb, uv, names, on_left, font_scale=0.28 * size / 512)
        edges = BODY33_SET.edges
        tiles.append(draw_keypoints(img, uv, edges, vis, _BODY_COLOR, radius=2.5, thickness=1))
        titles.append("body33 (front; hollow = hidden)")

        # -- face, front
        face = kps["face68"]
        fc = (face.min(0) + face.max(0)) / 2
        R, t = look_at(fc + np.array([0.0, -0.6, 0.0]), fc, (0, 0, 1))
        K = _fit_intrinsics(face @ R.T + t, size, 0.06)
        rgb, uv, vis = _view(renderer, model, tree, "face68", verts, faces, R, t, K, face, colors)
        img = draw_keypoints(rgb, uv, FACE68_SET.edges, vis, _FACE_COLOR, radius=2, thickness=1)
        labels = [str(i) for i in range(len(face))]
        tiles.append(draw_labels(img, uv, labels, _LABEL_COLOR, font_scale=0.3, offset=(3, -3)))
        titles.append("face68 (300-W order, front)")

        # -- hands, palm side, fingers up; the right hand first (image left in a front view)
        for side, sign in (("right", 1.0), ("left", -1.0)):
            hand = kps[f"{side}_hand"]
            names = model.keypoint_names(f"{side}_hand")
            wrist, middle1 = hand[names.index("wrist")], hand[names.index("middle1")]
            across = hand[names.index("index1")] - hand[names.index("pinky1")]
            fingers = middle1 - wrist
            palm = sign * np.cross(across, fingers)  # out of the palm
            palm /= np.linalg.norm(palm)
            hc = (hand.min(0) + hand.max(0)) / 2
            R, t = look_at(hc + 0.5 * palm, hc, fingers)
            K = _fit_intrinsics(hand @ R.T + t, size, 0.1)
            rgb, uv, vis = _view(
                renderer, model, tree, f"{side}_hand", verts, faces, R, t, K, hand, colors
            )
            edges = HAND21_SET.edges
            img = draw_keypoints(rgb, uv, edges, vis, _HAND_COLOR, radius=3, thickness=1)
            tiles.append(draw_labels(img, uv, names, _LABEL_COLOR, font_scale=0.32, offset=(5, -4)))
            titles.append(f"{side}_hand (palm side)")
    return contact_sheet(tiles, cols=2, titles=titles)


def save_keypoint_sheet(model: BodyModel, path: str | Path, size: int = 512) -> Path:
    """Render :func:`render_keypoint_sheet` and write it as a PNG at ``path``."""
    return save_png(path, render_keypoint_sheet(model, size=size))
