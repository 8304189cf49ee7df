"""End-to-end capture speed, side by side with MediaPipe Holistic on the same frames.

``fullcap bench capture`` decodes a clip once (the bundled 640x480 sample by default), then
times, in this process and on the same frames:

- fullcap: ``Capture(mode="video")`` with the packaged networks: person detection on the first
  frame, then tracking, DetNet body + hands + face, BodyIKNet, HandIKNet, FaceNet, the 1-euro
  filter and the full posed mesh (the body model's vertices) every frame; the time per stage
  is reported too (without DetNet's flip test, as for webcams, unless asked for);
- MediaPipe Holistic (``mediapipe==0.10.14``, ``model_complexity=1``, video mode, the peer the
  issue names) when it is installed (``scripts/setup_bench.sh`` makes a venv with both).

Decoding is outside the timings; each runner gets ``warmup`` untimed frames first (the clip
is replayed from its start for the timed pass, after ``reset()``). Figures are per frame:
mean, median and 90th percentile milliseconds, frames per second from the mean.
"""

from __future__ import annotations

import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["bench_detnet", "cpu_name", "load_frames", "run"]


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; else platform's guess)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_frames(path: str, max_frames: int | None = None) -> tuple[list[np.ndarray], float]:
    """All frames (RGB uint8) of a video, image or image folder, and its frame rate."""
    from fullcap.capture.media import open_media

    media = open_media(path, max_frames=max_frames)
    frames = [f.image for f in media]
    if not frames:
        raise ValueError(f"{path}: no frames could be read")
    return frames, float(media.fps)


class _Timed:
    """Wraps a callable and adds its wall time per call to ``sink[name]``."""

    def __init__(self, fn: Callable, name: str, sink: dict[str, float]):
        self.fn, self.name, self.sink = fn, name, sink

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.sink[self.name] += time.perf_counter() - t0


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    return {
        "mean_ms": float(a.mean()),
        "median_ms": float(np.median(a)),
        "p90_ms": float(np.percentile(a, 90)),
        "fps": float(1000.0 / a.mean()),
    }


def bench_fullcap(
    frames: list[np.ndarray],
    fps: float,
    device: str,
    warmup: int,
    fov_deg: float | None,
    flip_test: bool = False,
) -> dict[str, Any]:
    """Per-frame timings of fullcap's video pipeline (see the module doc)."""
    from fullcap.capture import Capture

    cap = Capture.from_weights(mode="video", device=device, fov_deg=fov_deg, flip_test=flip_test)
    stages: dict[str, float] = defaultdict(float)
    cap.estimator = _Timed(cap.estimator, "detnet", stages)
    if cap.facenet is not None:
        cap.facenet = _Timed(cap.facenet, "facenet", stages)
    if cap.solver is not None:
        for name in ("body", "hand", "pose_model"):
            setattr(cap.solver, name, _Timed(getattr(cap.solver, name), name, stages))
    for i, f in enumerate(frames[:warmup]):
        cap.process(f, i / fps)
    cap.reset()
    stages.clear()
    times, found = [], 0
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for i, f in enumerate(frames):
        t0 = time.perf_counter()
        r = cap.process(f, i / fps)
        sync()
        times.append((time.perf_counter() - t0) * 1000)
        found += bool(r.people)
    n = len(frames)
    per_stage = {k: v * 1000 / n for k, v in stages.items()}
    labels = {
        "detnet": "DetNet (body, hands, face keypoints)",
        "body": "BodyIKNet",
        "hand": "HandIKNet (both hands)",
        "pose_model": "body model (mesh) + 2D-3D fit",
        "facenet": "FaceNet",
    }
    named = {labels.get(k, k): v for k, v in per_stage.items()}
    named["rest (detection, tracking, 1-euro filter, assembly)"] = float(
        np.mean(times) - sum(per_stage.values())
    )
    return _stats(times) | {
        "frames_with_person": found,
        "missing": list(cap.missing),
        "flip_test": flip_test,
        "stages_ms": named,
    }


def bench_mediapipe(frames: list[np.ndarray], warmup: int) -> dict[str, Any] | str:
    """Per-frame timings of MediaPipe Holistic, or why it could not run."""
    try:
        import mediapipe as mp
    except ImportError as exc:
        return f"mediapipe is not installed ({exc}); run scripts/setup_bench.sh"
    holistic = mp.solutions.holistic.Holistic(
        static_image_mode=False, model_complexity=1, refine_face_landmarks=False
    )
    try:
        for f in frames[:warmup]:
            holistic.process(f)
        holistic.close()
        holistic = mp.solutions.holistic.Holistic(
            static_image_mode=False, model_complexity=1, refine_face_landmarks=False
        )
        times, found = [], 0
        for f in frames:
            t0 = time.perf_counter()
            r = holistic.process(f)
            times.append((time.perf_counter() - t0) * 1000)
            found += r.pose_landmarks is not None
    finally:
        holistic.close()
    return _stats(times) | {"frames_with_person": found, "version": mp.__version__}


def run(
    path: str,
    device: str = "cpu",
    threads: int | None = None,
    warmup: int = 10,
    max_frames: int | None = None,
    mediapipe: bool = True,
    fov_deg: float | None = None,
    flip_test: bool = False,
) -> dict[str, Any]:
    """Both benchmarks on the frames of ``path``; a JSON-ready report."""
    if threads is not None:
        torch.set_num_threads(threads)
    frames, fps = load_frames(path, max_frames)
    h, w = frames[0].shape[:2]
    report: dict[str, Any] = {
        "input": os.path.basename(path),
        "frames": len(frames),
        "size": f"{w}x{h}",
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(device),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__,
        },
        "fullcap": bench_fullcap(frames, fps, device, warmup, fov_deg, flip_test),
    }
    if mediapipe:
        report["mediapipe_holistic"] = bench_mediapipe(frames, warmup)
        mp_r = report["mediapipe_holistic"]
        if isinstance(mp_r, dict):
            report["speed_ratio"] = mp_r["mean_ms"] / report["fullcap"]["mean_ms"]
    return report


def bench_detnet(
    frame: np.ndarray,
    box: np.ndarray,
    preset: str = "lite",
    weights: str | None = None,
    device: str = "cpu",
    n: int = 50,
    warmup: int = 5,
    half: bool = False,
    flip_test: bool = False,
) -> dict[str, Any]:
    """Milliseconds per frame of DetNet at batch 1 (body, both hands, face: what capture runs
    per frame) on ``frame`` with the person ``box``: the weights given, or an untrained
    network of ``preset`` (same compute). ``half``: float16 autocast (CUDA). ``flip_test``:
    also time it with the flip test, alternating frame by frame with the plain run (its
    figures under ``flip_test``, with ``ratio``: flip-test time / plain time, medians)."""
    import contextlib

    from fullcap.capture.estimators import DetNetEstimator
    from fullcap.models.detnet import DetNet, DetNetConfig
    from fullcap.models.weights import load_detnet

    if weights is not None:
        net = load_detnet(weights, device)
    else:
        net = DetNet(DetNetConfig.from_preset(preset)).to(device)
    runs = {"plain": DetNetEstimator(net)}
    if flip_test:
        runs["flip_test"] = DetNetEstimator(net, flip_test=True)
    cuda = str(device).startswith("cuda")
    ctx = (
        (lambda: torch.autocast("cuda", dtype=torch.float16))
        if half and cuda
        else contextlib.nullcontext
    )
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(warmup + n):
        for name, est in runs.items():
            t0 = time.perf_counter()
            with ctx():
                est(frame, box)
            sync()
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1000)
    params = sum(p.numel() for p in net.parameters())
    extra = {}
    if flip_test:
        flip = _stats(times["flip_test"])
        extra["flip_test"] = flip | {"ratio": flip["median_ms"] / float(np.median(times["plain"]))}
    return (
        _stats(times["plain"])
        | extra
        | {
            "preset": net.config.preset,
            "trained": weights is not None,
            "params_m": params / 1e6,
            "half": bool(half and cuda),
        }
    )
