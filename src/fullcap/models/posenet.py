"""PoseNet, the atomic keypoint module of DetNet (supplementary Sec. 3, Fig. 5).

From input features F it predicts keypoint-maps K (one channel per keypoint), then
delta-maps D from concat(F, K) (three channels per bone: the bone's direction, supervised by
the unit vector tiled over the map; not forced to unit length), then location-maps L from
concat(F, K, D) through two conv layers (three channels per keypoint: x, y, z relative to the
root). At inference, keypoint i is at the maximum of K_i (refined to sub-pixel precision by a
soft-argmax over its 3x3 neighbourhood) and its 3D position is L_i read there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(
    cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@dataclass(frozen=True)
class PoseMaps:
    """K: (B, P, H, W) keypoint maps; D: (B, 3*n_bones, H, W); L: (B, 3*P, H, W)."""

    K: torch.Tensor
    D: torch.Tensor
    L: torch.Tensor


class PoseNet(nn.Module):
    """K, D and L maps for ``n_keypoints`` keypoints and ``n_bones`` bones."""

    def __init__(
        self,
        in_channels: int,
        n_keypoints: int,
        n_bones: int,
        hidden: int = 64,
        with_3d: bool = True,
    ):
        super().__init__()
        self.n_keypoints, self.n_bones, self.with_3d = n_keypoints, n_bones, with_3d
        self.k = nn.Sequential(conv_bn_relu(in_channels, hidden), nn.Conv2d(hidden, n_keypoints, 1))
        if with_3d:
            c_fk = in_channels + n_keypoints
            self.d = nn.Sequential(conv_bn_relu(c_fk, hidden), nn.Conv2d(hidden, 3 * n_bones, 1))
            self.l = nn.Sequential(
                conv_bn_relu(c_fk + 3 * n_bones, hidden), nn.Conv2d(hidden, 3 * n_keypoints, 1)
            )

    def forward(self, features: torch.Tensor) -> PoseMaps:
        k = self.k(features)
        if not self.with_3d:
            empty = k.new_zeros(k.shape[0], 0, *k.shape[2:])
            return PoseMaps(k, empty, empty)
        fk = torch.cat([features, k], dim=1)
        d = self.d(fk)
        loc = self.l(torch.cat([fk, d], dim=1))
        return PoseMaps(k, d, loc)


def decode(maps: PoseMaps) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keypoints from maps.

    Returns uv (B, P, 2) in map pixels (continuous, pixel corners at integers: the centre of
    cell (i, j) is (i + 0.5, j + 0.5)), confidence (B, P) = the map's maximum (clamped to
    [0, 1]), and xyz (B, P, 3) = L read (bilinearly) at uv, or an empty (B, P, 0) without 3D.
    """
    k = maps.K
    b, p, h, w = k.shape
    flat = k.reshape(b, p, -1)
    conf, idx = flat.max(-1)
    iy, ix = idx // w, idx % w
    # Sub-pixel: soft-argmax over the 3x3 neighbourhood of the maximum.
    offs = torch.tensor([-1, 0, 1], device=k.device)
    ny = (iy[..., None] + offs).clamp(0, h - 1)  # (B, P, 3)
    nx = (ix[..., None] + offs).clamp(0, w - 1)
    patch = k.reshape(b * p, h, w)[
        torch.arange(b * p, device=k.device)[:, None, None],
        ny.reshape(b * p, 3)[:, :, None],
        nx.reshape(b * p, 3)[:, None, :],
    ].reshape(b, p, 3, 3)
    weights = torch.softmax(patch.reshape(b, p, 9) * 10.0, dim=-1).reshape(b, p, 3, 3)
    dy = (weights.sum(-1) * offs).sum(-1) * (ny[..., 2] - ny[..., 0] > 0)
    dx = (weights.sum(-2) * offs).sum(-1) * (nx[..., 2] - nx[..., 0] > 0)
    uv = torch.stack([ix + dx + 0.5, iy + dy + 0.5], dim=-1)
    if maps.L.shape[1] == 0:
        return uv, conf.clamp(0, 1), k.new_zeros(b, p, 0)
    grid = torch.stack([uv[..., 0] / w * 2 - 1, uv[..., 1] / h * 2 - 1], dim=-1)[
        :, :, None
    ]  # (B,P,1,2)
    loc = maps.L.reshape(b, p, 3, h, w).reshape(b * p, 3, h, w)
    xyz = F.grid_sample(loc, grid.reshape(b * p, 1, 1, 2), align_corners=False).reshape(b, p, 3)
    return uv, conf.clamp(0, 1), xyz


def gaussian_maps(
    uv: torch.Tensor, valid: torch.Tensor, size: tuple[int, int], sigma: float
) -> torch.Tensor:
    """Ground-truth keypoint maps (B, P, H, W): Gaussians of peak 1 at uv (B, P, 2), in map
    pixels (same convention as :func:`decode`); zero maps where ``valid`` (B, P) is False."""
    h, w = size
    ys = torch.arange(h, device=uv.device, dtype=uv.dtype) + 0.5
    xs = torch.arange(w, device=uv.device, dtype=uv.dtype) + 0.5
    gy = torch.exp(-((ys[None, None] - uv[..., 1:2]) ** 2) / (2 * sigma**2))  # (B, P, H)
    gx = torch.exp(-((xs[None, None] - uv[..., 0:1]) ** 2) / (2 * sigma**2))  # (B, P, W)
    return gy[..., :, None] * gx[..., None, :] * valid[..., None, None].to(uv.dtype)


@dataclass(frozen=True)
class PoseTargets:
    """Targets of one PoseNet for a batch.

    uv: (B, P, 2) in map pixels; valid2d: (B, P) keypoint inside the map and labelled;
    xyz: (B, P, 3) root-relative 3D; has3d: (B,) sample has 3D labels; labelled: optional
    (B, P) bool, the keypoints whose keypoint map is supervised at all (None: all). A labelled
    keypoint outside the map is trained towards an empty map; an unlabelled one (a set the
    sample's dataset does not annotate) is not trained.
    """

    uv: torch.Tensor
    valid2d: torch.Tensor
    xyz: torch.Tensor
    has3d: torch.Tensor
    labelled: torch.Tensor | None = None


def posenet_loss(
    maps: PoseMaps,
    t: PoseTargets,
    bones: torch.Tensor,
    sigma: float = 1.0,
    w_k: float = 1.0,
    w_d: float = 10.0,
    w_l: float = 10.0,
    sigma_3d: float | None = None,
) -> dict[str, torch.Tensor]:
    """L_p = w_k L_k + w_d L_d + w_l L_l (the supplementary's weights as defaults).

    L_k: squared error to Gaussian maps (only keypoints ``t.labelled``); L_d and L_l: squared
    errors weighted by the ground-truth map (of the bone's child keypoint for D), counted only
    for samples with 3D. Each term is summed over keypoints and pixels and averaged over the
    batch. ``bones``: (n_bones, 2) (child, parent) keypoint indices. ``sigma_3d``: width (map
    pixels) of the Gaussians that weight L_d and L_l (default ``sigma``); wider makes the 3D
    read-out tolerate 2D errors, since L is only trained where this weight is non-zero.
    """
    b, p, h, w = maps.K.shape
    heat = gaussian_maps(t.uv, t.valid2d, (h, w), sigma)
    sq = ((maps.K - heat) ** 2).sum((2, 3))  # (B, P)
    if t.labelled is not None:
        sq = sq * t.labelled.to(sq.dtype)
    l_k = sq.sum(1).mean()
    out = {"k": l_k}
    total = w_k * l_k
    if maps.L.shape[1]:
        m3 = t.has3d.to(heat.dtype)[:, None, None, None]
        if sigma_3d is not None and sigma_3d != sigma:
            heat = gaussian_maps(t.uv, t.valid2d, (h, w), sigma_3d)
        d_true = t.xyz[:, bones[:, 0]] - t.xyz[:, bones[:, 1]]
        d_true = d_true / d_true.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        d_pred = maps.D.reshape(b, -1, 3, h, w)
        wd = (heat[:, bones[:, 0]] * m3)[:, :, None]
        l_d = (wd * (d_pred - d_true[..., None, None]) ** 2).sum((1, 2, 3, 4)).mean()
        l_pred = maps.L.reshape(b, p, 3, h, w)
        wl = (heat * m3)[:, :, None]
        l_l = (wl * (l_pred - t.xyz[..., None, None]) ** 2).sum((1, 2, 3, 4)).mean()
        out |= {"d": l_d, "l": l_l}
        total = total + w_d * l_d + w_l * l_l
    out["total"] = total
    return out
