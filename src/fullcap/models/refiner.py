"""The keypoint refiners: DetNet's 3D body (and hand) keypoints corrected all at once.

DetNet reads each keypoint's 3D position from its location map at the detected 2D position,
one keypoint at a time, so a keypoint detected on the wrong limb (the left/right swaps of the
model card), a bone of the wrong length or a depth that the map got wrong stays wrong. The
refiner is a residual MLP that sees every keypoint of the heads it reads (normalised 2D
position, confidence and 3D position per keypoint, ``FEATURES_PER_KEYPOINT`` numbers) and
returns a correction of the output head's 3D keypoints: a learnt pose prior over the whole
body. The hand refiner does the same for the 21 hand keypoints from the hand head. Both are
trained after DetNet, on DetNet's own outputs over the training images with DetNet frozen
(``fullcap train refiner --part body|hand``), and ship inside the DetNet weights file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fullcap.models.posenet import PoseMaps, decode

FEATURES_PER_KEYPOINT = 6  # u, v (map side = 1, centred), confidence, x, y, z
_MIRROR_SIGN = (-1.0, 1.0, 1.0, -1.0, 1.0, 1.0)  # a mirror image negates u and camera x


def keypoint_features(
    maps: PoseMaps, peaks: int = 1
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The refiner's features (B, P * 6 * peaks) of one head's maps (see the module doc) and
    the decoded keypoints they come from (:func:`fullcap.models.posenet.decode`'s uv, conf,
    xyz). ``peaks=2`` adds, per keypoint, the same six numbers of its map's next peak (the
    maximum outside the 3x3 cells around the first): where a keypoint was found on the other
    limb, its own limb is often that second peak, and the 3D read there is the right one."""
    uv, conf, xyz = decode(maps)
    side = maps.K.new_tensor([maps.K.shape[-1], maps.K.shape[-2]])
    parts = [uv / side - 0.5, conf[..., None], xyz]
    if peaks == 2:
        k = maps.K
        h, w = k.shape[-2:]
        idx = k.flatten(2).argmax(-1)  # the first peak's cell, as decode finds it
        ys, xs = torch.arange(h, device=k.device), torch.arange(w, device=k.device)
        near = ((ys.view(1, 1, h, 1) - (idx // w)[..., None, None]).abs() <= 1) & (
            (xs.view(1, 1, 1, w) - (idx % w)[..., None, None]).abs() <= 1
        )
        uv2, conf2, xyz2 = decode(PoseMaps(k.masked_fill(near, -1e4), maps.D, maps.L))
        parts += [uv2 / side - 0.5, conf2[..., None], xyz2]
    elif peaks != 1:
        raise ValueError(f"refiner peaks must be 1 or 2, got {peaks!r}")
    return torch.cat(parts, dim=-1).flatten(1), (uv, conf, xyz)


class FeatureMirror:
    """Left/right mirroring of refiner inputs and 3D keypoints: what the heads would give
    for the mirror image of the crop, were the network exactly symmetric. Each input head's
    keypoints swap sides (``input_swaps``: per head, :func:`fullcap.skeletons.side_permutation`
    of its names) and their centred u and camera x change sign; the output head's 3D
    keypoints and masks swap with ``output_swap``. Its own inverse."""

    def __init__(
        self, input_swaps: Sequence[Sequence[int]], output_swap: Sequence[int], peaks: int = 1
    ):
        n = FEATURES_PER_KEYPOINT * peaks  # numbers per keypoint (keypoint_features)
        index: list[int] = []
        offset = 0
        for swap in input_swaps:
            index += [(offset + j) * n + c for j in swap for c in range(n)]
            offset += len(swap)
        self.index = torch.tensor(index)
        self.sign = torch.tensor(_MIRROR_SIGN * peaks * offset)
        self.keypoints = torch.tensor(list(output_swap))
        self.xyz_sign = torch.tensor(_MIRROR_SIGN[3:])

    def to(self, device: torch.device | str) -> FeatureMirror:
        for name in ("index", "sign", "keypoints", "xyz_sign"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def features(self, f: torch.Tensor) -> torch.Tensor:
        """Refiner inputs (B, F) of the mirror images."""
        return f[:, self.index] * self.sign

    def xyz(self, xyz: torch.Tensor) -> torch.Tensor:
        """Output-head 3D keypoints (B, P, 3) of the mirror images."""
        return xyz[:, self.keypoints] * self.xyz_sign

    def mask(self, m: torch.Tensor) -> torch.Tensor:
        """Per-keypoint flags (B, P) of the mirror images."""
        return m[:, self.keypoints]

    def symmetric(
        self, refiner: KeypointRefiner, features: torch.Tensor, xyz: torch.Tensor
    ) -> torch.Tensor:
        """``refiner``'s output averaged with its output for the mirror images, mirrored back:
        a refinement that treats left and right alike. One batch of twice the rows."""
        if self.index.device != features.device:
            self.to(features.device)
        both = refiner(
            torch.cat([features, self.features(features)]), torch.cat([xyz, self.xyz(xyz)])
        )
        plain, mirrored = both.chunk(2)
        return (plain + self.xyz(mirrored)) / 2


class KeypointRefiner(nn.Module):
    """Residual MLP: features (B, in_features) and base 3D keypoints (B, P, 3) -> refined
    (B, P, 3). Starts as the identity (zero last layer); ``mean``/``std`` standardise the
    features (set from the training features by :meth:`set_normalisation`)."""

    def __init__(
        self,
        in_features: int,
        n_keypoints: int,
        hidden: int = 512,
        blocks: int = 2,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.n_keypoints = n_keypoints
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.inp = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout)
            )
            for _ in range(blocks)
        )
        self.out = nn.Linear(hidden, 3 * n_keypoints)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @torch.no_grad()
    def set_normalisation(self, features: torch.Tensor) -> None:
        """Standardise inputs with the mean and spread of ``features`` (N, in_features)."""
        self.mean.copy_(features.mean(0))
        self.std.copy_(features.std(0).clamp(min=1e-3))

    def forward(self, features: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != self.mean.shape[0] or xyz.shape[1:] != (self.n_keypoints, 3):
            raise ValueError(
                f"refiner expects features (B, {self.mean.shape[0]}) and xyz (B, "
                f"{self.n_keypoints}, 3), got {tuple(features.shape)} and {tuple(xyz.shape)}"
            )
        h = self.inp((features - self.mean) / self.std)
        for block in self.blocks:
            h = h + block(h)
        return xyz + self.out(h).reshape(xyz.shape)
