"""Per-frame ARKit blendshape weights (the face model's 52 expressions) as CSV and JSON.

Names are ``BodyModel.expression_names`` (ARKit's: ``browDownLeft`` ... ``tongueOut``);
weights are nominally in [0, 1]. A frame without a face estimate has empty CSV cells and
``null`` weights in JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from fullcap.io import atomic_write_text

__all__ = ["write_arkit_csv", "write_arkit_json"]


def _check(names: list[str], weights: list[np.ndarray | None]) -> None:
    for w in weights:
        if w is not None and np.shape(w) != (len(names),):
            raise ValueError(f"weights must have shape ({len(names)},), got {np.shape(w)}")


def write_arkit_csv(
    path: str | os.PathLike[str],
    names: list[str],
    frames: list[int],
    times: list[float],
    weights: list[np.ndarray | None],
) -> Path:
    """CSV with header ``frame,time_s,<names...>`` and one row per frame (atomic)."""
    _check(names, weights)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["frame", "time_s", *names])
    for f, t, w in zip(frames, times, weights, strict=True):
        cells = [""] * len(names) if w is None else [f"{v:.5f}" for v in w]
        writer.writerow([int(f), f"{t:.6f}", *cells])
    return atomic_write_text(path, buf.getvalue())


def write_arkit_json(
    path: str | os.PathLike[str],
    names: list[str],
    frames: list[int],
    times: list[float],
    weights: list[np.ndarray | None],
) -> Path:
    """JSON ``{"names": [...], "frames": [{"frame", "time_s", "weights": [...] | null}]}``."""
    _check(names, weights)
    rows = [
        {
            "frame": int(f),
            "time_s": round(float(t), 6),
            "weights": None if w is None else [round(float(v), 5) for v in w],
        }
        for f, t, w in zip(frames, times, weights, strict=True)
    ]
    return atomic_write_text(path, json.dumps({"names": list(names), "frames": rows}))
