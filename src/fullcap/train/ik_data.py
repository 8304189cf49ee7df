"""Training data for the IKNets: sampled bodies, their keypoints, and DetNet-like errors.

Each batch: shapes and poses from :class:`fullcap.synth.samplers.ParamSampler` (shapes kept to
the first ``num_betas`` coefficients, the ones the IKNet predicts), a random camera view,
the clean keypoints in the part's normalised frame, and noisy keypoints made to resemble a
keypoint detector's errors: per-sample Gaussian noise with more error along the camera's
depth axis, outliers, dropped keypoints collapsed onto their parent, and bone-length bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import roma
import torch

from fullcap.bodymodel.lbs import world_rotations
from fullcap.bodymodel.model import BodyModel
from fullcap.models.iknet import IKNetConfig

# Model frame (Z up, person faces -Y) -> camera frame (x right, y down, z forward) for a
# camera in front of the person: x_cam = X, y_cam = -Z, z_cam = Y.
MODEL_TO_CAMERA = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class NoiseConfig:
    """Keypoint errors, in metres for the body and wrist-middle1 units for hands."""

    clean_fraction: float = 0.2
    sigma_max: float = 0.03
    depth_factor: float = 2.0
    outlier_fraction: float = 0.03
    outlier_sigma: float = 0.08
    dropout_fraction: float = 0.03
    scale_sigma: float = 0.03

    @classmethod
    def for_part(cls, part: str) -> NoiseConfig:
        if part == "hand":  # one unit is about 9 cm
            return cls(sigma_max=0.15, outlier_sigma=0.5)
        return cls()


@dataclass(frozen=True)
class IKBatch:
    """One batch.

    inputs, target: (B, P, 3) noisy and clean keypoints in the part's normalised frame;
    rotations: (B, n_bones, 3, 3) true rotations of the IK bones; betas: (B, K);
    pose (B, J-1, 3, 3) and global_orient (B, 3, 3): the full true model pose.
    """

    inputs: torch.Tensor
    target: torch.Tensor
    rotations: torch.Tensor
    betas: torch.Tensor
    pose: torch.Tensor
    global_orient: torch.Tensor


def random_view(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3, 3) camera rotations: elevation -15..35 deg, roll +-10 deg, applied after
    :data:`MODEL_TO_CAMERA` (the yaw comes from the body's own global rotation)."""
    u = torch.rand(n, 2, generator=generator)
    elev = torch.deg2rad(-15 + 50 * u[:, 0])
    roll = torch.deg2rad(-10 + 20 * u[:, 1])
    zeros = torch.zeros(n)
    pitch = roma.rotvec_to_rotmat(torch.stack([-elev, zeros, zeros], 1))  # look down at the person
    rz = roma.rotvec_to_rotmat(torch.stack([zeros, zeros, roll], 1))
    return rz @ pitch @ MODEL_TO_CAMERA


def normalise(keypoints: torch.Tensor, part: str, names: tuple[str, ...]) -> torch.Tensor:
    """Body: relative to the pelvis. Hand: relative to middle1, divided by |wrist - middle1|."""
    if part == "body":
        return keypoints - keypoints[:, names.index("pelvis") : names.index("pelvis") + 1]
    root = keypoints[:, names.index("middle1") : names.index("middle1") + 1]
    scale = (keypoints[:, names.index("wrist")] - root[:, 0]).norm(dim=-1)[:, None, None]
    return (keypoints - root) / scale


def add_noise(
    kp: torch.Tensor, parents: torch.Tensor, cfg: NoiseConfig, g: torch.Generator
) -> torch.Tensor:
    """DetNet-like errors on normalised keypoints (B, P, 3) in camera axes (z = depth)."""
    b, p, _ = kp.shape
    noisy = kp * (1 + cfg.scale_sigma * torch.randn(b, 1, 1, generator=g))
    sigma = cfg.sigma_max * torch.rand(b, 1, 1, generator=g)
    axis_scale = torch.tensor([1.0, 1.0, cfg.depth_factor])
    noisy = noisy + sigma * axis_scale * torch.randn(b, p, 3, generator=g)
    outlier = torch.rand(b, p, 1, generator=g) < cfg.outlier_fraction
    noisy = noisy + outlier * cfg.outlier_sigma * torch.randn(b, p, 3, generator=g)
    dropped = (torch.rand(b, p, 1, generator=g) < cfg.dropout_fraction) & (parents >= 0)[
        None, :, None
    ]
    noisy = torch.where(dropped, noisy[:, parents.clamp(min=0)], noisy)
    clean = torch.rand(b, 1, 1, generator=g) < cfg.clean_fraction
    return torch.where(clean, kp, noisy)


class IKData:
    """Batches for one IKNet part (``config.part``)."""

    def __init__(self, model: BodyModel, config: IKNetConfig, noise: NoiseConfig | None = None):
        from fullcap.synth.samplers import ParamSampler

        self.model = model
        self.config = config
        self.noise = noise or NoiseConfig.for_part(config.part)
        self.sampler = ParamSampler(model)
        self.bone_index = torch.tensor([model.bone_names.index(b) for b in config.bones])
        self.parents = torch.tensor(config.parents)
        self.set_name = "body33" if config.part == "body" else "right_hand"

    def keypoints(self, betas, pose, global_orient, expression=None) -> torch.Tensor:
        """Normalised keypoints (B, P, 3) of the part for a full model pose."""
        out = self.model(
            betas=betas,
            expression=expression,
            pose=pose,
            global_orient=global_orient,
            return_vertices=False,
        )
        return normalise(out.keypoints[self.set_name], self.config.part, self.config.keypoints)

    def batch(self, n: int, generator: torch.Generator, noisy: bool = True) -> IKBatch:
        params = self.sampler.sample(n, generator)
        betas = params.betas[:, : self.config.num_betas].contiguous()
        go = random_view(n, generator) @ params.global_orient
        full = torch.cat([go[:, None], params.pose], dim=1)
        if self.config.part == "body":
            rotations = full[:, self.bone_index]
        else:
            world = world_rotations(full, self.model.parents, self.model._levels)
            rotations = full[:, self.bone_index].clone()
            rotations[:, 0] = world[:, self.bone_index[0]]  # the hand's global rotation A_wrist
        with torch.no_grad():
            target = self.keypoints(betas, params.pose, go, params.expression)
        inputs = add_noise(target, self.parents, self.noise, generator) if noisy else target
        return IKBatch(inputs, target, rotations, betas, params.pose, go)

    def pose_from_rotations(self, rotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(global_orient (B,3,3), pose (B,J-1,3,3)) placing the IK bones' rotations in a full
        pose (others identity). For hands, the global rotation is A_wrist and the wrist's own
        entry stays identity, so the wrist's world rotation equals A_wrist."""
        b = rotations.shape[0]
        eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
        full = eye.expand(b, self.model.num_bones, 3, 3).clone()
        if self.config.part == "body":
            full[:, self.bone_index] = rotations
            return full[:, 0], full[:, 1:]
        full[:, self.bone_index[1:]] = rotations[:, 1:]
        return rotations[:, 0], full[:, 1:]
