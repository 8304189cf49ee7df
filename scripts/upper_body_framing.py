"""Capture on a webcam framing: the bundled clip seen from the head to the hips, with and
without the upper-body framings of the person search (``TrackingConfig.upper_body_scales``).

    python scripts/upper_body_framing.py [--cut 1.0] [--frames N] [--flip-test] [--threads T]
                                         [--detnet WEIGHTS ...]

Every frame of the bundled sample (`fullcap demo`'s clip) is cut to a 4:3 view of the person
from a little above the head down to ``--cut`` x the head-to-pelvis distance below the head
(1.0: through the pelvis), centred on the person and scaled to 640x480: the framing of
someone at a desk in front of a webcam that follows them. Capture runs in video mode with
the packaged networks, once with the framings off (the person search as it was before them)
and once with them on, in the same process (``--detnet``: each DetNet weights file given,
the framings on, instead; ``auto`` is the packaged one). Printed per run: frames with a
person, the 2D error (pixels of the 640x480 view; mean and median) and 2D PCK (within 5 % of
the person's whole height) of the body keypoints in the picture, hands and faces found,
detections made in an upper-body framing, and milliseconds per frame (meaningful on an
otherwise idle machine).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import torch

from fullcap.assets import asset_path
from fullcap.capture.detector import TrackingConfig
from fullcap.capture.media import open_media
from fullcap.capture.pipeline import Capture
from fullcap.commands.demo import SAMPLE, SAMPLE_FOV_DEG, SAMPLE_TRUTH
from fullcap.eval.clip import load_truth
from fullcap.skeletons import BODY33


def read_frames(path: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """RGB frames (N, H, W, 3) of a video and their times in seconds (N,)."""
    media = open_media(path, max_frames=limit)
    try:
        frames = list(media)
    finally:
        media.close()
    return np.stack([f.image for f in frames]), np.array([f.time_s for f in frames])


SIZE = (640, 480)
_HEAD_TOP, _PELVIS = BODY33.index("head_top"), BODY33.index("pelvis")


def webcam_views(frames: np.ndarray, body_uv: np.ndarray, cut: float):
    """The frames cut to the upper-body views (see the module doc) and the true body
    keypoints in them: (N, 480, 640, 3) uint8 and (N, 33, 2)."""
    views, uvs = [], []
    for frame, uv in zip(frames, body_uv, strict=False):
        head_top = float(uv[_HEAD_TOP, 1])
        pelvis = uv[_PELVIS]
        span = float(pelvis[1]) - head_top
        top = head_top - 0.15 * span
        height = max(head_top + cut * span - top, 8.0)
        s = SIZE[1] / height
        x0 = float(pelvis[0]) - SIZE[0] / s / 2
        a = np.array([[s, 0, -s * x0], [0, s, -s * top]], np.float64)
        views.append(cv2.warpAffine(frame, a, SIZE, flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE))  # fmt: skip
        uvs.append((uv - [x0, top]) * s)
    return np.stack(views), np.stack(uvs)


def run(
    frames: np.ndarray,
    times: np.ndarray,
    body_uv: np.ndarray,
    tracking: TrackingConfig,
    flip: bool,
    detnet: str = "auto",
) -> dict:
    cap = Capture.from_weights(mode="video", fov_deg=SAMPLE_FOV_DEG, tracking=tracking,
                               flip_test=flip, detnet=detnet)  # fmt: skip
    found = hands = faces = 0
    errs, hits, upper = [], [], 0
    t0 = time.perf_counter()
    for i, frame in enumerate(frames):
        r = cap.process(frame, float(times[i]))
        upper += any("upper-body framing" in n for n in r.notes)
        if not r.people or r.people[0].body is None:
            continue
        p = r.people[0]
        found += 1
        hands += (p.left_hand is not None) + (p.right_hand is not None)
        faces += p.face is not None
        t_uv = body_uv[i]
        inside = (t_uv >= 0).all(1) & (t_uv < SIZE).all(1)
        e = np.linalg.norm(p.body.uv[inside] - t_uv[inside], axis=-1)
        errs.append(e)
        hits.append(e < 0.05 * np.ptp(t_uv[:, 1]))
    ms = (time.perf_counter() - t0) / len(frames) * 1000
    e = np.concatenate(errs) if errs else np.zeros(0)
    return {
        "frames": len(frames),
        "person": found,
        "err2d_px": float(e.mean()) if len(e) else float("nan"),
        "err2d_median_px": float(np.median(e)) if len(e) else float("nan"),
        "pck2d": float(np.concatenate(hits).mean()) if hits else float("nan"),
        "hands": hands,
        "face": faces,
        "upper_body_detections": upper,
        "ms_per_frame": ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cut", type=float, default=1.0, help="x the median pelvis row")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--flip-test", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--detnet", nargs="+", help="compare these DetNet weights (framings on)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    truth = load_truth(asset_path(SAMPLE_TRUTH))
    frames, times = read_frames(str(asset_path(SAMPLE)), args.frames)
    frames, body_uv = webcam_views(frames, truth["body_uv"][: len(frames)], args.cut)
    print(f"{len(frames)} frames cut to the person's upper body, {SIZE[0]}x{SIZE[1]}")
    on = TrackingConfig().upper_body_scales
    runs = [(w, on, w) for w in args.detnet or ()]
    runs = runs or [("framings off", (), "auto"), ("framings on", on, "auto")]
    for name, scales, detnet in runs:
        tracking = TrackingConfig(upper_body_scales=scales)
        m = run(frames, times, body_uv, tracking, args.flip_test, detnet)
        print(
            f"{name}: person in {m['person']}/{m['frames']} frames, body 2D error "
            f"{m['err2d_px']:.1f} px (median {m['err2d_median_px']:.1f}), 2D PCK "
            f"{m['pck2d']:.3f} (keypoints in the picture), hands "
            f"{m['hands']}, face {m['face']}, {m['upper_body_detections']} detections in an "
            f"upper-body framing, {m['ms_per_frame']:.0f} ms per frame"
        )


if __name__ == "__main__":
    main()
