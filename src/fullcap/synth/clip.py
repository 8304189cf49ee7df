"""Synthetic video clips with ground truth: one person moving in front of a static camera.

Used for the bundled sample clip (``fullcap synth clip``), the capture tests and the capture
benchmark. The person walks in place while turning and drifting sideways, then waves (the
synthetic engine's ``walk`` and ``wave`` archetypes, cross-faded), and talks and smiles (ARKit
``jawOpen`` / ``mouthSmile*``). ``look="synth"`` gives the engine's appearance (skin, clothing,
hair), lighting and a procedural room; ``look="plain"`` a grey figure with a skin-coloured head
on a gradient (fast, for tests).

Camera conventions as everywhere in capture: ground truth in the camera frame (x right, y
down, z forward, metres), K in pixels with pixel corners at integers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import roma
import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.bodymodel.poses import POSES, pose_tensor
from fullcap.io import atomic_path
from fullcap.skeletons import BODY33, FACE68, HAND21, joint_map
from fullcap.train.ik_data import MODEL_TO_CAMERA

__all__ = ["Clip", "archetype_poses", "make_clip", "write_video"]

LOOKS = ("plain", "synth")


@dataclass
class Clip:
    """frames (T, H, W, 3) uint8 RGB (None when not rendered); times (T,) s; K (3, 3);
    per frame ground truth: body_uv (T, 33, 2), body_cam (T, 33, 3) camera metres,
    hand_uv / hand_cam {"left", "right"} (T, 21, *), face_uv (T, 68, 2); model params:
    betas (T, K), pose (T, J-1, 3, 3), global_orient (T, 3, 3) model -> camera, transl (T, 3)
    camera metres, expression (T, 52); vertices (T, V, 3) camera metres."""

    frames: np.ndarray | None
    times: np.ndarray
    K: np.ndarray
    body_uv: np.ndarray
    body_cam: np.ndarray
    hand_uv: dict[str, np.ndarray]
    hand_cam: dict[str, np.ndarray]
    face_uv: np.ndarray
    betas: np.ndarray
    pose: np.ndarray
    global_orient: np.ndarray
    transl: np.ndarray
    expression: np.ndarray
    vertices: np.ndarray


def archetype_poses(
    model: BodyModel,
    times: np.ndarray,
    segments: tuple[tuple[str, float], ...] = (("walk", 1.1),),
    fade_s: float = 0.4,
) -> torch.Tensor:
    """(T, J-1, 3, 3) poses at ``times`` (s): the archetypes of ``segments`` ((name, cycle
    seconds) each, equal shares of the clip's duration) played one after another, each cycling
    through its keyframes, cross-faded over ``fade_s``; relaxed fingers from
    ``POSES['walking']``."""
    from fullcap.synth.joint_limits import default_limits
    from fullcap.synth.poses import ARCHETYPES, BodyPosePrior

    limits = default_limits()
    t = torch.as_tensor(np.asarray(times, np.float64))
    span = float(t[-1] - t[0]) if len(t) > 1 else 1.0
    length = span / len(segments)

    def play(name: str, cycle: float) -> torch.Tensor:
        kf = BodyPosePrior(limits, {name: ARCHETYPES[name]}).keyframes  # (k, J-1, 3)
        s = (t - t[0]) / cycle * len(kf)
        k = s.floor().long() % len(kf)
        u = (s - s.floor())[:, None, None].float()
        return (1 - u) * kf[k] + u * kf[(k + 1) % len(kf)]

    angles = play(*segments[0])
    for i, seg in enumerate(segments[1:], start=1):
        w = ((t - t[0] - i * length) / max(fade_s, 1e-6) + 0.5).clamp(0, 1)
        angles = (1 - w.float()[:, None, None]) * angles + w.float()[:, None, None] * play(*seg)
    pose = limits.angles_to_pose(angles)
    fingers = pose_tensor(model, {k: v for k, v in POSES["walking"].items() if "finger" in k})
    is_finger = torch.tensor(["finger" in b or "metacarpal" in b for b in model.bone_names[1:]])
    return torch.where(is_finger[None, :, None, None], fingers.to(pose.dtype), pose)


def _expression(model: BodyModel, times: np.ndarray) -> torch.Tensor:
    """(T, 52): talking (jawOpen at about 3 Hz) and a smile that comes and goes."""
    names = list(model.expression_names)
    t = np.asarray(times, np.float64)
    e = np.zeros((len(t), len(names)), np.float32)
    e[:, names.index("jawOpen")] = 0.35 * np.clip(np.sin(2 * np.pi * 3.0 * t), 0, None)
    smile = 0.6 * np.clip(np.sin(2 * np.pi * 0.4 * t), 0, None)
    for n in ("mouthSmileLeft", "mouthSmileRight"):
        e[:, names.index(n)] = smile
    return torch.from_numpy(e)


def make_clip(
    model: BodyModel,
    n: int = 6,
    size: tuple[int, int] = (192, 160),
    fps: float = 25.0,
    render: bool = True,
    look: str = "plain",
    seed: int = 0,
    wave: bool = False,
) -> Clip:
    """A person walking in place while turning (40 deg/s) and drifting sideways (0.5 m/s);
    with ``wave`` the second half of the clip is a wave of the right hand. ``size`` = (W, H)."""
    if look not in LOOKS:
        raise ValueError(f"look must be one of {LOOKS}, got {look!r}")
    if n < 1 or fps <= 0:
        raise ValueError(f"need n >= 1 frames and fps > 0, got n={n}, fps={fps}")
    from fullcap.render import intrinsics

    w, h = size
    K = intrinsics(w, h, 50.0)
    times = np.arange(n) / fps
    segments = (("walk", 1.1), ("wave", 1.2)) if wave else (("walk", 1.1),)
    pose = archetype_poses(model, times, segments)
    t = torch.as_tensor(times, dtype=torch.float32)
    # Turning and drifting during the walk; standing still (facing where the turn ended) to wave.
    moving = torch.minimum(t, torch.tensor(float(times[-1]) / 2)) if wave else t
    yaw = torch.deg2rad(-20 + 40 * moving)  # turning at 40 deg/s
    zero = torch.zeros(n)
    R = MODEL_TO_CAMERA.to(torch.float32)
    go = R @ roma.rotvec_to_rotmat(torch.stack([zero, zero, yaw], 1))
    transl = torch.stack([-0.25 + 0.5 * moving, zero + 0.05, zero + 2.8], 1)  # 0.5 m/s
    betas = torch.zeros(n, 16)
    betas[:, 0] = 0.5
    expression = _expression(model, times)
    with torch.no_grad():
        out = model(betas=betas, pose=pose, global_orient=go, transl=transl, expression=expression)
    verts = out.vertices.numpy()

    def proj(p: np.ndarray) -> np.ndarray:
        q = p @ K.T
        return (q[..., :2] / q[..., 2:3]).astype(np.float32)

    body = out.keypoints["body33"].numpy()[:, joint_map(model.keypoint_names("body33"), BODY33)]
    hand_ids = joint_map(model.keypoint_names("right_hand"), HAND21)
    hands = {s: out.keypoints[f"{s}_hand"].numpy()[:, hand_ids] for s in ("left", "right")}
    face = out.keypoints["face68"].numpy()[:, joint_map(model.keypoint_names("face68"), FACE68)]
    frames = None
    if render:
        render_fn = _render_synth if look == "synth" else _render_plain
        frames = render_fn(model, verts, K, (w, h), seed)
    return Clip(
        frames=frames,
        times=times,
        K=K,
        body_uv=proj(body),
        body_cam=body,
        hand_uv={s: proj(v) for s, v in hands.items()},
        hand_cam=hands,
        face_uv=proj(face),
        betas=betas.numpy(),
        pose=pose.numpy(),
        global_orient=go.numpy(),
        transl=transl.numpy(),
        expression=expression.numpy(),
        vertices=verts,
    )


def _render_plain(
    model: BodyModel, verts: np.ndarray, K: np.ndarray, size: tuple[int, int], seed: int
) -> np.ndarray:
    from fullcap.render import Renderer

    w, h = size
    faces = model.faces.numpy()
    colors = np.full((len(verts[0]), 3), 0.8, np.float32)
    colors[model.part_labels.numpy() == model.part_names.index("head")] = (0.9, 0.7, 0.6)
    yy = np.linspace(90, 40, h, dtype=np.float32)[:, None, None]
    bg = np.broadcast_to(yy, (h, w, 3)).astype(np.uint8)
    with Renderer(w, h) as r:
        return np.stack([r.render(v, faces, K, colors, background=bg).rgb for v in verts])


def _render_synth(
    model: BodyModel, verts: np.ndarray, K: np.ndarray, size: tuple[int, int], seed: int
) -> np.ndarray:
    """The engine's look: appearance, lighting (held for the whole clip, exposure set on the
    first frame) and a room background seen by a camera 2.8 m away at 1 m height."""
    from fullcap.render import Renderer
    from fullcap.synth.appearance import AppearanceModel
    from fullcap.synth.scene import (
        SceneStyle,
        background,
        irradiance,
        sample_lighting,
        sh_to_camera,
        vertex_normals,
    )
    from fullcap.synth.sources import get_source

    w, h = size
    rng = np.random.default_rng([seed, 271828])
    style = get_source("mtc_like").appearance
    app_model = AppearanceModel(model)
    app = app_model.sample(rng, style)
    scene = SceneStyle()
    light = sample_lighting(rng, scene)
    R = MODEL_TO_CAMERA.numpy().astype(np.float64)
    cam_t = -R @ np.array([0.0, -2.8, 1.0])  # world -> camera; the floor is z = 0
    # The clip's people stand at about 2.8 m; the room's floor is drawn for the camera above.
    sh = torch.from_numpy(sh_to_camera(light.sh, R)).float()[None]
    ldir = torch.from_numpy(R @ light.light_dir).float()[None]
    lrgb = torch.from_numpy(light.light_rgb).float()[None]
    albedo = app_model.albedo_tensor([app])
    faces_t = model.faces.long()
    faces = model.faces.numpy()
    tint = np.clip(light.sh[0] / max(light.sh[0].mean(), 1e-6), 0.7, 1.3) ** (1 / 2.2)
    bg = background(rng, (h, w), K, R, cam_t, scene, tint)
    frames, gain = [], None
    with Renderer(w, h) as r:
        for v in verts:
            vt = torch.from_numpy(v).float()[None]
            normals = vertex_normals(vt, faces_t)
            irr = irradiance(normals, sh, ldir, lrgb)
            if gain is None:  # auto-exposure on the first frame, then held
                front = (normals[..., 2] < 0).float()
                level = (irr.mean(-1) * front).sum() / front.sum().clamp_min(1.0)
                gain = 0.85 / float(level.clamp_min(1e-3))
            colors = (albedo * irr * gain).clamp(0, 1).pow(1 / 2.2)[0].numpy()
            img = r.render(v, faces, K, colors, ambient=1.0, background=bg).rgb
            frames.append(img)
    return np.stack(frames)


def write_video(path: str | os.PathLike[str], frames: np.ndarray, fps: float) -> Path:
    """Write RGB frames (T, H, W, 3) uint8 as an MPEG-4 video (OpenCV's ``mp4v``), atomically
    (a temporary file renamed into place); the folder is created."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            raise OSError(f"cannot write a video to {path}")
        try:
            for f in frames:
                writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return path
