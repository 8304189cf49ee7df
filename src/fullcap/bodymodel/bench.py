"""Benchmark of the body-model forward against Anny's own forward, in one process.

``fullcap bodymodel bench`` prints milliseconds per call and per body at each batch size for
fullcap's forward (vertices + joints + every keypoint set), fullcap's keypoints-only forward
(no full-mesh skinning) and Anny's forward (float32, 52 facial actions; Anny gives vertices
and bone poses, no keypoints), with the speed-up over Anny.
"""

from __future__ import annotations

import platform
import time
import warnings
from collections.abc import Callable, Sequence

import torch

from fullcap.bodymodel.model import BodyModel


def _time(fn: Callable[[], object], repeats: int, min_seconds: float = 0.5) -> float:
    """Median seconds per call over ``repeats`` timed runs, after two warm-up calls."""
    fn()
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 * repeats:
            break
    times.sort()
    return times[len(times) // 2]


def _inputs(n: int, n_bones: int, n_betas: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rotvec = torch.randn(n, n_bones, 3, generator=g) * 0.3
    return dict(
        phenotypes=torch.rand(n, 6, generator=g).to(device),
        betas=torch.randn(n, n_betas, generator=g).to(device),
        expression=torch.rand(n, 52, generator=g).to(device),
        rotvec=rotvec.to(device),
        transl=torch.randn(n, 3, generator=g).to(device),
    )


def _anny(device: torch.device):
    import anny

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = anny.Anny(facial_actions="all").to(device=device, dtype=torch.float32)
    try:
        import warp  # noqa: F401

        skinning = "warp_lbs"
    except ImportError:
        skinning = "dense lbs (warp not installed)"
    return model, skinning


def run(
    batch_sizes: Sequence[int] = (1, 64),
    repeats: int = 20,
    compare_anny: bool = True,
    device: str | torch.device = "cpu",
    threads: int | None = None,
) -> dict:
    """Time the forwards; returns a dict with a row per (model, batch size).

    ``threads``: torch intra-op threads for the run (None: leave as is). On a machine that is
    busy with other work, 1 thread gives steadier figures (2 threads spin-wait on each other).
    """
    import roma

    if threads is not None:
        torch.set_num_threads(threads)

    device = torch.device(device)
    bm = BodyModel.load(device=device)
    anny_model, skinning = (None, None)
    if compare_anny:
        anny_model, skinning = _anny(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for n in batch_sizes:
        x = _inputs(n, bm.num_bones, bm.num_betas, device)
        rot = roma.rotvec_to_rotmat(x["rotvec"])

        def ours(return_vertices=True, x=x, rot=rot):
            with torch.no_grad():
                bm(
                    betas=x["betas"],
                    expression=x["expression"],
                    pose=rot[:, 1:],
                    global_orient=rot[:, 0],
                    transl=x["transl"],
                    return_vertices=return_vertices,
                )
            sync()

        t_full = _time(ours, repeats)
        t_kp = _time(lambda ours=ours: ours(False), repeats)
        row = {"batch": n, "fullcap_ms": t_full * 1e3, "fullcap_keypoints_only_ms": t_kp * 1e3}
        if anny_model is not None:
            deltas = torch.eye(4, device=device).repeat(n, bm.num_bones, 1, 1)
            deltas[:, :, :3, :3] = rot
            deltas[:, 0, :3, 3] = x["transl"]

            def theirs(deltas=deltas, x=x):
                with torch.no_grad():
                    anny_model(
                        pose_parameters=deltas,
                        phenotype_kwargs=x["phenotypes"],
                        facial_actions=x["expression"],
                    )
                sync()

            t_anny = _time(theirs, repeats)
            row |= {"anny_ms": t_anny * 1e3, "speedup": t_anny / t_full}
        rows.append(row)
    return {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "anny_skinning": skinning,
        "num_betas": bm.num_betas,
        "rows": rows,
    }
