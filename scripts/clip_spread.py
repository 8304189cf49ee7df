"""How much the bundled clip's accuracy moves for reasons other than the weights.

    python scripts/clip_spread.py [--detnet WEIGHTS ...] [--threads 1 2 3] [--frames N]

Runs capture on `fullcap demo`'s clip (video mode, flip test on, as `fullcap demo` does) once
per DetNet weights file (``auto``: the packaged one) and per torch thread count, and prints
the clip's accuracy for each run (:func:`fullcap.eval.clip.compare`), then each weights
file's mean and spread over the thread counts.

Why: the thread count changes the order of floating-point sums, so the keypoints differ in
their last digits; in video mode each frame's box is made from the previous frame's
keypoints, and where the network is unsure (the raised, waving arm) a last-digit difference
decides whether the arm is caught, and with it the next frames' boxes. Two weights files
compared on one run each may then differ by more than the weights make them differ. Compare
weights by their mean over the thread counts and read differences smaller than the spread
as none.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import torch

from fullcap.assets import asset_path
from fullcap.commands.capture import EXIT_OK, EXIT_PARTIAL, capture
from fullcap.commands.demo import SAMPLE, SAMPLE_FOV_DEG, SAMPLE_TRUTH
from fullcap.eval.clip import compare, load_truth

KEYS = (
    "body_err2d_px",
    "body_pck2d",
    "body_pa_mpjpe_mm",
    "left_hand_frames",
    "right_hand_frames",
    "hand_err2d_px",
    "face_err2d_px",
)


def run(weights: str, threads: int, frames: int | None) -> dict[str, float]:
    """The clip's accuracy with these DetNet weights and this many torch threads."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        code = capture(
            str(asset_path(SAMPLE)),
            tmp,
            camera=str(SAMPLE_FOV_DEG),
            detnet=weights,
            exports=("npz",),
            max_frames=frames,
            progress=False,
        )
        if code not in (EXIT_OK, EXIT_PARTIAL):
            raise SystemExit(f"capture failed with exit code {code}")
        with np.load(Path(tmp) / "result.npz", allow_pickle=False) as z:
            result = {k: z[k] for k in z.files}
    return compare(result, load_truth(asset_path(SAMPLE_TRUTH)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detnet", nargs="+", default=["auto"], help="DetNet weights files")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--frames", type=int, help="only the first N frames")
    args = ap.parse_args()
    print("weights | threads | " + " | ".join(KEYS))
    for w in args.detnet:
        rows = []
        for t in args.threads:
            m = run(w, t, args.frames)
            rows.append([float(m.get(k, float("nan"))) for k in KEYS])
            print(f"{w} | {t} | " + " | ".join(f"{v:.3g}" for v in rows[-1]), flush=True)
        a = np.array(rows)
        mean = " | ".join(f"{v:.3g}" for v in a.mean(0))
        spread = " | ".join(f"{v:.3g}" for v in a.max(0) - a.min(0))
        print(f"{w} | mean | {mean}\n{w} | max-min | {spread}", flush=True)


if __name__ == "__main__":
    main()
