"""FaceNet: a small CNN that regresses the face model's parameters from a face crop.

Input: a square RGB crop (B, 3, S, S), S = ``config.input_size`` (64 by default: real time on
one CPU core), uint8 or float in [0, 1], and its intrinsics K (B, 3, 3) in crop pixels (the
crop's camera; a default field of view when unknown). Output (:class:`FaceNetOutput`):
identity, expression (52 ARKit weights in [0, 1], sigmoid), albedo, SH illumination and head
pose of :class:`fullcap.face.model.FaceModel`, which the network carries as buffers (so a
weights file rebuilds the exact face model it was trained with).

Pose decoding (independent of the crop's focal length, so the network sees only pixels):
- rotation: a 6D rotation (:mod:`fullcap.geometry.rotations`) times the frontal rotation
  ``R0`` (head frame -> camera: the face looks at the camera, its up is the image's up), so
  the untrained network outputs a frontal face;
- translation: the head joint's projection ``(u, v) = S * (0.5 + o_u, 0.5 + o_v)`` in crop
  pixels and its depth ``z = fx * crop_span_m / (S * exp(o_s))`` (a crop spans about
  ``crop_span_m`` metres at the face), back-projected with K.

Pose and SH outputs are the last layer's outputs times ``pose_scale`` / ``sh_scale``: Adam
moves each weight by about the learning rate, so these set how far a step moves each group.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from fullcap.face.model import FaceModel, FaceParams
from fullcap.geometry.rotations import rot6d_to_rotmat
from fullcap.models.backbone import BasicBlock
from fullcap.models.posenet import conv_bn_relu

__all__ = ["R0", "FaceNet", "FaceNetConfig", "FaceNetOutput"]

# Head frame (X left, Y back, Z up) -> camera (x right, y down, z forward) for a frontal face.
R0 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_SH_DC = 0.282095  # Y00


@dataclass(frozen=True)
class FaceNetConfig:
    """Everything needed to rebuild a FaceNet (saved inside checkpoints and weights)."""

    input_size: int = 64  # a multiple of 2 ** (stages + 1)
    width: int = 32  # stem channels, doubled by each of the ``stages`` strided blocks
    stages: int = 3
    hidden: int = 256
    n_identity: int = 20
    n_albedo: int = 24
    n_vertices: int = 0  # face model sizes (filled from the built face model)
    n_faces: int = 0
    expression_names: tuple[str, ...] = ()
    crop_span_m: float = 0.2
    default_fov_deg: float = 30.0
    ambient: float = 0.9  # irradiance of the untrained network's SH (DC term only)
    # Multipliers of the last layer's outputs (per-group step sizes under Adam, which moves
    # every weight by about the learning rate): a pose unit is 0.1 rad, 0.1 crop side or 10 %
    # of the depth; an SH unit is 0.3.
    pose_scale: float = 0.1
    sh_scale: float = 0.3
    face_model_report: dict = field(default_factory=dict)

    @property
    def n_outputs(self) -> int:
        return self.n_identity + len(self.expression_names) + self.n_albedo + 27 + 6 + 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FaceNetConfig:
        d = dict(d)
        d["expression_names"] = tuple(d["expression_names"])
        return cls(**d)


@dataclass(frozen=True)
class FaceNetOutput:
    """params: the regressed :class:`FaceParams`; vertices (B, V, 3) camera frame, metres;
    landmarks_uv (B, 68, 2) crop pixels; raw (B, n_outputs) the network's last layer."""

    params: FaceParams
    vertices: torch.Tensor
    landmarks_uv: torch.Tensor
    raw: torch.Tensor
    expression_names: tuple[str, ...]

    def expression_weights(self) -> list[dict[str, float]]:
        """Per sample, ARKit action name -> weight in [0, 1]."""
        w = self.params.expression.detach().cpu().tolist()
        return [dict(zip(self.expression_names, row, strict=True)) for row in w]


class FaceNet(nn.Module):
    """Stem, ``stages`` strided residual blocks (output stride ``2 ** (stages + 1)``), the
    feature map flattened (position matters for pose), two dense layers.

    Args:
        config: the network and face-model sizes.
        face_model: the face model (from :func:`fullcap.face.build.build_face_model`); None
            makes zero placeholders of the config's sizes, to be filled by ``load_state_dict``.
    """

    def __init__(self, config: FaceNetConfig, face_model: FaceModel | None = None):
        super().__init__()
        c = config
        if c.input_size % 2 ** (c.stages + 1):
            raise ValueError(f"input_size must be a multiple of {2 ** (c.stages + 1)}")
        if face_model is None:
            face_model = FaceModel.empty(
                c.n_vertices, c.n_faces, c.n_identity, c.n_albedo, list(c.expression_names)
            )
        fm = face_model
        sizes = (fm.num_vertices, fm.num_faces, fm.num_identity, fm.num_albedo)
        if sizes != (c.n_vertices, c.n_faces, c.n_identity, c.n_albedo) or tuple(
            fm.expression_names
        ) != tuple(c.expression_names):
            raise ValueError("config sizes and expression names must match the face model")
        self.config = config
        self.face = face_model
        layers: list[nn.Module] = [conv_bn_relu(3, c.width, 3, 2)]
        w = c.width
        for _ in range(c.stages):
            layers.append(BasicBlock(w, 2 * w, stride=2))
            w *= 2
        self.features = nn.Sequential(*layers, nn.Flatten())
        cells = (c.input_size // 2 ** (c.stages + 1)) ** 2  # flattened (not pooled)
        self.fc = nn.Sequential(nn.Linear(w * cells, c.hidden), nn.ReLU(inplace=True))
        self.head = nn.Linear(c.hidden, c.n_outputs)
        nn.init.normal_(self.head.weight, std=1e-3)
        bias = torch.zeros(c.n_outputs)
        e0 = c.n_identity
        bias[e0 : e0 + len(c.expression_names)] = -3.0  # expressions start near 0
        self.head.bias.data.copy_(bias)
        self.register_buffer("r0", R0.clone(), persistent=False)

    # ----------------------------------------------------------------- helpers
    @classmethod
    def create(cls, face_model: FaceModel, report: dict | None = None, **overrides) -> FaceNet:
        """A fresh network for ``face_model`` (sizes taken from it)."""
        cfg = FaceNetConfig(
            n_vertices=face_model.num_vertices,
            n_faces=face_model.num_faces,
            n_identity=face_model.num_identity,
            n_albedo=face_model.num_albedo,
            expression_names=tuple(face_model.expression_names),
            face_model_report=dict(report or {}),
            **overrides,
        )
        return cls(cfg, face_model)

    def default_K(self, batch: int) -> torch.Tensor:
        """Intrinsics (B, 3, 3) of a crop with ``config.default_fov_deg`` and centred axis."""
        s = self.config.input_size
        f = 0.5 * s / math.tan(math.radians(self.config.default_fov_deg) / 2)
        K = torch.tensor([[f, 0.0, s / 2], [0.0, f, s / 2], [0.0, 0.0, 1.0]])
        return K.to(self.head.weight.device).expand(batch, 3, 3)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images (B, 3, S, S) -> the network's input."""
        s = self.config.input_size
        if image.ndim != 4 or image.shape[1] != 3 or image.shape[2:] != (s, s):
            raise ValueError(
                f"image must have shape (B, 3, {s}, {s}) (RGB crops of the face, "
                f"config.input_size), got {tuple(image.shape)}"
            )
        x = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        return (x - 0.5) / 0.25

    # ----------------------------------------------------------------- forward
    def decode(self, raw: torch.Tensor, K: torch.Tensor) -> FaceParams:
        """Parameters from the last layer's output (B, n_outputs) and crop intrinsics K."""
        c = self.config
        n_e = len(c.expression_names)
        sizes = [c.n_identity, n_e, c.n_albedo, 27, 6, 3]
        ident, expr, alb, sh, r6, tr = torch.split(raw, sizes, dim=1)
        sh = sh.reshape(-1, 9, 3) * c.sh_scale
        r6, tr = r6 * c.pose_scale, tr * c.pose_scale
        sh = torch.cat([sh[:, :1] + c.ambient / _SH_DC, sh[:, 1:]], dim=1)
        eye6 = raw.new_tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        rot = rot6d_to_rotmat(r6 + eye6) @ self.r0.to(raw.dtype)
        s = c.input_size
        u, v = s * (0.5 + tr[:, 0]), s * (0.5 + tr[:, 1])
        fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
        z = fx * c.crop_span_m / s * torch.exp(-tr[:, 2].clamp(-5, 5))
        trans = torch.stack(
            [(u - cx - K[:, 0, 1] * (v - cy) / fy) * z / fx, (v - cy) * z / fy, z], 1
        )
        return FaceParams(
            identity=ident,
            expression=torch.sigmoid(expr),
            albedo=alb,
            sh=sh,
            rotation=rot,
            translation=trans,
        )

    def forward(self, image: torch.Tensor, K: torch.Tensor | None = None) -> FaceNetOutput:
        """image: (B, 3, S, S) uint8 or float [0, 1] RGB face crops; K: (B, 3, 3) crop
        intrinsics in pixels (None: :meth:`default_K`)."""
        x = self.normalise(image)
        b = x.shape[0]
        if K is None:
            K = self.default_K(b)
        elif K.shape != (b, 3, 3):
            raise ValueError(f"K must have shape ({b}, 3, 3), got {tuple(K.shape)}")
        raw = self.head(self.fc(self.features(x)))
        params = self.decode(raw, K.to(raw.dtype))
        verts = self.face.posed(params)
        lm = self.face.landmarks(verts)
        uvw = lm @ K.to(raw.dtype).transpose(1, 2)
        uv = uvw[..., :2] / uvw[..., 2:3]
        return FaceNetOutput(
            params=params,
            vertices=verts,
            landmarks_uv=uv,
            raw=raw,
            expression_names=tuple(self.config.expression_names),
        )
