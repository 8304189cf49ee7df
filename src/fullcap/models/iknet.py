"""BodyIKNet and HandIKNet: 3D keypoints -> joint rotations and shape of the body model.

One class for both; body and hand differ by :class:`IKNetConfig` only (STYLE: parts are
configs, not subclasses).

Input (as the authors' hand IKNet): the keypoints, their bone vectors (keypoint minus its
parent keypoint) and the same two for the model's reference pose (the default body's
keypoints; constant, they give the network the skeleton it maps onto).
- body: the 33 body keypoints, metres, camera axes, relative to the pelvis.
- hand: the 21 keypoints of a RIGHT hand (left hands are mirrored first), camera axes,
  relative to ``middle1`` and divided by the wrist-middle1 length (as DetNet outputs them).

Output: one rotation per IK bone in the 6D representation of Zhou et al. 2019 (first two
columns of the matrix, :mod:`fullcap.geometry.rotations`): it is continuous over SO(3),
unlike axis-angle or quaternions, so a network can regress it without jumps at +-pi or sign
flips; Gram-Schmidt turns it into a rotation. Bone 0 is the part's global rotation (body:
the root, model frame -> camera frame; hand: the wrist bone's world rotation A_wrist in
camera axes); the others are the local rotations D_c of the pose convention in
:mod:`fullcap.bodymodel.lbs`. Plus ``num_betas`` shape coefficients.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from fullcap.geometry.rotations import rot6d_to_rotmat
from fullcap.skeletons import BODY33, HAND21

_SIDE_BONES = (
    "pelvis.{s}",
    "upperleg01.{s}",
    "upperleg02.{s}",
    "lowerleg01.{s}",
    "lowerleg02.{s}",
    "foot.{s}",
    "clavicle.{s}",
    "shoulder01.{s}",
    "upperarm01.{s}",
    "upperarm02.{s}",
    "lowerarm01.{s}",
    "lowerarm02.{s}",
    "wrist.{s}",
)
BODY_IK_BONES: tuple[str, ...] = (
    "root",
    "spine05",
    "spine04",
    "spine03",
    "spine02",
    "spine01",
    "neck01",
    "neck02",
    "neck03",
    "head",
    *(b.format(s=s) for s in "LR" for b in _SIDE_BONES),
)
HAND_IK_BONES: tuple[str, ...] = (
    "wrist.R",
    "finger1-1.R",
    "finger1-2.R",
    "finger1-3.R",
    *(
        f"{b}.R"
        for i in range(1, 5)
        for b in (f"metacarpal{i}", *(f"finger{i + 1}-{k}" for k in (1, 2, 3)))
    ),
)


@dataclass(frozen=True)
class IKNetConfig:
    """Everything needed to rebuild an IKNet (saved inside checkpoints)."""

    part: str = "body"  # "body" or "hand"
    keypoints: tuple[str, ...] = BODY33
    parents: tuple[int, ...] = ()  # parent index per keypoint, -1 for roots
    bones: tuple[str, ...] = BODY_IK_BONES
    num_betas: int = 16
    width: int = 1024
    depth: int = 6
    reference: tuple[float, ...] = field(default=(), repr=False)  # (P*3,) reference keypoints
    # Shape output = beta_mean + beta_std * raw: the raw outputs start near 0 at unit scale.
    beta_mean: tuple[float, ...] = ()
    beta_std: tuple[float, ...] = ()

    @property
    def in_features(self) -> int:
        return 4 * len(self.keypoints) * 3

    @property
    def out_features(self) -> int:
        return 6 * len(self.bones) + self.num_betas

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> IKNetConfig:
        d = dict(d)
        for key in ("keypoints", "parents", "bones", "reference", "beta_mean", "beta_std"):
            d[key] = tuple(d[key])
        return cls(**d)


def preset(
    part: str,
    reference: torch.Tensor,
    parents: tuple[int, ...],
    betas: torch.Tensor | None = None,
    **overrides,
) -> IKNetConfig:
    """The body or hand config; ``reference`` (P, 3) are the reference-pose keypoints and
    ``betas`` (N, >= num_betas) example shapes whose mean and spread scale the shape output."""
    if part == "body":
        base = dict(part="body", keypoints=BODY33, bones=BODY_IK_BONES, num_betas=16)
    elif part == "hand":
        base = dict(part="hand", keypoints=HAND21, bones=HAND_IK_BONES, num_betas=16, width=512)
    else:
        raise ValueError(f"part must be 'body' or 'hand', got {part!r}")
    base |= dict(parents=tuple(parents), reference=tuple(reference.reshape(-1).tolist()))
    base |= overrides
    k = base["num_betas"]
    if betas is not None:
        base["beta_mean"] = tuple(betas[:, :k].mean(0).tolist())
        base["beta_std"] = tuple(betas[:, :k].std(0).clamp(min=1e-3).tolist())
    else:
        base["beta_mean"], base["beta_std"] = (0.0,) * k, (1.0,) * k
    return IKNetConfig(**base)


@dataclass(frozen=True)
class IKOutput:
    """rotations: (B, n_bones, 3, 3); raw6d: (B, n_bones, 6) before Gram-Schmidt; betas: (B, K)."""

    rotations: torch.Tensor
    raw6d: torch.Tensor
    betas: torch.Tensor


class IKNet(nn.Module):
    """Fully connected IK network (``depth`` layers of ``width``, ReLU + LayerNorm)."""

    def __init__(self, config: IKNetConfig):
        super().__init__()
        self.config = config
        n = len(config.keypoints)
        if len(config.parents) != n or len(config.reference) != 3 * n:
            raise ValueError("config.parents and config.reference must match config.keypoints")
        parents = torch.tensor(config.parents)
        self.register_buffer("parent_index", parents.clamp(min=0), persistent=False)
        self.register_buffer("has_parent", (parents >= 0).float()[:, None], persistent=False)
        ref = torch.tensor(config.reference, dtype=torch.float32).reshape(n, 3)
        self.register_buffer("reference", ref, persistent=False)
        k = config.num_betas
        mean = torch.tensor(config.beta_mean or (0.0,) * k, dtype=torch.float32)
        std = torch.tensor(config.beta_std or (1.0,) * k, dtype=torch.float32)
        self.register_buffer("beta_mean", mean, persistent=False)
        self.register_buffer("beta_std", std, persistent=False)
        layers: list[nn.Module] = []
        width_in = config.in_features
        for _ in range(config.depth - 1):
            layers += [nn.Linear(width_in, config.width), nn.LayerNorm(config.width), nn.ReLU()]
            width_in = config.width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width_in, config.out_features)
        # Start at the identity rotation and the mean shape.
        nn.init.zeros_(self.head.weight)
        bias = torch.zeros(config.out_features)
        bias[: 6 * len(config.bones)] = torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(len(config.bones))
        self.head.bias.data.copy_(bias)

    def features(self, keypoints: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) keypoints -> (B, 4*P*3) input features."""
        bones = (keypoints - keypoints[:, self.parent_index]) * self.has_parent
        ref = self.reference.expand_as(keypoints)
        ref_bones = (ref - ref[:, self.parent_index]) * self.has_parent
        return torch.cat([keypoints, bones, ref, ref_bones], dim=1).flatten(1)

    def forward(self, keypoints: torch.Tensor) -> IKOutput:
        """keypoints: (B, P, 3) in the part's normalised frame (see the module docstring)."""
        p = len(self.config.keypoints)
        if keypoints.ndim != 3 or keypoints.shape[1:] != (p, 3):
            raise ValueError(f"keypoints must have shape (B, {p}, 3), got {tuple(keypoints.shape)}")
        out = self.head(self.body(self.features(keypoints)))
        n_b = len(self.config.bones)
        raw = out[:, : 6 * n_b].reshape(-1, n_b, 6)
        betas = self.beta_mean + self.beta_std * out[:, 6 * n_b :]
        return IKOutput(rotations=rot6d_to_rotmat(raw), raw6d=raw, betas=betas)
