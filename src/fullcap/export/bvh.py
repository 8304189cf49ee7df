"""BVH export of the whole skeleton (body and fingers), and a small BVH reader.

Skeleton: the body model's bones (``BodyModel.bone_names``, ``.`` replaced by ``_``), with
rest OFFSETs from the model's **reference pose** joints (identity pose, the run's shape) so
that each joint's BVH rotation is exactly the model's local rotation ``D_c`` (world-aligned
axes of the reference pose). Leaves get an ``End Site`` half their own bone's offset further.

Frames (Y up, as BVH tools expect): the model frame (Z up, face toward -Y) maps to the BVH
rest frame by ``C: (x, y, z) -> (x, z, -y)`` (the character faces +Z); the camera frame maps
to the BVH world by ``W = diag(1, -1, -1)`` (Y up, +Z toward the viewer, the camera at the
origin looking down -Z). So joint c's BVH world rotation is ``W A_c C^T``, its local rotation
``C D_c C^T``, the root's ``W G C^T`` and the root position ``W transl``. Lengths are in
``unit_scale`` units per metre (default 100: centimetres).

Channels: the root has ``Xposition Yposition Zposition Zrotation Xrotation Yrotation``, the
others ``Zrotation Xrotation Yrotation``, degrees: the rotation is ``Rz(a) Rx(b) Ry(c)``
(intrinsic ZXY). Angles are unwrapped over time (no 360-degree jumps). BVH has one frame
time: the median interval of the timestamps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roma
import torch

from fullcap.io import atomic_write_text
from fullcap.types import ModelParams

__all__ = [
    "BVH_FROM_MODEL",
    "CAMERA_TO_WORLD",
    "Bvh",
    "forward_kinematics",
    "read_bvh",
    "write_bvh",
]

BVH_FROM_MODEL = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])  # C: model frame -> Y-up rest
CAMERA_TO_WORLD = np.diag([1.0, -1.0, -1.0])  # W: camera frame -> Y-up world
_ROOT_CH = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
_JOINT_CH = ("Zrotation", "Xrotation", "Yrotation")


def reference_offsets(model, betas: np.ndarray | None) -> np.ndarray:
    """(J, 3) bone offsets from the parent in the model's reference pose (model frame,
    metres); the root's is its position (0)."""
    b = None if betas is None else torch.as_tensor(betas, dtype=model.dtype)[None]
    with torch.no_grad():
        joints = model(betas=b, return_vertices=False).joints[0].double().cpu().numpy()
    par = np.maximum(np.array(model.bone_parents), 0)
    off = joints - joints[par]
    off[0] = 0.0
    return off


def hold_frames(frames: list[ModelParams | None]) -> list[ModelParams]:
    """Fill frames without a model with the nearest earlier one (the first valid one at the
    start). Raises ValueError when no frame has a model."""
    first = next((f for f in frames if f is not None), None)
    if first is None:
        raise ValueError("no frame has model parameters: nothing to animate")
    out, last = [], first
    for f in frames:
        last = f if f is not None else last
        out.append(last)
    return out


def _euler(rot: np.ndarray) -> np.ndarray:
    """(F, ..., 3, 3) -> (F, ..., 3) intrinsic ZXY degrees, unwrapped over F."""
    e = roma.rotmat_to_euler("ZXY", torch.from_numpy(rot), degrees=True).numpy()
    return np.unwrap(e, period=360.0, axis=0)


def write_bvh(
    path: str | os.PathLike[str],
    model,
    frames: list[ModelParams | None],
    times: np.ndarray,
    betas: np.ndarray | None = None,
    unit_scale: float = 100.0,
) -> Path:
    """Write a BVH animation (atomically).

    Args:
        model: the body model (bone names, parents, reference joints).
        frames: per frame the model parameters, or None (holds the previous pose).
        times: (F,) timestamps in seconds.
        betas: shape for the skeleton (default: the mean over frames).
        unit_scale: BVH units per metre.
    """
    params = hold_frames(frames)
    if betas is None:
        betas = np.mean([p.betas for p in params], axis=0)
    names = [n.replace(".", "_") for n in model.bone_names]
    parents = list(model.bone_parents)
    C, W = BVH_FROM_MODEL, CAMERA_TO_WORLD
    offsets = (reference_offsets(model, betas) @ C.T) * unit_scale
    go = np.stack([p.global_orient for p in params]).astype(np.float64)
    pose = np.stack([p.pose for p in params]).astype(np.float64)
    transl = np.stack([np.zeros(3) if p.transl is None else p.transl for p in params]).astype(
        np.float64
    )
    root = W @ go @ C.T
    local = C @ pose @ C.T
    rot = np.concatenate([root[:, None], local], axis=1)  # (F, J, 3, 3)
    angles = _euler(rot)  # (F, J, 3)
    position = transl @ W.T * unit_scale
    motion = np.concatenate([position, angles.reshape(len(params), -1)], axis=1)

    children: dict[int, list[int]] = {i: [] for i in range(len(names))}
    for c, p in enumerate(parents):
        if p >= 0:
            children[p].append(c)
    lines = ["HIERARCHY"]

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        head = "ROOT" if parents[j] < 0 else "JOINT"
        ch = _ROOT_CH if parents[j] < 0 else _JOINT_CH
        lines.append(f"{pad}{head} {names[j]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET " + " ".join(f"{v:.6f}" for v in offsets[j]))
        lines.append(f"{pad}  CHANNELS {len(ch)} " + " ".join(ch))
        for c in children[j]:
            emit(c, depth + 1)
        if not children[j]:
            end = offsets[j] * 0.5 if np.linalg.norm(offsets[j]) > 0 else np.array([0, 1.0, 0])
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET " + " ".join(f"{v:.6f}" for v in end))
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    for r in (j for j, p in enumerate(parents) if p < 0):
        emit(r, 0)
    dt = np.diff(np.asarray(times, dtype=np.float64))
    frame_time = float(np.median(dt)) if len(dt) and np.median(dt) > 0 else 1 / 30
    lines += ["MOTION", f"Frames: {len(params)}", f"Frame Time: {frame_time:.6f}"]
    lines += [" ".join(f"{v:.4f}" for v in row) for row in motion]
    return atomic_write_text(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class Bvh:
    """A parsed BVH: names (J,), parents (J,) (-1 root), offsets (J, 3), channels per joint,
    frame_time (s), motion (F, total channels)."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray
    channels: list[tuple[str, ...]]
    frame_time: float
    motion: np.ndarray


def read_bvh(path: str | os.PathLike[str]) -> Bvh:
    """Parse a BVH file (hierarchy and motion); raises ValueError on malformed files."""
    tokens = Path(path).read_text(encoding="utf-8").split()
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[tuple[str, ...]] = []
    stack: list[int] = []
    i, in_end = 0, 0
    try:
        if tokens[0] != "HIERARCHY":
            raise ValueError("missing HIERARCHY")
        i = 1
        while tokens[i] != "MOTION":
            tok = tokens[i]
            if tok in ("ROOT", "JOINT"):
                names.append(tokens[i + 1])
                parents.append(stack[-1] if stack else -1)
                offsets.append([0.0, 0.0, 0.0])
                channels.append(())
                i += 2
            elif tok == "End":
                in_end += 1
                i += 2  # "End Site"
            elif tok == "{":
                if not in_end:
                    stack.append(len(names) - 1)
                i += 1
            elif tok == "}":
                if in_end:
                    in_end -= 1
                else:
                    stack.pop()
                i += 1
            elif tok == "OFFSET":
                if not in_end:
                    offsets[-1] = [float(v) for v in tokens[i + 1 : i + 4]]
                i += 4
            elif tok == "CHANNELS":
                n = int(tokens[i + 1])
                channels[-1] = tuple(tokens[i + 2 : i + 2 + n])
                i += 2 + n
            else:
                raise ValueError(f"unexpected token {tok!r}")
        n_frames = int(tokens[i + 2])
        frame_time = float(tokens[i + 5])
        values = np.array([float(v) for v in tokens[i + 6 :]], dtype=np.float64)
    except (IndexError, ValueError) as exc:
        raise ValueError(f"{path} is not a valid BVH file: {exc}") from None
    n_ch = sum(len(c) for c in channels)
    if values.size != n_frames * n_ch:
        raise ValueError(f"{path}: {values.size} motion values, expected {n_frames} x {n_ch}")
    return Bvh(
        names, parents, np.array(offsets), channels, frame_time, values.reshape(n_frames, n_ch)
    )


def _axis_rotation(axis: str, deg: np.ndarray) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    rows = {
        "X": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        "Y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        "Z": [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }[axis]
    return np.moveaxis(np.array(rows), (0, 1), (-2, -1))


def forward_kinematics(bvh: Bvh) -> np.ndarray:
    """(F, J, 3) joint positions in the BVH world (file units): ``pos_c = pos_p + R_p
    offset_c``, ``R_c = R_p L_c``, L_c the product of the channel rotations in file order."""
    f = len(bvh.motion)
    pos = np.zeros((f, len(bvh.names), 3))
    world = np.zeros((f, len(bvh.names), 3, 3))
    col = 0
    for j, (p, ch) in enumerate(zip(bvh.parents, bvh.channels, strict=True)):
        local = np.broadcast_to(np.eye(3), (f, 3, 3)).copy()
        translation = np.zeros((f, 3))
        for name in ch:
            v = bvh.motion[:, col]
            col += 1
            if name.endswith("position"):
                translation[:, "XYZ".index(name[0])] = v
            else:
                local = local @ _axis_rotation(name[0], v)
        if p < 0:
            pos[:, j] = bvh.offsets[j] + translation
            world[:, j] = local
        else:
            pos[:, j] = pos[:, p] + (world[:, p] @ bvh.offsets[j])
            world[:, j] = world[:, p] @ local
    return pos
