"""``frames.jsonl``: one JSON object per frame, one per line, flushed as each frame is done.

Follows ``shared/contracts/frames-jsonl.md``; the ``face`` and ``model`` layouts and the
added fields (``missing``, ``notes``, hand/face ``bbox``, face ``conf``, model ``transl``)
are documented in ``docs/OUTPUTS.md``. Non-finite numbers are written as ``null`` (JSON has
no NaN).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import roma
import torch

from fullcap.types import FaceResult, FrameResult, HandResult, Keypoints, ModelParams, PersonResult

__all__ = ["JsonlWriter", "frame_to_dict", "read_jsonl"]

# Decimals kept per quantity: pixels 0.01, metres 0.1 mm, radians 1e-5.
_UV, _XYZ, _CONF, _ROT, _PARAM = 2, 4, 3, 5, 4


def _list(x: np.ndarray | None, decimals: int) -> Any:
    """Nested lists of rounded floats; non-finite -> None; None -> None."""
    if x is None:
        return None
    a = np.round(np.asarray(x, dtype=np.float64), decimals)
    out = a.tolist()
    if np.isfinite(a).all():
        return out

    def clean(v: Any) -> Any:
        if isinstance(v, list):
            return [clean(i) for i in v]
        return v if np.isfinite(v) else None

    return clean(out)


def _keypoints(k: Keypoints | None, root: str | None) -> dict | None:
    if k is None:
        return None
    xyz = k.xyz
    if xyz is not None and root is not None:
        i = k.names.index(root)
        xyz = xyz - xyz[i : i + 1]  # the root is exactly [0, 0, 0]
    return {
        "names": list(k.names),
        "uv": _list(k.uv, _UV),
        "xyz": _list(xyz, _XYZ),
        "conf": _list(np.clip(k.conf, 0, 1), _CONF),
    }


def _hand(h: HandResult | None) -> dict | None:
    if h is None:
        return None
    return _keypoints(h.keypoints, "middle1") | {"bbox": _list(h.bbox, _UV)}


def _face(f: FaceResult | None) -> dict | None:
    if f is None:
        return None
    expression = None
    if f.expression is not None:
        names = f.expression_names or tuple(f"e{i}" for i in range(len(f.expression)))
        expression = dict(zip(names, _list(f.expression, _PARAM), strict=True))
    return {
        "landmarks_uv": _list(f.landmarks.uv, _UV),
        "conf": _list(np.clip(f.landmarks.conf, 0, 1), _CONF),
        "bbox": _list(f.bbox, _UV),
        "expression": expression,
        "albedo": _list(f.albedo, _PARAM),
        "illumination": _list(f.illumination, _PARAM),
        "rotation": None if f.rotation is None else _list(_rotvec(f.rotation), _ROT),
    }


def _rotvec(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> axis-angle vectors (..., 3)."""
    return roma.rotmat_to_rotvec(torch.from_numpy(np.asarray(rot, np.float64))).numpy()


def _model(m: ModelParams | None) -> dict | None:
    if m is None:
        return None
    rotvec = _rotvec(np.concatenate([m.global_orient[None], m.pose]))
    return {
        "shape": _list(m.betas, _PARAM),
        "pose": _list(rotvec, _ROT),
        "expression": _list(m.expression, _PARAM),
        "transl": _list(m.transl, _XYZ),
    }


def _person(p: PersonResult) -> dict:
    return {
        "id": int(p.id),
        "bbox": _list(p.bbox, _UV),
        "score": round(float(np.clip(p.score, 0, 1)), _CONF),
        "body": _keypoints(p.body, "pelvis"),
        "left_hand": _hand(p.left_hand),
        "right_hand": _hand(p.right_hand),
        "face": _face(p.face),
        "model": _model(p.model),
    }


def frame_to_dict(result: FrameResult) -> dict:
    """The contract's JSON object for one frame."""
    return {
        "frame": int(result.frame),
        "source": result.source,
        "time_s": round(float(result.time_s), 6),
        "image_size": [int(result.image_size[0]), int(result.image_size[1])],
        "people": [_person(p) for p in result.people],
        "missing": list(result.missing),
        "notes": list(result.notes),
    }


class JsonlWriter:
    """Append frames to ``path`` (created or truncated), one line each, flushed per frame.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._file = open(self.path, "w", encoding="utf-8", newline="\n")
        self.count = 0

    def write(self, result: FrameResult) -> None:
        line = json.dumps(frame_to_dict(result), separators=(",", ":"), allow_nan=False)
        self._file.write(line + "\n")
        self._file.flush()
        self.count += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike[str]) -> list[dict]:
    """All complete lines of a frames.jsonl (a last line without newline is ignored: the
    writer may be in the middle of it)."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]
