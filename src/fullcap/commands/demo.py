"""``fullcap demo``: capture the bundled sample clip and check the result against its truth.

The sample (``assets/samples/walk_wave.mp4``, 3 s, 640x480, 25 fps) was rendered by
``fullcap synth clip`` from the body model (CC0 assets) and fullcap's own appearance and scene
code, so it ships under the project's licence; its ground truth lies beside it (``.npz``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["SAMPLE", "SAMPLE_FOV_DEG", "capture_sample"]

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


def capture_sample(out_dir: str | Path, device: str = "auto", progress: bool = True) -> int:
    """Run ``fullcap capture`` on the bundled sample into ``out_dir`` and print how far the
    result is from the ground truth (:mod:`fullcap.eval.clip`). Returns the capture's exit
    code."""
    import numpy as np

    from fullcap.assets import asset_path
    from fullcap.commands.capture import EXIT_OK, EXIT_PARTIAL, capture
    from fullcap.eval.clip import compare, load_truth
    from fullcap.io import atomic_write_text

    video, truth = asset_path(SAMPLE), asset_path(SAMPLE_TRUTH)
    out = Path(out_dir)
    code = capture(
        str(video), str(out), camera=str(SAMPLE_FOV_DEG), device=device, progress=progress
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


def bench_capture(
    input: str | None,
    device: Any,
    threads: int | None,
    warmup: int,
    frames: int | None,
    mediapipe: bool,
    as_json: bool,
) -> int:
    """``fullcap bench capture``: see :mod:`fullcap.capture.bench`."""
    from fullcap.assets import asset_path
    from fullcap.capture.bench import run

    path = str(asset_path(SAMPLE)) if input is None else input
    fov = SAMPLE_FOV_DEG if input is None else None
    report = run(path, str(device), threads, warmup, frames, mediapipe, fov_deg=fov)
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    _print_bench(report)
    return 0


def _print_bench(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    m = report["machine"]
    console = Console(highlight=False)
    console.print(
        f"{report['input']}: {report['frames']} frames at {report['size']}; {m['cpu']}, "
        f"{m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads, "
        f"device {m['device']}" + (f" ({m['gpu']})" if m["gpu"] else "")
    )
    table = Table(
        title="end-to-end per frame",
        title_justify="left",
        caption="fullcap: keypoints, IK, full mesh and face parameters; "
        "MediaPipe Holistic: model_complexity=1, video mode",
        caption_justify="left",
    )
    for col in ("pipeline", "mean ms", "median ms", "p90 ms", "frames/s", "person found"):
        table.add_column(col, justify="left" if col == "pipeline" else "right")
    rows = [("fullcap", report["fullcap"])]
    mp = report.get("mediapipe_holistic")
    if isinstance(mp, dict):
        rows.append((f"MediaPipe Holistic {mp['version']}", mp))
    for name, r in rows:
        table.add_row(
            name,
            f"{r['mean_ms']:.1f}",
            f"{r['median_ms']:.1f}",
            f"{r['p90_ms']:.1f}",
            f"{r['fps']:.1f}",
            f"{r['frames_with_person']}/{report['frames']}",
        )
    console.print(table)
    if isinstance(mp, str):
        console.print(f"MediaPipe Holistic not run: {mp}")
    elif "speed_ratio" in report:
        console.print(f"fullcap is {report['speed_ratio']:.2f}x MediaPipe Holistic's speed")
    stages = Table(title="fullcap per stage (mean ms per frame)", title_justify="left")
    stages.add_column("stage")
    stages.add_column("ms", justify="right")
    for k, v in report["fullcap"]["stages_ms"].items():
        stages.add_row(k, f"{v:.2f}")
    console.print(stages)
    if report["fullcap"]["missing"]:
        console.print(f"networks missing (not run): {', '.join(report['fullcap']['missing'])}")
