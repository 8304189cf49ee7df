"""The face model regressed by FaceNet: the face region of fullcap's whole-body model.

Not a separate 3DMM (STYLE: parts are subsets): the face is an index subset of the body mesh
(:func:`fullcap.face.build.face_vertex_ids`), its identity and expression spaces come from the
body model's shape and expression bases, and its albedo space from the synthetic engine's
appearance model. :func:`fullcap.face.build.build_face_model` makes one deterministically.

Geometry, in the **head frame** (metres; origin at the head joint, i.e. the head bone of the
shaped rest body; axes of the model frame: +X the person's left, -Y forward out of the face,
+Z up)::

    X(identity, expression) = mean + sum_k identity_k U_k + sum_e expression_e E_e

- identity: ``n_identity`` coefficients of a PCA of the face vertices (relative to the head
  joint) over the body model's shape banks (adult and full-age); components are scaled by
  their standard deviation, so the prior is N(0, I).
- expression: the 52 ARKit facial actions of the body model, weights nominally in [0, 1].

Albedo (linear RGB per vertex): ``albedo_mean + sum_k albedo_k A_k``, a PCA of face albedos
painted by :class:`fullcap.synth.appearance.AppearanceModel` (skin tones, lips, brows, irises,
hairline and caps); components scaled by their standard deviation, prior N(0, I).

Illumination: second-order spherical harmonics, 9 coefficients per colour channel (``(9, 3)``)
in the camera frame, in the basis and normalisation of :func:`fullcap.synth.scene.sh_basis`;
irradiance ``E(n) = max(sum_b sh[b] Y_b(n), 0)`` (see :mod:`fullcap.face.render`).

Pose: ``x_cam = rotation @ x_head + translation``: ``rotation`` (3, 3) head frame -> camera
frame (OpenCV: x right, y down, z forward), ``translation`` (3,) the head joint in the camera
frame, metres. The head frame is rigid: skinning of the chin by the neck bones and eye
rotations are not modelled (they are small on the face region).

The model's tensors are buffers, so a FaceNet saves the exact face model it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import nn

__all__ = ["FACE_TENSORS", "FaceModel", "FaceParams"]

# name -> shape pattern (V vertices, F triangles, I identity, E expressions, A albedo).
FACE_TENSORS: dict[str, tuple[str, ...]] = {
    "vertex_ids": ("V",),  # long, body-model vertex index of each face vertex
    "faces": ("F", "3"),  # long, triangles over face vertices, counter-clockwise outward
    "landmark_ids": ("68",),  # long, face vertex carrying face68 landmark i
    "mean_shape": ("V", "3"),  # head frame, metres
    "identity_basis": ("I", "V", "3"),  # metres per unit coefficient
    "expression_basis": ("E", "V", "3"),  # metres per unit weight
    "albedo_mean": ("V", "3"),  # linear RGB
    "albedo_basis": ("A", "V", "3"),  # linear RGB per unit coefficient
}
_LONG = ("vertex_ids", "faces", "landmark_ids")


@dataclass(frozen=True)
class FaceParams:
    """Parameters of one or more faces (batch B).

    identity: (B, I) standardised identity coefficients (prior N(0, 1)).
    expression: (B, 52) ARKit facial action weights in [0, 1] (``FaceModel.expression_names``).
    albedo: (B, A) standardised albedo coefficients (prior N(0, 1)).
    sh: (B, 9, 3) second-order SH illumination per RGB channel, camera frame.
    rotation: (B, 3, 3) head frame -> camera frame.
    translation: (B, 3) head joint in the camera frame, metres.
    """

    identity: torch.Tensor
    expression: torch.Tensor
    albedo: torch.Tensor
    sh: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor

    def detach(self) -> FaceParams:
        return FaceParams(**{f.name: getattr(self, f.name).detach() for f in fields(self)})

    def replace(self, **changes: torch.Tensor) -> FaceParams:
        """A copy with some fields replaced."""
        return replace(self, **changes)


class FaceModel(nn.Module):
    """The linear face model (see the module docstring). Build one with
    :func:`fullcap.face.build.build_face_model` or :meth:`empty` (then load a state dict).

    Args:
        tensors: the :data:`FACE_TENSORS`, consistent in V, F, I, E, A.
        expression_names: the E action names (ARKit).
    """

    def __init__(self, tensors: dict[str, torch.Tensor], expression_names: list[str]):
        super().__init__()
        missing = set(FACE_TENSORS) - set(tensors)
        if missing:
            raise ValueError(f"face model tensors missing: {sorted(missing)}")
        dims: dict[str, int] = {}
        for name, pattern in FACE_TENSORS.items():
            t = tensors[name]
            if t.ndim != len(pattern):
                raise ValueError(f"{name} must have {len(pattern)} dims, got {tuple(t.shape)}")
            for sym, n in zip(pattern, t.shape, strict=True):
                if sym.isdigit():
                    if int(sym) != n:
                        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {pattern}")
                elif dims.setdefault(sym, n) != n:
                    raise ValueError(f"{name}: {sym} = {n} disagrees with {dims[sym]}")
            t = t.long() if name in _LONG else t.float()
            self.register_buffer(name, t.clone())
        if len(expression_names) != dims["E"]:
            raise ValueError(f"{len(expression_names)} expression names for {dims['E']} actions")
        self.expression_names = list(expression_names)

    @classmethod
    def empty(
        cls, n_vertices: int, n_faces: int, n_identity: int, n_albedo: int, names: list[str]
    ) -> FaceModel:
        """Zero tensors of the right shapes, to be filled by ``load_state_dict``."""
        d = {"V": n_vertices, "F": n_faces, "I": n_identity, "E": len(names), "A": n_albedo}
        shapes = {
            k: tuple(int(s) if s.isdigit() else d[s] for s in p) for k, p in FACE_TENSORS.items()
        }
        tensors = {
            k: torch.zeros(s, dtype=torch.long if k in _LONG else torch.float32)
            for k, s in shapes.items()
        }
        return cls(tensors, names)

    # ----------------------------------------------------------------- sizes
    @property
    def num_vertices(self) -> int:
        return self.mean_shape.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    @property
    def num_identity(self) -> int:
        return self.identity_basis.shape[0]

    @property
    def num_expressions(self) -> int:
        return self.expression_basis.shape[0]

    @property
    def num_albedo(self) -> int:
        return self.albedo_basis.shape[0]

    # ----------------------------------------------------------------- evaluation
    def shape(self, identity: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Face vertices (B, V, 3) in the head frame (metres) from identity (B, I) and
        expression (B, E) weights."""
        if identity.shape[-1] != self.num_identity or expression.shape[-1] != self.num_expressions:
            raise ValueError(
                f"identity must be (B, {self.num_identity}) and expression "
                f"(B, {self.num_expressions}), got {tuple(identity.shape)}, "
                f"{tuple(expression.shape)}"
            )
        v = self.mean_shape + torch.einsum("bk,kvd->bvd", identity, self.identity_basis)
        return v + torch.einsum("be,evd->bvd", expression, self.expression_basis)

    def albedo(self, coefficients: torch.Tensor) -> torch.Tensor:
        """Per-vertex linear RGB albedo (B, V, 3) from standardised coefficients (B, A)
        (not clamped: the shading clamps the final colour)."""
        if coefficients.shape[-1] != self.num_albedo:
            raise ValueError(f"albedo coefficients must be (B, {self.num_albedo})")
        return self.albedo_mean + torch.einsum("bk,kvd->bvd", coefficients, self.albedo_basis)

    def posed(self, params: FaceParams) -> torch.Tensor:
        """Face vertices (B, V, 3) in the camera frame, metres."""
        v = self.shape(params.identity, params.expression)
        return v @ params.rotation.transpose(1, 2) + params.translation[:, None]

    def landmarks(self, vertices: torch.Tensor) -> torch.Tensor:
        """The face68 landmarks (B, 68, 3) of face vertices (B, V, 3) (any frame)."""
        return vertices[:, self.landmark_ids]

    def fit_identity(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Least-squares identity coefficients (B, I) of head-frame vertices (B, V, 3) whose
        expression weights (B, E) are known (e.g. the ground truth of a synthetic sample)."""
        zeros = shape.new_zeros(shape.shape[0], self.num_identity)
        resid = shape - self.shape(zeros, expression)
        basis = self.identity_basis.reshape(self.num_identity, -1)  # (I, 3V)
        gram = basis @ basis.T
        return torch.linalg.solve(gram, basis @ resid.reshape(shape.shape[0], -1).T).T
