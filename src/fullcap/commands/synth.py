"""``fullcap synth ...``: previews, dataset generation, benchmark, pose sheets."""

from __future__ import annotations

import json
from pathlib import Path


def preview(out: str, source: str, n: int, seed: int, size: int) -> int:
    from fullcap.synth.preview import preview as make_preview

    path = make_preview(out, source, n=n, seed=seed, size=size)
    print(f"wrote {path} ({n} samples of {source}, seed {seed})")
    return 0


def generate(
    out: str, source: str, n: int, seed: int, shard_size: int, workers: int, size: int
) -> int:
    from fullcap.synth.shards import generate as make

    summary = make(out, source, n, seed=seed, shard_size=shard_size, workers=workers, size=size)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def bench(n: int, size: int, workers: int, source: str, as_json: bool) -> int:
    from fullcap.synth.bench import run

    report = run(n=n, size=size, workers=workers, source=source)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>24}: {value}")
    return 0


def pose_sheet(out: str, hands_out: str, seed: int) -> int:
    from fullcap.synth.pose_sheet import write_sheets

    for path in write_sheets(Path(out), Path(hands_out), seed):
        print(f"wrote {path}")
    return 0


def clip(
    out: str, frames: int, fps: float, width: int, height: int, seed: int, look: str, wave: bool
) -> int:
    """Render a synthetic clip: ``OUT`` (video) and ``OUT`` with ``.npz`` (its ground truth:
    the :class:`fullcap.synth.clip.Clip` arrays except frames and vertices)."""
    import numpy as np

    from fullcap.bodymodel.model import BodyModel
    from fullcap.io import atomic_path
    from fullcap.synth.clip import make_clip, write_video

    c = make_clip(
        BodyModel.load(), n=frames, size=(width, height), fps=fps, look=look, seed=seed, wave=wave
    )
    path = write_video(out, c.frames, fps)
    truth = Path(out).with_suffix(".npz")
    arrays = {k: v for k, v in vars(c).items() if isinstance(v, np.ndarray)}
    for side in ("left", "right"):
        arrays[f"{side}_hand_uv"], arrays[f"{side}_hand_cam"] = c.hand_uv[side], c.hand_cam[side]
    for big in ("frames", "vertices"):  # the video itself; vertices follow from the parameters
        arrays.pop(big, None)
    with atomic_path(truth) as tmp:
        np.savez_compressed(tmp, **arrays)
    print(f"wrote {path} ({frames} frames, {width}x{height}, {fps:g} fps) and {truth}")
    return 0
