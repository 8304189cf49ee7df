"""``fullcap bench capture`` and ``fullcap bench detnet``: speed on the bundled sample clip
(:mod:`fullcap.capture.bench`)."""

from __future__ import annotations

import json
from typing import Any

from fullcap.commands.common import CliError
from fullcap.commands.demo import SAMPLE, SAMPLE_FOV_DEG, SAMPLE_TRUTH

__all__ = ["bench_capture", "bench_detnet"]


def bench_capture(
    input: str | None,
    device: Any,
    threads: int | None,
    warmup: int,
    frames: int | None,
    mediapipe: bool,
    as_json: bool,
    flip_test: bool = False,
) -> int:
    """``fullcap bench capture``: see :mod:`fullcap.capture.bench`."""
    from fullcap.assets import asset_path
    from fullcap.capture.bench import run

    path = str(asset_path(SAMPLE)) if input is None else input
    fov = SAMPLE_FOV_DEG if input is None else None
    report = run(
        path, str(device), threads, warmup, frames, mediapipe, fov_deg=fov, flip_test=flip_test
    )
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
    name = "fullcap (flip test)" if report["fullcap"].get("flip_test") else "fullcap"
    rows = [(name, report["fullcap"])]
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


def bench_detnet(
    preset: str,
    weights: str | None,
    device: Any,
    n: int,
    threads: int | None,
    half: bool,
    as_json: bool,
    flip_test: bool = False,
) -> int:
    """``fullcap bench detnet``: DetNet's time per frame at batch 1 on the first frame of the
    bundled sample (640x480), person box from its ground truth; ``flip_test``: also with the
    flip test (alternating with the plain run)."""
    import numpy as np
    import torch

    from fullcap.assets import asset_path
    from fullcap.capture.bench import bench_detnet as run
    from fullcap.capture.bench import cpu_name, load_frames
    from fullcap.capture.detector import square_box
    from fullcap.eval.clip import load_truth

    if n < 1:
        raise CliError(f"-n must be at least 1, got {n}")
    if half and torch.device(device).type != "cuda":
        raise CliError("--half needs --device cuda (float16 on the CPU is slower, not faster)")
    if threads is not None:
        torch.set_num_threads(threads)
    frames, _ = load_frames(str(asset_path(SAMPLE)), max_frames=1)
    uv = load_truth(asset_path(SAMPLE_TRUTH))["body_uv"][0]
    box = square_box(np.concatenate([uv.min(0), uv.max(0)]), 1.25)
    r = run(frames[0], box, preset, weights, str(device), n=n, half=half, flip_test=flip_test)
    r |= {"cpu": cpu_name(), "torch_threads": torch.get_num_threads(), "device": str(device)}
    if as_json:
        print(json.dumps(r, indent=2))
        return 0
    print(
        f"DetNet {r['preset']} ({r['params_m']:.1f} M parameters, "
        f"{'trained' if r['trained'] else 'untrained'}{', fp16' if r['half'] else ''}) "
        f"on {r['device']} ({r['cpu']}, {r['torch_threads']} threads): body + 2 hands + face "
        f"per frame: mean {r['mean_ms']:.1f} ms, median {r['median_ms']:.1f} ms, "
        f"p90 {r['p90_ms']:.1f} ms ({r['fps']:.0f} frames/s)"
    )
    if "flip_test" in r:
        f = r["flip_test"]
        print(
            f"with the flip test (alternating frame by frame with the above): mean "
            f"{f['mean_ms']:.1f} ms, median {f['median_ms']:.1f} ms, p90 {f['p90_ms']:.1f} ms "
            f"({f['fps']:.0f} frames/s), {f['ratio']:.2f}x the plain median"
        )
    return 0
