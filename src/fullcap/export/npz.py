"""``result.npz``: every per-frame quantity as arrays over frames, written atomically.

The file is rewritten atomically every ``every`` frames and at :meth:`NpzWriter.close`, so a
run that stops early leaves a valid file with the frames done so far (``complete`` False).
Missing values are NaN (floats), with a ``*_found`` bool array per part. Keys are listed in
``docs/OUTPUTS.md``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fullcap.io import atomic_path
from fullcap.skeletons import BODY33, FACE68, HAND21
from fullcap.types import FrameResult, Keypoints, PersonResult

__all__ = ["NpzWriter", "frame_arrays"]


def _kp(prefix: str, k: Keypoints | None, out: dict[str, np.ndarray]) -> None:
    if k is None:
        return
    out[f"{prefix}_uv"] = k.uv
    out[f"{prefix}_conf"] = k.conf
    if k.xyz is not None:
        out[f"{prefix}_xyz"] = k.xyz


def _person_arrays(p: PersonResult) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"bbox": p.bbox, "score": np.float32(p.score)}
    _kp("body", p.body, out)
    for side in ("left_hand", "right_hand"):
        h = getattr(p, side)
        if h is not None:
            _kp(side, h.keypoints, out)
            out[f"{side}_bbox"] = h.bbox
            if h.rotation is not None:
                out[f"{side}_rotation"] = h.rotation
                out[f"{side}_pose"] = h.pose
    if p.face is not None:
        out["face_uv"], out["face_conf"] = p.face.landmarks.uv, p.face.landmarks.conf
        out["face_bbox"] = p.face.bbox
        for name in ("expression", "albedo", "illumination", "rotation"):
            v = getattr(p.face, name)
            if v is not None:
                out[f"face_{name}"] = v
    m = p.model
    if m is not None:
        out |= {"betas": m.betas, "global_orient": m.global_orient, "pose": m.pose}
        if m.expression is not None:
            out["expression"] = m.expression
        if m.transl is not None:
            out["transl"] = m.transl
    return out


def frame_arrays(result: FrameResult) -> dict[str, np.ndarray]:
    """Per-frame arrays of the first person of ``result`` (empty dict when nobody)."""
    if not result.people:
        return {}
    return _person_arrays(result.people[0])


_FOUND = {
    "person": "bbox",
    "body": "body_uv",
    "left_hand": "left_hand_uv",
    "right_hand": "right_hand_uv",
    "face": "face_uv",
    "model": "betas",
}


class NpzWriter:
    """Collects frames and writes ``path`` atomically every ``every`` frames and at close.

    Args:
        path: destination (``.npz``).
        every: frames between partial writes (>= 1).
        names: extra name lists stored as string arrays (e.g. ``bone_names``,
            ``expression_names``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        every: int = 50,
        names: dict[str, list[str]] | None = None,
    ):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.path, self.every = Path(path), every
        self.names = {"body_names": list(BODY33), "hand_names": list(HAND21)}
        self.names |= {"face_names": list(FACE68)} | dict(names or {})
        self._meta: list[tuple[int, float, str, tuple[int, int], int, np.ndarray | None]] = []
        self._rows: list[dict[str, np.ndarray]] = []
        self._shapes: dict[str, tuple[int, ...]] = {}

    def add(self, result: FrameResult) -> None:
        """Add one frame; writes the file when ``every`` frames have come since the last."""
        row = frame_arrays(result)
        for k, v in row.items():
            self._shapes.setdefault(k, np.shape(v))
        pid = int(result.people[0].id) if result.people else -1
        self._meta.append(
            (result.frame, result.time_s, result.source, result.image_size, pid, result.camera)
        )
        self._rows.append(row)
        if len(self._rows) % self.every == 0:
            self.write(complete=False)

    def arrays(self, complete: bool) -> dict[str, np.ndarray]:
        n = len(self._rows)
        out: dict[str, np.ndarray] = {
            "frame": np.array([m[0] for m in self._meta], np.int64),
            "time_s": np.array([m[1] for m in self._meta], np.float64),
            "source": np.array([m[2] for m in self._meta], dtype=str),
            "image_size": np.array([m[3] for m in self._meta], np.int32).reshape(n, 2),
            "person_id": np.array([m[4] for m in self._meta], np.int64),
            "camera": np.array(
                [np.full((3, 3), np.nan) if m[5] is None else m[5] for m in self._meta], np.float64
            ).reshape(n, 3, 3),
        }
        for key, shape in self._shapes.items():
            a = np.full((n, *shape), np.nan, dtype=np.float32)
            for i, row in enumerate(self._rows):
                if key in row:
                    a[i] = row[key]
            out[key] = a
        for part, key in _FOUND.items():
            out[f"{part}_found"] = np.array([key in r for r in self._rows], dtype=bool)
        for key, names in self.names.items():
            out[key] = np.array(names, dtype=str)
        out["complete"] = np.array(complete)
        return out

    def write(self, complete: bool = True) -> Path:
        """Write everything so far atomically."""
        arrays = self.arrays(complete)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return self.path

    def close(self, complete: bool = True) -> Path:
        return self.write(complete=complete)
