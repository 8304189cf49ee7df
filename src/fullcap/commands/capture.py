"""``fullcap capture INPUT -o OUTDIR``: run the capture pipeline on files and write every export.

Writes into OUTDIR: ``frames.jsonl`` (line per frame, as it goes), ``result.npz`` (rewritten
atomically every ``npz_every`` frames and at the end), the overlay (``overlay.mp4`` for video
input, ``overlay/<name>.png`` for images), ``capture.bvh`` and ``capture.glb`` (when the body
model's parameters exist), ``arkit.csv`` / ``arkit.json`` (when expressions exist) and
``summary.json``. Exit codes: :data:`EXIT_CODES`.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

EXIT_OK = 0
EXIT_INPUT = 3  # missing / unsupported / unreadable input, bad --intrinsics
EXIT_OUTPUT = 4  # output directory cannot be written
EXIT_MODEL = 5  # a required network (DetNet) or a given weights file is missing or invalid
EXIT_PARTIAL = 6  # input damaged: decoding stopped early or files were skipped; outputs valid
EXIT_INTERRUPTED = 130
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_INPUT: "input missing, unsupported or unreadable",
    EXIT_OUTPUT: "output directory not writable",
    EXIT_MODEL: "required network weights missing or invalid",
    EXIT_PARTIAL: "input damaged: partial results written",
    EXIT_INTERRUPTED: "interrupted: partial results written",
}
EXPORTS = ("jsonl", "npz", "overlay", "bvh", "glb", "arkit")
_PART_COLORS = {"head": (0.89, 0.71, 0.60), "eyes": (0.10, 0.08, 0.08)}


def _error(message: str, code: int) -> int:
    print(f"fullcap: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def check_output_dir(out_dir: Path) -> str | None:
    """None if ``out_dir`` exists (created if needed) and accepts new files, else why not."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create output directory {out_dir}: {exc.strerror or exc}"
    if not out_dir.is_dir():
        return f"output path {out_dir} is not a directory"
    probe = out_dir / f".fullcap-write-test-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"cannot write into output directory {out_dir}: {exc.strerror or exc}"
    return None


def parse_camera(camera: str | None) -> np.ndarray | None:
    """Intrinsics from ``--intrinsics``: a vertical field of view in degrees (e.g. "60"; needs the
    frame size, so it is returned as a (1,) array), or a JSON file with ``fx, fy, cx, cy``
    or ``K`` (3x3), pixels of the input frames. Raises ValueError."""
    if camera is None:
        return None
    try:
        fov = float(camera)
    except ValueError:
        fov = None
    if fov is not None:
        if not 1 < fov < 179:
            raise ValueError(f"--intrinsics field of view must be in (1, 179) degrees, got {fov}")
        return np.array([fov])
    path = Path(camera)
    if not path.is_file():
        raise ValueError(f"--intrinsics {camera}: not a number (degrees) nor an existing JSON file")
    try:
        d = json.loads(path.read_text())
        K = (
            np.asarray(d["K"], np.float64)
            if "K" in d
            else np.array([[d["fx"], 0, d["cx"]], [0, d["fy"], d["cy"]], [0, 0, 1]], np.float64)
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"--intrinsics {path}: expected JSON with fx, fy, cx, cy or K (3x3) ({exc})"
        ) from None
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"--intrinsics {path}: K must be a finite 3x3 with fx, fy > 0")
    return K


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for, but torch sees no CUDA device")
    return torch.device(name)


def _mesh_colors(model) -> np.ndarray:
    labels = model.part_labels.cpu().numpy()
    colors = np.tile(np.array([0.86, 0.67, 0.56], np.float32), (len(labels), 1))
    for i, part in enumerate(model.part_names):
        if part in _PART_COLORS:
            colors[labels == i] = _PART_COLORS[part]
    return colors


def capture(
    input: str,
    out_dir: str,
    camera: str | None = None,
    device: str = "auto",
    mode: str = "auto",
    detnet: str | None = "auto",
    body_ik: str | None = "auto",
    hand_ik: str | None = "auto",
    facenet: str | None = "auto",
    smoothing: bool = True,
    min_cutoff: float = 1.0,
    beta: float = 5.0,
    d_cutoff: float = 1.0,
    exports: Sequence[str] = EXPORTS,
    max_frames: int | None = None,
    fps: float = 30.0,
    npz_every: int = 50,
    max_side: int = 4096,
    progress: bool = True,
    pipeline: Any = None,
    flip_test: bool | None = None,
) -> int:
    """Capture ``input`` (image, image directory, video or webcam index) into ``out_dir``.

    ``detnet`` / ``body_ik`` / ``hand_ik`` / ``facenet``: "auto" (packaged weights if
    present), a weights file, or None / "none" (leave the network out). ``camera``: see
    :func:`parse_camera`.
    ``mode``: "auto" (video for videos and webcams, image for images), "image" or "video".
    ``exports``: a subset of :data:`EXPORTS`. ``pipeline``: a ready
    :class:`fullcap.capture.Capture` (the weights, device, camera, mode, filter and
    ``flip_test`` arguments are then unused). ``flip_test``: average DetNet's body maps with
    those of the mirrored person crop (more accurate, about 6 ms more per frame on the
    project's CPU); None: on for files (images, videos), off for webcams (live speed first).
    Returns an exit code (:data:`EXIT_CODES`).
    """
    from fullcap.capture.media import MediaError, open_media

    out = Path(out_dir)
    detnet, body_ik, hand_ik, facenet = (
        None if isinstance(v, str) and v.lower() in ("none", "off") else v
        for v in (detnet, body_ik, hand_ik, facenet)
    )
    unknown = [e for e in exports if e not in EXPORTS]
    if unknown:
        return _error(f"unknown export {unknown[0]!r}; choose from {', '.join(EXPORTS)}", 2)
    problem = check_output_dir(out)
    if problem:
        return _error(problem, EXIT_OUTPUT)
    try:
        K = parse_camera(camera)
        media = open_media(input, nominal_fps=fps, max_frames=max_frames)
    except (MediaError, ValueError) as exc:
        return _error(str(exc), EXIT_INPUT)
    if mode == "auto":
        mode = "video" if media.kind in ("video", "webcam") else "image"
    if flip_test is None:
        flip_test = media.kind != "webcam"
    if pipeline is None:
        from fullcap.assets import AssetError
        from fullcap.capture import Capture, MissingComponent, OneEuroConfig

        try:
            filt = OneEuroConfig(min_cutoff, beta, d_cutoff) if smoothing else None
            pipeline = Capture.from_weights(
                mode=mode,
                device=_device(device),
                detnet=detnet,
                body_ik=body_ik,
                hand_ik=hand_ik,
                facenet=facenet,
                filter=filt,
                camera=K if K is not None and K.shape == (3, 3) else None,
                fov_deg=float(K[0]) if K is not None and K.shape == (1,) else None,
                max_side=max_side,
                flip_test=flip_test,
            )
        except (MissingComponent, AssetError, FileNotFoundError) as exc:
            return _error(str(exc), EXIT_MODEL)
        except ValueError as exc:
            return _error(str(exc), EXIT_INPUT)
    return _run(pipeline, media, out, set(exports), npz_every, progress)


def _run(pipeline, media, out: Path, exports: set[str], npz_every: int, progress: bool) -> int:
    from fullcap.capture.media import MediaError
    from fullcap.export.jsonl import JsonlWriter
    from fullcap.export.npz import NpzWriter
    from fullcap.export.overlay import Overlay, VideoWriter
    from fullcap.io import save_png

    model = pipeline.solver.model if pipeline.solver is not None else None
    names = {}
    if model is not None:
        names = {"bone_names": model.bone_names, "expression_names": model.expression_names}
    jsonl = JsonlWriter(out / "frames.jsonl") if "jsonl" in exports else None
    npz = NpzWriter(out / "result.npz", npz_every, names) if "npz" in exports else None
    overlay = video = None
    if "overlay" in exports:
        faces = None if model is None else model.faces.cpu().numpy()
        overlay = Overlay(faces, None if model is None else _mesh_colors(model))
        if media.kind in ("video", "webcam"):
            video = VideoWriter(out / "overlay.mp4", media.fps)
        else:
            (out / "overlay").mkdir(exist_ok=True)
    records: list[tuple[int, float, Any, Any]] = []  # frame, time, model params, expression
    expression_names = [] if model is None else list(model.expression_names)
    used: set[str] = set()  # overlay PNG names
    code, n_people, error = EXIT_OK, 0, None
    bar = _progress(progress, media.expected_frames)
    try:
        for frame in media:
            result = pipeline.process(frame.image, frame.time_s, frame.source, frame.index)
            if frame.notes:
                result = replace(result, notes=result.notes + frame.notes)
            person = result.people[0] if result.people else None
            n_people += person is not None
            if jsonl:
                jsonl.write(result)
            if npz:
                npz.add(result)
            if overlay is not None:
                rgb, _ = _as_rgb(frame.image)
                drawn = overlay.draw(rgb, result)
                if video is not None:
                    video.write(drawn)
                else:
                    stem = Path(frame.source).stem
                    name = f"{stem}.png" if stem not in used else f"{stem}_{frame.index}.png"
                    used.add(stem)
                    save_png(out / "overlay" / name, drawn)
            params = None if person is None else person.model
            face = None if person is None else person.face
            expr = None if face is None else face.expression
            if expr is not None and face.expression_names:
                expression_names = list(face.expression_names)
            records.append((result.frame, result.time_s, params, expr))
            if bar is not None:
                bar[0].advance(bar[1])
    except MediaError as exc:
        error, code = str(exc), EXIT_INPUT
    except KeyboardInterrupt:
        error, code = "interrupted", EXIT_INTERRUPTED
    finally:
        if bar is not None:
            bar[0].stop()
        if jsonl:
            jsonl.close()
        if video is not None:
            video.close()
        if overlay is not None:
            overlay.close()
    if code == EXIT_OK and (media.stopped_early or media.problems):
        code = EXIT_PARTIAL
    written = [p for p in ("frames.jsonl",) if jsonl]
    if npz:
        npz.close(complete=code == EXIT_OK)
        written.append("result.npz")
    written += _animation(model, records, out, exports, expression_names)
    if overlay is not None:
        written.append("overlay.mp4" if video is not None else "overlay/")
    summary = {
        "input": media.name,
        "kind": media.kind,
        "mode": pipeline.mode,
        "flip_test": bool(getattr(pipeline.estimator, "flip_test", False)),
        "frames": len(records),
        "frames_with_person": n_people,
        "missing": list(pipeline.missing),
        "problems": media.problems + ([error] if error else []),
        "notes": list(pipeline.notes) + ([overlay.note] if overlay and overlay.note else []),
        "files": written,
        "exit_code": code,
    }
    from fullcap.io import atomic_write_text

    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    _report(summary, out)
    if error:
        _error(error, code)
    return code


def _animation(
    model, records, out: Path, exports: set[str], expression_names: list[str]
) -> list[str]:
    """BVH / GLB / ARKit files from the collected per-frame parameters (ARKit columns:
    ``expression_names``, FaceNet's); names written."""
    from fullcap.export.arkit import write_arkit_csv, write_arkit_json
    from fullcap.export.bvh import write_bvh
    from fullcap.export.gltf import write_glb

    written = []
    frames = [r[0] for r in records]
    times = np.array([r[1] for r in records], dtype=np.float64)
    params = [r[2] for r in records]
    if model is not None and any(p is not None for p in params):
        if "bvh" in exports:
            write_bvh(out / "capture.bvh", model, params, times)
            written.append("capture.bvh")
        if "glb" in exports:
            write_glb(out / "capture.glb", model, params, times)
            written.append("capture.glb")
    exprs = [r[3] for r in records]
    if "arkit" in exports and any(e is not None for e in exprs):
        names = expression_names
        write_arkit_csv(out / "arkit.csv", names, frames, times.tolist(), exprs)
        write_arkit_json(out / "arkit.json", names, frames, times.tolist(), exprs)
        written += ["arkit.csv", "arkit.json"]
    return written


def _as_rgb(image: np.ndarray) -> tuple[np.ndarray, list[str]]:
    from fullcap.capture.frames import validate_frame

    return validate_frame(image)


def _progress(enabled: bool, total: int | None):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(file=sys.stderr), transient=True)
    task = bar.add_task("capture", total=total)
    bar.start()
    return bar, task


def _report(summary: dict, out: Path) -> None:
    print(
        f"{summary['frames']} frames ({summary['kind']}, {summary['mode']} mode), a person in "
        f"{summary['frames_with_person']}; wrote {', '.join(summary['files'])} to {out}/"
    )
    if summary["missing"]:
        print(f"not available (left empty): {', '.join(summary['missing'])}")
    for line in summary["notes"] + summary["problems"]:
        print(f"note: {line}")


__all__ = ["EXIT_CODES", "EXPORTS", "capture", "check_output_dir", "parse_camera"]
