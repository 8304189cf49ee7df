"""``fullcap demo``: capture the bundled sample clip and check the result against its truth,
then render the body model in a few named poses.

The sample (``assets/samples/walk_wave.mp4``, 3 s, 640x480, 25 fps) was rendered by
``fullcap synth clip`` from the body model (CC0 assets) and fullcap's own appearance and scene
code, so it ships under the project's licence; its ground truth lies beside it (``.npz``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fullcap.commands.common import CliError, load_body_model, resolve_device

__all__ = ["SAMPLE", "SAMPLE_FOV_DEG", "SAMPLE_TRUTH", "capture_sample", "cmd_demo", "run_demo"]

SAMPLE = "samples/walk_wave.mp4"
SAMPLE_TRUTH = "samples/walk_wave.npz"
SAMPLE_FOV_DEG = 50.0  # the clip's camera (vertical field of view), as ``synth clip`` renders


def _print_comparison(metrics: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="capture vs the sample's ground truth", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.3g}")
    Console(highlight=False).print(table)


def capture_sample(
    out_dir: str | Path,
    device: str = "auto",
    progress: bool = True,
    max_frames: int | None = None,
    flip_test: bool | None = None,
) -> int:
    """Run ``fullcap capture`` on the bundled sample into ``out_dir`` (``flip_test``: as
    :func:`fullcap.commands.capture.capture`'s) and print how far the result is from the
    ground truth (:mod:`fullcap.eval.clip`). Returns the capture's exit code."""
    import numpy as np

    from fullcap.assets import asset_path
    from fullcap.commands.capture import EXIT_OK, EXIT_PARTIAL, capture
    from fullcap.eval.clip import compare, load_truth
    from fullcap.io import atomic_write_text

    video, truth = asset_path(SAMPLE), asset_path(SAMPLE_TRUTH)
    out = Path(out_dir)
    code = capture(
        str(video),
        str(out),
        camera=str(SAMPLE_FOV_DEG),
        device=device,
        progress=progress,
        max_frames=max_frames,
        flip_test=flip_test,
    )
    if code not in (EXIT_OK, EXIT_PARTIAL):
        return code
    with np.load(out / "result.npz", allow_pickle=False) as z:
        result = {k: z[k] for k in z.files}
    metrics = compare(result, load_truth(truth))
    _print_comparison(metrics)
    atomic_write_text(out / "accuracy.json", json.dumps(metrics, indent=2) + "\n")
    print(f"accuracy: {out / 'accuracy.json'}")
    return code


# Demo part colours (linear RGB in [0, 1]) by body-model part name.
_PART_COLORS = {
    "body": (0.86, 0.67, 0.56),
    "head": (0.89, 0.71, 0.60),
    "left_hand": (0.82, 0.62, 0.52),
    "right_hand": (0.82, 0.62, 0.52),
    "eyes": (0.10, 0.08, 0.08),
}
_DEMO_VIEWS = {"front": 0.0, "three_quarter": 35.0}  # view name -> camera azimuth, degrees


def _background(size: int) -> Any:
    import numpy as np

    ramp = np.linspace(236, 196, size, dtype=np.float32)[:, None, None]
    return np.broadcast_to(ramp, (size, size, 3)).astype(np.uint8)


def run_demo(
    out_dir: Path, size: int, device: str, pose_names: Sequence[str] | None = None
) -> list[Path]:
    """Pose the body model in named poses, render each from the front and three-quarter.

    Writes ``pose_<name>_<view>.png`` (size x size) per pose and view, and the contact sheet
    ``bodymodel_poses.png`` (poses as columns, views as rows). Returns the written paths,
    contact sheet last.
    """
    import cv2
    import numpy as np
    import torch

    from fullcap.bodymodel.poses import POSES, pose_tensor
    from fullcap.io import save_png
    from fullcap.render import Renderer, contact_sheet, intrinsics, orbit_camera

    if size < 64 or size > 4096:
        raise CliError(f"--size must be between 64 and 4096 pixels, got {size}")
    names = list(pose_names) if pose_names else list(POSES)
    unknown = [n for n in names if n not in POSES]
    if unknown:
        raise CliError(f"unknown pose {unknown[0]!r}; poses are: {', '.join(POSES)}")
    bm = load_body_model(resolve_device(device))
    renderer = Renderer(size, size)  # fails early (RenderUnavailable) before any work

    labels = bm.part_labels.cpu().numpy()
    colors = np.empty((len(labels), 3), dtype=np.float32)
    for i, part in enumerate(bm.part_names):
        colors[labels == i] = _PART_COLORS.get(part, _PART_COLORS["body"])
    faces = bm.faces.cpu().numpy()
    with torch.no_grad():
        posed = [bm(pose=pose_tensor(bm, POSES[n])).vertices[0].cpu().numpy() for n in names]

    # One camera distance for every pose (same scale on the sheet), far enough that every
    # pose fits the square image from any azimuth: its half height and its horizontal radius
    # about the box centre must fit within the field of view, with a margin for perspective.
    fov = 30.0
    half = 0.0
    for v in posed:
        center = 0.5 * (v.min(0) + v.max(0))
        r_xy = float(np.linalg.norm(v[:, :2] - center[:2], axis=1).max())
        half = max(half, r_xy, 0.5 * float(v[:, 2].max() - v[:, 2].min()))
    distance = 1.1 * half / np.tan(np.radians(fov / 2)) + 0.3
    K = intrinsics(size, size, fov)
    background = _background(size)

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    tiles: dict[str, list[Any]] = {view: [] for view in _DEMO_VIEWS}
    try:
        for name, verts in zip(names, posed, strict=True):
            center = 0.5 * (verts.min(0) + verts.max(0))
            for view, azimuth in _DEMO_VIEWS.items():
                R, t = orbit_camera(center, distance, azimuth, 8.0)
                rgb = renderer.render(
                    verts @ R.T + t, faces, K, vertex_colors=colors, background=background
                ).rgb
                written.append(save_png(out_dir / f"pose_{name}_{view}.png", rgb))
                tile = 256 if size > 256 else size
                tiles[view].append(cv2.resize(rgb, (tile, tile), interpolation=cv2.INTER_AREA))
    finally:
        renderer.release()
    images = tiles["front"] + tiles["three_quarter"]
    titles = [f"{n} ({v.replace('_', '-')})" for v in _DEMO_VIEWS for n in names]
    sheet = contact_sheet(images, cols=len(names), titles=titles)
    written.append(save_png(out_dir / "bodymodel_poses.png", sheet))
    return written


def cmd_demo(
    out: str,
    size: int,
    device: str,
    poses: Sequence[str] | None,
    capture: bool = True,
    flip_test: bool | None = None,
) -> int:
    """``fullcap demo``: capture the bundled sample clip into OUT (compared with its ground
    truth), then render the body model in a few poses into OUT/bodymodel."""
    code = 0
    if capture:
        code = capture_sample(Path(out), device, sys.stderr.isatty(), flip_test=flip_test)
    paths = run_demo(Path(out) / "bodymodel", size, device, poses)
    print(f"rendered {len(paths) - 1} views of {len(paths) // 2} poses to {Path(out)}/bodymodel/")
    print(f"overview: {paths[-1]}")
    return code
