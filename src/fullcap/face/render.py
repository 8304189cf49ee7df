"""Differentiable image formation of the face model (MoFA style) and its losses.

Frames: camera = OpenCV (metres; x right, y down, z forward); pixels with the origin at the
top-left corner of the crop, pixel (i, j) centred at (i + 0.5, j + 0.5) (as
:func:`fullcap.geometry.project` and :mod:`fullcap.render`).

Image formation, per vertex (the synthetic engine's model, :mod:`fullcap.synth.scene`, minus
its directional light, which order-2 SH approximate well):

    colour = clamp(albedo * max(sum_b sh[b] Y_b(n), 0), 0, 1) ** (1 / 2.2)      (sRGB)

with ``n`` the unit vertex normal in the camera frame and ``Y_b`` the 9 real SH of
:func:`fullcap.synth.scene.sh_basis`. Vertices project with the crop intrinsics. Visibility
comes from rasterising the mesh (:class:`FaceRasterizer`, OpenGL, no gradient): a vertex is
visible when it faces the camera, projects inside the crop and is not behind the depth
rendered at its pixel. The photometric loss compares the colours of the visible vertices with
the crop sampled at their projections (bilinear ``grid_sample``), so it is differentiable in
geometry (through the sampling positions), albedo and illumination.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fullcap.face.model import FaceModel, FaceParams
from fullcap.geometry.camera import project
from fullcap.synth.scene import sh_basis, vertex_normals

__all__ = [
    "FaceImage",
    "FaceRasterizer",
    "form_image",
    "landmark_loss",
    "photometric_loss",
    "regularisers",
    "sample_image",
    "sh_irradiance",
    "shade",
]

GAMMA = 2.2
_KERNEL = np.ones((3, 3), np.uint8)
_EPS = 1e-4  # smallest linear intensity before the gamma curve (keeps its gradient finite)


def sh_irradiance(normals: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
    """Irradiance (B, V, 3), linear, ``max(Y(n) @ sh, 0)``; normals (B, V, 3) unit in the frame
    of ``sh`` (B, 9, 3)."""
    return (sh_basis(normals) @ sh).clamp_min(0.0)


def shade(albedo: torch.Tensor, normals: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
    """sRGB colours (B, V, 3) in [0, 1] of Lambertian vertices: albedo (B, V, 3) linear RGB,
    normals (B, V, 3) unit camera frame, sh (B, 9, 3) camera frame."""
    lin = (albedo * sh_irradiance(normals, sh)).clamp(_EPS, 1.0)
    return lin.pow(1.0 / GAMMA)


@dataclass(frozen=True)
class FaceImage:
    """The image formation of a batch of faces.

    vertices: (B, V, 3) camera frame, metres; normals: (B, V, 3) unit, camera frame;
    uv: (B, V, 2) crop pixels; albedo: (B, V, 3) linear RGB; colors: (B, V, 3) sRGB in [0, 1].
    """

    vertices: torch.Tensor
    normals: torch.Tensor
    uv: torch.Tensor
    albedo: torch.Tensor
    colors: torch.Tensor


def form_image(
    model: FaceModel, params: FaceParams, K: torch.Tensor, vertices: torch.Tensor | None = None
) -> FaceImage:
    """Pose, project and shade the face of ``params`` seen with crop intrinsics K (B, 3, 3)
    (``vertices``: the already posed (B, V, 3) camera-frame vertices of ``params``, if known)."""
    verts = model.posed(params) if vertices is None else vertices
    normals = vertex_normals(verts, model.faces)
    albedo = model.albedo(params.albedo)
    colors = shade(albedo, normals, params.sh)
    uv = project(verts, K[:, None])
    return FaceImage(vertices=verts, normals=normals, uv=uv, albedo=albedo, colors=colors)


def sample_image(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (B, N, C) of images (B, C, H, W) at pixel positions uv (B, N, 2)
    (corner-origin pixels; outside the image: the border value)."""
    h, w = image.shape[-2:]
    scale = uv.new_tensor([2.0 / w, 2.0 / h])
    grid = (uv * scale - 1.0)[:, :, None]  # align_corners=False matches the corner convention
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)


class FaceRasterizer:
    """Rasterises face meshes on square crops with :class:`fullcap.render.Renderer` (OpenGL,
    no gradient): vertex visibility and rendered overlays. Create it in the thread that uses it.

    Args:
        size: crop side in pixels.
    """

    def __init__(self, size: int):
        from fullcap.render import Renderer

        self.size = int(size)
        self.renderer = Renderer(self.size, self.size, near=0.01, far=20.0)

    def render(
        self,
        vertices: torch.Tensor | np.ndarray,
        faces: torch.Tensor | np.ndarray,
        K: torch.Tensor | np.ndarray,
        colors: torch.Tensor | np.ndarray | None = None,
        background: np.ndarray | None = None,
    ):
        """One mesh: vertices (V, 3) camera frame, faces (F, 3), K (3, 3), colours (V, 3) sRGB in
        [0, 1] drawn unshaded (None: the renderer's grey shading), background (S, S, 3) uint8.
        Returns a :class:`fullcap.render.RenderOutput`."""
        kw = {"ambient": 1.0} if colors is not None else {}
        return self.renderer.render(
            vertices, faces, K, vertex_colors=colors, background=background, **kw
        )

    @torch.no_grad()
    def visibility(
        self,
        vertices: torch.Tensor,
        faces: torch.Tensor,
        K: torch.Tensor,
        normals: torch.Tensor | None = None,
        tol_m: float = 0.002,
        tol_px: float = 1.0,
    ) -> torch.Tensor:
        """(B, V) bool: vertex faces the camera, projects inside the crop onto a pixel whose
        3 x 3 neighbourhood is all covered by the mesh (bilinear samples next to the silhouette
        would mix in the background), and lies at most ``tol_m`` plus ``tol_px`` pixels' worth
        of metres behind the rendered depth at its pixel.

        vertices: (B, V, 3) camera frame, metres; faces: (F, 3); K: (B, 3, 3) crop intrinsics;
        normals: (B, V, 3) (computed when None).
        """
        if normals is None:
            normals = vertex_normals(vertices, faces)
        v = vertices.detach().float().cpu()
        n = normals.detach().float().cpu()
        k = K.detach().double().cpu()
        f = faces.cpu().numpy().astype(np.int32)
        uv = project(v.double(), k[:, None]).float()
        s = self.size
        out = torch.zeros(v.shape[:2], dtype=torch.bool)
        for b in range(v.shape[0]):
            z = v[b, :, 2]
            front = (n[b] * v[b]).sum(-1) < 0
            ok = front & (z > self.renderer.near) & torch.isfinite(uv[b]).all(-1)
            col, row = uv[b, :, 0].floor(), uv[b, :, 1].floor()
            ok &= (col >= 0) & (col < s) & (row >= 0) & (row < s)
            if not ok.any():
                continue
            depth = self.render(v[b].numpy(), f, k[b].numpy()).depth
            inner = torch.from_numpy(cv2.erode(np.isfinite(depth).view(np.uint8), _KERNEL) > 0)
            depth = torch.from_numpy(depth)
            r = row.clamp(0, s - 1).long()
            c = col.clamp(0, s - 1).long()
            tol = tol_m + tol_px * z / float(k[b, 0, 0])
            out[b] = ok & inner[r, c] & (z <= depth[r, c] + tol)
        return out.to(vertices.device)


def photometric_loss(
    colors: torch.Tensor, observed: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """Robust photometric loss (MoFA's L2,1): the weighted mean over vertices of the Euclidean
    RGB distance. colors, observed: (B, V, 3) in [0, 1]; weight: (B, V) (e.g. visibility)."""
    d = ((colors - observed) ** 2).sum(-1).add(1e-8).sqrt()
    return (d * weight).sum() / weight.sum().clamp_min(1.0)


def landmark_loss(
    uv: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, size: int
) -> torch.Tensor:
    """Weighted mean squared landmark reprojection error in units of the crop side.
    uv, target: (B, 68, 2) crop pixels; weight: (B, 68)."""
    d = (((uv - target) / size) ** 2).sum(-1)
    return (d * weight).sum() / weight.sum().clamp_min(1.0)


def regularisers(params: FaceParams) -> dict[str, torch.Tensor]:
    """Statistical priors: mean squared standardised identity and albedo coefficients
    (N(0, 1) priors) and the mean expression weight (sparse activations)."""
    return {
        "reg_identity": (params.identity**2).mean(),
        "reg_albedo": (params.albedo**2).mean(),
        "reg_expression": params.expression.mean(),
    }
