"""fullcap's whole-body model: one linear model for body, hands and face, derived from Anny.

``(betas, expression, pose, global_orient, transl) -> vertices, joints, keypoint sets``,
differentiable, batched, on any device, in float32 or float64. Hands and face are index
subsets of the same model (``part_vertex_ids``, the ``left_hand``/``right_hand``/``face68``
keypoint sets), not separate models.

Model frame: metres, Z up, -Y forward (the face looks toward -Y), +X the person's left;
``transl`` is where the pelvis goes. See :mod:`fullcap.bodymodel.lbs` for the pose convention.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fullcap.assets import AssetError, asset_path, load_manifest, load_safetensors
from fullcap.bodymodel.lbs import (
    forward_kinematics,
    kinematic_levels,
    skin,
    skin_grouped,
    skinning_groups,
)

ASSET_NAME = "bodymodel.safetensors"
REBUILD = "fullcap bodymodel build"


@dataclass(frozen=True)
class BodyModelOutput:
    """Posed model, all in the model frame (metres).

    vertices: (B, V, 3) or None when not requested.
    joints: (B, J, 3) posed bone heads, in ``BodyModel.bone_names`` order.
    keypoints: set name -> (B, P, 3), names in ``BodyModel.keypoint_names(set)``.
    """

    vertices: torch.Tensor | None
    joints: torch.Tensor
    keypoints: dict[str, torch.Tensor]


# roma's Horn path (its default for 3x3 rotations) is the faster one from a few hundred
# matrices up; below that its SVD path is (timed with torch 2.13 on the project's 2-core CPU:
# about 3x faster for one matrix, 1.5x for one body's 104 bones). Capture orthonormalises
# one body's (or one bone's) rest orientations per frame.
_SVD_BELOW = 256


def _rest_rotations(m: torch.Tensor) -> torch.Tensor:
    """Nearest proper rotations (..., 3, 3) to the blended rest orientations ``m``."""
    import roma

    small = m[..., 0, 0].numel() < _SVD_BELOW
    return roma.special_procrustes(m, method="svd" if small else "auto")


def _read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


class BodyModel(nn.Module):
    """The whole-body linear model. Create it with :meth:`BodyModel.load`."""

    def __init__(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str]):
        super().__init__()
        if metadata.get("format") != "fullcap-bodymodel/1":
            raise AssetError(f"not a fullcap body model asset; rebuild it with `{REBUILD}`")
        self.bone_names: list[str] = json.loads(metadata["bone_names"])
        self.bone_parents: list[int] = json.loads(metadata["bone_parents"])
        self.expression_names: list[str] = json.loads(metadata["expression_names"])
        self.part_names: list[str] = json.loads(metadata["part_names"])
        self._sets: dict[str, list] = json.loads(metadata["keypoint_sets"])
        self.build_report: dict = json.loads(metadata.get("report", "{}"))
        self._levels = kinematic_levels(self.bone_parents)
        if not torch.allclose(tensors["reference_orientation"][0], torch.eye(3)):
            raise AssetError("the root's reference orientation must be the identity")

        t = tensors
        f32 = torch.float32
        basis = t["shape_basis_q"].to(f32) * t["shape_basis_scale"].to(f32)[:, None, None]
        skin_w = torch.zeros(t["skin_index"].shape[0], len(self.bone_names))
        skin_w.scatter_add_(1, t["skin_index"].long(), t["skin_weight"].to(f32))
        kp_w = t["keypoint_joint_weight"].to(f32)
        rows, cols = t["keypoint_vertex_row"].long(), t["keypoint_vertex_col"].long()
        kp_vids, kp_cols = torch.unique(cols, return_inverse=True)
        kp_vw = torch.zeros(kp_w.shape[0], len(kp_vids))
        kp_vw.index_put_((rows, kp_cols), t["keypoint_vertex_weight"].to(f32), accumulate=True)

        def buf(name, value, persistent=False):
            self.register_buffer(name, value, persistent=persistent)

        buf("template_vertices", t["template_vertices"].to(f32))
        buf("shape_basis", basis)  # (K, V, 3)
        buf("expression_vertex_ids", t["expression_vertex_index"].long())
        buf("expression_basis", t["expression_basis"].to(f32))  # (E, Ve, 3)
        buf("joint_template", t["joint_template"].to(f32))
        buf("joint_shape", t["joint_shape"].to(f32))  # (K, J, 3)
        buf("rest_orient_template", t["rest_orientation_template"].to(f32))
        buf("rest_orient_shape", t["rest_orientation_shape"].to(f32))  # (K, J, 3, 3)
        buf("reference_orient", t["reference_orientation"].to(f32))
        buf("skin_weights", skin_w)  # (V, J)
        self._n_skin_groups = 0
        for i, (vids, bones, weights) in enumerate(skinning_groups(skin_w, self.bone_parents)):
            buf(f"_skin_group{i}_vertices", vids)
            buf(f"_skin_group{i}_bones", bones)
            buf(f"_skin_group{i}_weights", weights)
            self._n_skin_groups += 1
        buf("parents", torch.tensor(self.bone_parents))
        buf("faces", t["faces"].long())
        buf("uv", t["uv"].to(f32))
        buf("face_uv", t["face_uv"].long())
        buf("part_labels", t["part_label"].long())
        buf("regressor_index", t["joint_regressor_index"].long())
        buf("regressor_weight", t["joint_regressor_weight"].to(f32))
        buf("keypoint_joint_weight", kp_w)  # (P, J)
        buf("keypoint_vertex_ids", kp_vids)  # (Pv,)
        buf("keypoint_vertex_weight", kp_vw)  # (P, Pv)
        # The keypoint vertices' own slices of the bases, for the keypoints-only forward.
        expr_full = torch.zeros(self.expression_basis.shape[0], basis.shape[1], 3)
        expr_full[:, self.expression_vertex_ids] = self.expression_basis
        buf("kp_template", self.template_vertices[kp_vids].clone())
        buf("kp_shape_basis", basis[:, kp_vids].clone())
        buf("kp_expression_basis", expr_full[:, kp_vids].clone())
        buf("kp_skin_weights", skin_w[kp_vids].clone())
        buf("anny_coeff_template", t["anny_coeff_template"].to(f32))
        buf("anny_coeff_to_beta", t["anny_coeff_to_beta"].to(f32))
        buf("beta_to_anny_coeff", t["beta_to_anny_coeff"].to(f32))
        buf("shape_bank_adult", t["shape_bank_adult"].to(f32))  # (N, K)
        buf("shape_bank_full", t["shape_bank_full"].to(f32))

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        verify: bool = True,
    ) -> BodyModel:
        """Load the asset: ``path`` > ``$FULLCAP_ASSET_DIR`` > the packaged file.

        The packaged file is checked against the hash recorded in the asset manifest.
        Raises :class:`fullcap.assets.AssetError` naming the file and ``fullcap bodymodel build``.
        """
        file = asset_path(ASSET_NAME, override=path)
        expected = None
        if verify:
            entry = load_manifest().get(ASSET_NAME)
            expected = entry.get("sha256") if entry else None
        tensors = load_safetensors(file, expected_sha256=expected, rebuild=REBUILD)
        try:
            metadata = _read_metadata(file)
        except Exception as exc:  # safetensors error types vary by version
            raise AssetError(
                f"cannot read the metadata of {file}; rebuild it with `{REBUILD}`"
            ) from exc
        return cls(tensors, metadata).to(device=device, dtype=dtype)

    # ------------------------------------------------------------ descriptions
    @property
    def num_betas(self) -> int:
        return self.shape_basis.shape[0]

    @property
    def num_expressions(self) -> int:
        return self.expression_basis.shape[0]

    @property
    def num_bones(self) -> int:
        return len(self.bone_names)

    @property
    def dtype(self) -> torch.dtype:
        return self.template_vertices.dtype

    @property
    def device(self) -> torch.device:
        return self.template_vertices.device

    @property
    def keypoint_sets(self) -> list[str]:
        return list(self._sets)

    def keypoint_names(self, set_name: str) -> list[str]:
        return list(self._set(set_name)[2])

    def _set(self, set_name: str) -> list:
        if set_name not in self._sets:
            raise KeyError(f"unknown keypoint set {set_name!r}; this model has {list(self._sets)}")
        return self._sets[set_name]

    def _skin_groups(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return [
            (
                getattr(self, f"_skin_group{i}_vertices"),
                getattr(self, f"_skin_group{i}_bones"),
                getattr(self, f"_skin_group{i}_weights"),
            )
            for i in range(self._n_skin_groups)
        ]

    def part_vertex_ids(self, part: str) -> torch.Tensor:
        """Indices of the vertices of a part: body, head, left_hand, right_hand or eyes."""
        if part not in self.part_names:
            raise KeyError(f"unknown part {part!r}; parts are {self.part_names}")
        return torch.nonzero(self.part_labels == self.part_names.index(part))[:, 0]

    # ----------------------------------------------------------------- forward
    def _check(
        self, name: str, x: torch.Tensor | None, shape: tuple, hint: str
    ) -> torch.Tensor | None:
        if x is None:
            return None
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        ok = x.ndim == len(shape) and all(
            s is None or s == d for s, d in zip(shape, x.shape, strict=True)
        )
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want} ({hint}), got {tuple(x.shape)}")
        if x.dtype != self.dtype:
            raise TypeError(
                f"{name} is {x.dtype} but the model is {self.dtype}: pass {name}.to({self.dtype}) "
                f"or convert the model with model.to({x.dtype})"
            )
        if x.device != self.device:
            raise ValueError(
                f"{name} is on {x.device} but the model is on {self.device}: "
                f"move it with {name}.to('{self.device}') or the model with model.to('{x.device}')"
            )
        return x

    def _rotations(
        self, name: str, x: torch.Tensor | None, n: int, batch: int | None
    ) -> torch.Tensor | None:
        if x is None:
            return None
        if isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[-1] == 3 and x.shape[1] == n:
            x = self._check(name, x, (batch, n, 3), "axis-angle per bone")
            import roma

            return roma.rotvec_to_rotmat(x)
        return self._check(
            name, x, (batch, n, 3, 3), "rotation matrices per bone, or (B, n, 3) axis-angle"
        )

    def shaped(
        self,
        betas: torch.Tensor,
        expression: torch.Tensor | None = None,
        keypoint_vertices_only: bool = False,
    ):
        """Rest vertices (B, V, 3), rest joints (B, J, 3), rest orientations (B, J, 3, 3).

        With ``keypoint_vertices_only`` the vertices are only those that carry keypoints,
        (B, Pv, 3) in ``keypoint_vertex_ids`` order.
        """
        k = betas.shape[1]
        if keypoint_vertices_only:
            template, basis, expr_basis = (
                self.kp_template,
                self.kp_shape_basis,
                self.kp_expression_basis,
            )
        else:
            template, basis, expr_basis = self.template_vertices, self.shape_basis, None
        verts = template + torch.einsum("bk,kvd->bvd", betas, basis[:k])
        if expression is not None and expr_basis is not None:
            verts = verts + torch.einsum("be,evd->bvd", expression, expr_basis)
        elif expression is not None:
            offsets = torch.einsum("be,evd->bvd", expression, self.expression_basis)
            if verts.shape[0] != offsets.shape[0]:
                verts = verts.expand(offsets.shape[0], -1, -1).clone()
            verts.index_add_(1, self.expression_vertex_ids, offsets)  # verts is a fresh tensor
        return verts, *self.rest_skeleton(betas)

    def rest_skeleton(
        self, betas: torch.Tensor, bones: torch.Tensor | list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest heads (B, n, 3) and rest orientations (B, n, 3, 3) of the body shaped by
        ``betas`` (B, K'), for all bones or the ``bones`` given (n of them)."""
        k = betas.shape[1]
        heads, orient = self.joint_template, self.rest_orient_template
        heads_basis, orient_basis = self.joint_shape[:k], self.rest_orient_shape[:k]
        if bones is not None:
            heads, orient = heads[bones], orient[bones]
            heads_basis, orient_basis = heads_basis[:, bones], orient_basis[:, bones]
        heads = heads + torch.einsum("bk,kjd->bjd", betas, heads_basis)
        orient = orient + torch.einsum("bk,kjxy->bjxy", betas, orient_basis)
        return heads, _rest_rotations(orient)

    def reference_offset(self, betas: torch.Tensor | None, bone: int) -> torch.Tensor:
        """Offset (B, 3) of bone ``bone``'s head from its parent's head in the reference pose
        (the same as ``joints[:, bone] - joints[:, parent]`` of ``self(betas=betas)``), from
        the two bones' rest heads and the parent's rest orientation only."""
        parent = self.bone_parents[bone]
        if parent < 0:
            raise ValueError(f"bone {self.bone_names[bone]!r} is the root: it has no offset")
        if betas is None:
            betas = torch.zeros(1, 0, dtype=self.dtype, device=self.device)
        heads, orient = self.rest_skeleton(betas, [parent, bone])
        offset = heads[:, 1] - heads[:, 0]
        if parent == 0:  # the root as a parent counts as the identity (see forward_kinematics)
            return offset
        to_ref = self.reference_orient[parent] @ orient[:, 0].transpose(-1, -2)
        return (to_ref @ offset[..., None])[..., 0]

    def forward(
        self,
        betas: torch.Tensor | None = None,
        expression: torch.Tensor | None = None,
        pose: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
        return_vertices: bool = True,
    ) -> BodyModelOutput:
        """Pose the model.

        Args:
            betas: (B, K') shape coefficients, K' <= num_betas (the rest are zero); roughly
                standard normal; zeros give Anny's default body.
            expression: (B, 52) ARKit facial actions (``expression_names``), nominally [0, 1].
            pose: (B, J-1, 3, 3) rotation matrices or (B, J-1, 3) axis-angle for bones
                ``bone_names[1:]``, world-aligned axes of the reference pose; None: reference pose.
            global_orient: (B, 3, 3) or (B, 3) rotation of the root about the pelvis.
            transl: (B, 3) pelvis position, metres.
            return_vertices: False skips skinning the full mesh (keypoints stay exact).
        Returns:
            :class:`BodyModelOutput`.
        """
        nb = self.num_bones
        given = [
            x
            for x in (betas, expression, pose, global_orient, transl)
            if isinstance(x, torch.Tensor)
        ]
        batch = given[0].shape[0] if given else 1
        if (
            betas is not None
            and isinstance(betas, torch.Tensor)
            and betas.ndim == 2
            and betas.shape[1] > self.num_betas
        ):
            raise ValueError(
                f"betas has {betas.shape[1]} coefficients; this model has {self.num_betas}"
            )
        betas = self._check("betas", betas, (batch, None), "batch, shape coefficients")
        expression = self._check(
            "expression", expression, (batch, self.num_expressions), "batch, facial actions"
        )
        transl = self._check("transl", transl, (batch, 3), "batch, xyz in metres")
        rot = self._rotations("pose", pose, nb - 1, batch)
        if isinstance(global_orient, torch.Tensor) and global_orient.ndim == 2:
            global_orient = self._rotations("global_orient", global_orient[:, None], 1, batch)[:, 0]
        else:
            global_orient = self._check(
                "global_orient", global_orient, (batch, 3, 3), "rotation matrix"
            )

        eye = torch.eye(3, dtype=self.dtype, device=self.device)
        if betas is None:
            betas = torch.zeros(batch, 0, dtype=self.dtype, device=self.device)
        if rot is None:
            rot = eye.expand(batch, nb - 1, 3, 3)
        if global_orient is None:
            global_orient = eye.expand(batch, 3, 3)
        if transl is None:
            transl = torch.zeros(batch, 3, dtype=self.dtype, device=self.device)
        full_pose = torch.cat([global_orient[:, None], rot], dim=1)

        rest_v, rest_j, rest_r = self.shaped(betas, expression, not return_vertices)
        rest_v = rest_v.expand(batch, -1, -1)
        rest_j, rest_r = rest_j.expand(batch, -1, -1), rest_r.expand(batch, -1, -1, -1)
        joints, skin_rot, skin_trans = forward_kinematics(
            rest_j, rest_r, self.reference_orient, full_pose, transl, self.parents, self._levels
        )
        if return_vertices:
            vertices = skin_grouped(rest_v, self._skin_groups(), skin_rot, skin_trans)
            kp_verts = vertices[:, self.keypoint_vertex_ids]
        else:
            vertices = None
            kp_verts = skin(rest_v, self.kp_skin_weights, skin_rot, skin_trans)
        all_kp = self.keypoint_joint_weight @ joints + self.keypoint_vertex_weight @ kp_verts
        keypoints = {name: all_kp[:, s[0] : s[1]] for name, s in self._sets.items()}
        return BodyModelOutput(vertices=vertices, joints=joints, keypoints=keypoints)

    # ------------------------------------------------------------------ extras
    def sample_betas(
        self, n: int, prior: str = "adult", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Betas (n, K) of Anny bodies sampled at build time (with local changes).

        ``prior``: "adult" (teens and adults, Anny age >= 0.5) or "full" (newborn to old).
        """
        if prior not in ("adult", "full"):
            raise ValueError(f"prior must be 'adult' or 'full', got {prior!r}")
        bank = getattr(self, f"shape_bank_{prior}")
        idx = torch.randint(0, bank.shape[0], (n,), generator=generator)
        return bank[idx.to(bank.device)]

    # ------------------------------------------------------------------ extras
    def regress_joints(self, rest_vertices: torch.Tensor) -> torch.Tensor:
        """Bone heads (B, J, 3) regressed from a shaped rest mesh (B, V, 3) of this topology."""
        return (rest_vertices[:, self.regressor_index] * self.regressor_weight[..., None]).sum(2)

    def betas_from_anny(self, anny_coefficients: torch.Tensor) -> torch.Tensor:
        """Project Anny blendshape coefficients (B, 696) onto this model's betas (B, K).

        The coefficients are those of the Anny cache that built this asset: Anny rebuilds its
        coefficient basis with each cache build, so another machine's coefficients can map to
        other shapes (off by up to ~7 mm). To match an Anny body elsewhere, fit its rest mesh
        (``fullcap.bodymodel.parity.fit_betas``).
        """
        return (anny_coefficients - self.anny_coeff_template) @ self.anny_coeff_to_beta

    def anny_from_betas(self, betas: torch.Tensor) -> torch.Tensor:
        """Anny shape blendshape coefficients (B, 696) that give exactly the shape ``betas``."""
        k = betas.shape[1]
        return self.anny_coeff_template + betas @ self.beta_to_anny_coeff[:k]
