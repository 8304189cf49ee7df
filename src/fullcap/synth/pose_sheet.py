"""Contact sheets of sampled parameters, for looking at what the samplers produce.

``python -m fullcap.synth.pose_sheet`` writes ``docs/synth_pose_samples.png`` (48 whole-body
samples, titled by archetype) and ``docs/synth_hand_samples.png`` (24 samples, close-ups of
both hands, titled by hand archetype). Vertices are coloured by body part (the bone with the
largest skinning weight): the person's left in warm colours, the right in cool colours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fullcap.bodymodel.model import BodyModel

# part -> RGB in [0, 1]
PART_COLORS = {
    "torso": (0.78, 0.74, 0.68),
    "head": (0.92, 0.86, 0.78),
    "eyes": (0.92, 0.92, 0.96),
    "arm.L": (0.85, 0.35, 0.3),
    "hand.L": (0.95, 0.65, 0.25),
    "leg.L": (0.7, 0.3, 0.5),
    "arm.R": (0.3, 0.5, 0.85),
    "hand.R": (0.35, 0.8, 0.8),
    "leg.R": (0.35, 0.4, 0.7),
}


def bone_part(name: str) -> str:
    """The coloured part a bone belongs to (keys of :data:`PART_COLORS`)."""
    side = name[-2:] if name[-2:] in (".L", ".R") else ""
    if name.startswith("eye"):
        return "eyes"
    if name.startswith(("neck", "head")):
        return "head"
    if name.startswith(("finger", "metacarpal")):
        return "hand" + side
    if name.startswith(("clavicle", "shoulder", "upperarm", "lowerarm", "wrist")):
        return "arm" + side
    if name.startswith(("upperleg", "lowerleg", "foot", "toe")):
        return "leg" + side
    return "torso"


def part_vertex_colors(model: BodyModel) -> np.ndarray:
    """(V, 3) float32 RGB in [0, 1]: each vertex coloured by its dominant bone's part."""
    dominant = model.skin_weights.argmax(dim=1).cpu().numpy()
    lut = np.array([PART_COLORS[bone_part(n)] for n in model.bone_names], dtype=np.float32)
    return lut[dominant]


def look_at(center: np.ndarray, eye: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R (3, 3), t (3,)) of an OpenCV camera at ``eye`` looking at ``center``
    with world direction ``up`` (3,) shown upwards in the image."""
    z = center - eye
    z = z / np.linalg.norm(z)
    y = -(up - (up @ z) * z)
    y = y / np.linalg.norm(y)
    x = np.cross(y, z)
    R = np.stack([x, y, z])
    return R, -R @ eye


def render_tiles(
    model: BodyModel,
    vertices: torch.Tensor,
    size: int = 256,
    azimuth_deg: float = 35.0,
    elevation_deg: float = 10.0,
    focus: torch.Tensor | None = None,
    focus_radius: float | None = None,
    cameras: list[tuple[np.ndarray, np.ndarray]] | None = None,
    faces: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Render posed meshes (B, V, 3) (model frame, metres) to (size, size, 3) uint8 tiles.

    The camera orbits the mesh's bounding sphere (or ``focus`` (B, 3) with radius
    ``focus_radius`` metres) at the given azimuth (0: the front, seen from -Y) and elevation,
    unless ``cameras`` gives each mesh's world-to-camera (R, t). ``faces`` (F, 3): draw only
    these triangles (default: the whole mesh).
    """
    from fullcap.render import Renderer, intrinsics, orbit_camera

    fov = 30.0
    K = intrinsics(size, size, fov)
    colors = part_vertex_colors(model)
    if faces is None:
        faces = model.faces.cpu().numpy()
    tiles = []
    with Renderer(size, size) as renderer:
        for b, v in enumerate(vertices.detach().cpu().numpy()):
            if focus is None:
                lo, hi = v.min(0), v.max(0)
                center, radius = 0.5 * (lo + hi), 0.5 * float(np.linalg.norm(hi - lo))
            else:
                center = focus[b].detach().cpu().numpy()
                radius = float(focus_radius or 0.15)
            dist = 1.05 * radius / np.sin(np.radians(fov / 2))
            if cameras is None:
                R, t = orbit_camera(center, dist, azimuth_deg, elevation_deg)
            else:
                R, t = cameras[b]
            tiles.append(renderer.render(v @ R.T + t, faces, K, vertex_colors=colors).rgb)
    return tiles


def _upright(params) -> torch.Tensor:
    """The samples' global orientations (B, 3, 3) without their random heading."""
    from fullcap.synth.samplers import remove_yaw

    return remove_yaw(params.global_orient)


def _pose_vertices(model: BodyModel, params) -> torch.Tensor:
    """Posed vertices (B, V, 3) of :class:`SampleParams`, facing -Y (heading removed)."""
    orient = _upright(params)
    with torch.no_grad():
        out = model(
            betas=params.betas,
            expression=params.expression,
            pose=params.pose,
            global_orient=orient,
        )
    return out.vertices


def body_sheet(model: BodyModel, n: int = 48, seed: int = 0, cols: int = 8) -> np.ndarray:
    """Contact sheet of ``n`` whole-body samples (seed ``seed``), titled by archetype."""
    from fullcap.render import contact_sheet
    from fullcap.synth.samplers import ParamSampler

    params = ParamSampler(model).sample(n, torch.Generator().manual_seed(seed))
    tiles = render_tiles(model, _pose_vertices(model, params))
    return contact_sheet(tiles, cols, titles=[f"{i} {a}" for i, a in enumerate(params.archetype)])


def hand_faces(model: BodyModel, side: str) -> np.ndarray:
    """Triangles (F, 3) of one hand and the end of its forearm (side "L" or "R")."""
    bones = [
        i
        for i, n in enumerate(model.bone_names)
        if n.endswith("." + side) and n.startswith(("finger", "metacarpal", "wrist", "lowerarm02"))
    ]
    dominant = model.skin_weights.argmax(dim=1)
    keep = torch.isin(dominant, torch.tensor(bones, device=dominant.device))
    faces = model.faces
    return faces[keep[faces].all(dim=1)].cpu().numpy()


def hand_cameras(
    keypoints: torch.Tensor, left: bool, distance: float = 0.4
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cameras looking at hands (B, 21, 3) (hand21 keypoints, model frame) from their palm
    side, turned towards the thumb, fingers up in the image."""
    kp = keypoints.detach().cpu().numpy().astype(np.float64)
    cams = []
    for k in kp:
        d = k[9] - k[0]  # wrist -> middle root: along the hand
        r = k[5] - k[17]  # little -> index root: towards the thumb
        n = np.cross(d, r) if left else np.cross(r, d)  # out of the palm
        d, r, n = (v / np.linalg.norm(v) for v in (d, r, n))
        center = k[[0, 5, 9, 13, 17]].mean(0) + 0.03 * d
        view = n + 0.7 * r
        cams.append(look_at(center, center + distance * view / np.linalg.norm(view), d))
    return cams


def hand_sheet(model: BodyModel, n: int = 24, seed: int = 1, cols: int = 8) -> np.ndarray:
    """Contact sheet of both hands of ``n`` samples: per sample a left and a right close-up
    seen from the palm and thumb side, titled by sample, side and hand archetype."""
    from fullcap.render import contact_sheet
    from fullcap.synth.samplers import ParamSampler

    params = ParamSampler(model).sample(n, torch.Generator().manual_seed(seed))
    verts = _pose_vertices(model, params)
    orient = _upright(params)
    with torch.no_grad():
        kp = model(
            betas=params.betas, pose=params.pose, global_orient=orient, return_vertices=False
        ).keypoints
    tiles, titles = [], []
    for side, key, k in (("L", "left_hand", 0), ("R", "right_hand", 1)):
        cams = hand_cameras(kp[key], left=side == "L")
        faces = hand_faces(model, side)
        tiles.append(render_tiles(model, verts, size=192, cameras=cams, faces=faces))
        titles.append([f"{i}{side} {h[k]}" for i, h in enumerate(params.hand_archetype)])
    merged = [t for pair in zip(*tiles, strict=True) for t in pair]
    names = [t for pair in zip(*titles, strict=True) for t in pair]
    return contact_sheet(merged, cols, titles=names)


def write_sheets(out: Path, hands_out: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write the body (48 samples) and hand (24 samples) contact sheets."""
    from fullcap.io import save_png

    model = BodyModel.load()
    save_png(out, body_sheet(model, 48, seed=seed))
    save_png(hands_out, hand_sheet(model, 24, seed=seed + 1))
    return Path(out), Path(hands_out)
