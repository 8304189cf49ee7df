"""Cheap self-intersection test: the body as capsules, rejecting deep interpenetration.

Each capsule is a segment rigidly attached to one bone plus a radius, both measured per body
shape on a fixed subset of rest-mesh vertices (the vertices skinned mostly to that part):
limbs run between bone heads, their radius the median distance of the part's vertices to the
axis; each of the three spine segments (waist, belly, chest) is three parallel columns (left,
centre, right) of radius half the body's depth there, spanning its width; the hips are a
transverse pill and the head a short vertical capsule. All radii are times ``shrink`` (so that
skin touching skin does not count).

A pose is rejected when two non-adjacent capsules interpenetrate deeper than
``depth_frac * min(r1, r2) + depth_abs``: an arm through the torso, a hand inside the head or
legs through each other, while hands on the hips or thighs, crossed arms or a squat touching
the belly pass. Positions in the model frame, metres.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from fullcap.bodymodel.lbs import forward_kinematics, kinematic_levels

__all__ = ["CapsuleCollider", "segment_distance"]


def segment_distance(p0: torch.Tensor, p1: torch.Tensor, q0: torch.Tensor, q1: torch.Tensor):
    """Distance (...) between segments [p0, p1] and [q0, q1], points (..., 3) (Ericson's
    closest-point algorithm, clamped; degenerate segments are fine)."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a, e = (d1 * d1).sum(-1), (d2 * d2).sum(-1)
    b, c, f = (d1 * d2).sum(-1), (d1 * r).sum(-1), (d2 * r).sum(-1)
    eps = 1e-12
    denom = a * e - b * b
    s = torch.where(denom > eps, ((b * f - c * e) / denom.clamp_min(eps)).clamp(0, 1), 0.0)
    t = (b * s + f) / e.clamp_min(eps)
    s = torch.where(t < 0, (-c / a.clamp_min(eps)).clamp(0, 1), s)
    s = torch.where(t > 1, ((b - c) / a.clamp_min(eps)).clamp(0, 1), s)
    t = t.clamp(0, 1)
    return ((p0 + d1 * s[..., None]) - (q0 + d2 * t[..., None])).norm(dim=-1)


# limb capsules: name -> (bones skinning its vertices, head bone, tail bone, (start, end) as
# fractions of head -> tail; the thigh stops short of the thinner knee)
# fmt: off
_LIMBS = {
    "upperarm": (("upperarm01", "upperarm02"), "upperarm01", "lowerarm01", (0.3, 1.0)),
    "forearm": (("lowerarm01", "lowerarm02"), "lowerarm01", "wrist", (0.0, 1.0)),
    "hand": (("wrist", "metacarpal1", "metacarpal2", "metacarpal3", "metacarpal4"), "wrist",
             "finger3-2", (0.15, 1.0)),
    "thigh": (("upperleg01", "upperleg02"), "upperleg01", "lowerleg01", (0.25, 0.85)),
    "shin": (("lowerleg01", "lowerleg02"), "lowerleg01", "foot", (0.0, 1.0)),
    "foot": (("foot",), "foot", "toe3-1", (0.0, 1.0)),
}
# fmt: on
# torso columns: name -> (bones skinning its vertices, lower joint = attached bone, upper joint);
# each segment of the spine is three parallel columns (left, centre, right) spanning its width
_TORSO = {
    "waist": (("spine05", "spine04"), "spine05", "spine03"),
    "belly": (("spine03", "spine02"), "spine03", "spine01"),
    "chest": (("spine01",), "spine01", "neck01"),
}
_PELVIS = ("root", "pelvis.L", "pelvis.R")  # a transverse pill through the hips
# fmt: off
_ADJACENT = {  # pairs of parts never tested (touch at a joint or rest against each other)
    frozenset(p)
    for p in [("upperarm", "forearm"), ("forearm", "hand"), ("thigh", "shin"),
              ("shin", "foot"), ("thigh", "foot"), ("thigh", "pelvis"), ("thigh", "waist"),
              ("upperarm", "chest"), ("head", "chest"), ("pelvis", "waist"), ("pelvis", "belly"),
              ("pelvis", "chest"),
              ("waist", "belly"), ("waist", "chest"), ("belly", "chest")]
}
# fmt: on


@dataclass
class _Capsule:
    name: str  # "forearm.L", "chest.c", ...
    part: str  # "forearm", "chest", ...
    side: str  # "L", "R" or "" (centre parts)
    kind: str  # "limb" (between joints), "column", "pill" or "head"
    bone: int  # the bone it moves with
    ends: tuple[int, int]  # joints spanned (limb, column)
    trim: tuple[float, float]  # limb: start and end as fractions of head -> tail
    lateral: float  # column: -1, 0 or +1 times the half width
    vertex_ids: torch.Tensor


class CapsuleCollider:
    """Capsule model of one skeleton, and the self-intersection test.

    Args:
        model: a :class:`fullcap.bodymodel.model.BodyModel` (its buffers are read; the test
            runs forward kinematics only, no skinning).
        shrink: radii are ``shrink`` times the measured ones, so that touching skin passes.
        depth_frac, depth_abs: rejection threshold on the interpenetration depth, a fraction
            of the thinner capsule's radius plus metres.
        n_vertices: vertices per capsule used to measure it on each body shape.
    """

    def __init__(
        self,
        model,
        shrink: float = 0.8,
        depth_frac: float = 0.5,
        depth_abs: float = 0.005,
        n_vertices: int = 64,
    ) -> None:
        self.model = model
        self.shrink, self.depth_frac, self.depth_abs = shrink, depth_frac, depth_abs
        idx = {n: i for i, n in enumerate(model.bone_names)}
        dominant = model.skin_weights.argmax(dim=1).cpu()
        rest_v = model.template_vertices.detach().cpu()
        rest_j = model.joint_template.detach().cpu()

        def pick(bones: list[str], keep=None) -> torch.Tensor:
            ids = torch.nonzero(torch.isin(dominant, torch.tensor([idx[b] for b in bones])))[:, 0]
            if keep is not None:
                ids = ids[keep(rest_v[ids])]
            return ids[torch.linspace(0, len(ids) - 1, n_vertices).round().long()]

        caps: list[_Capsule] = []
        for side in ("L", "R"):
            for part, (bones, head, tail, trim) in _LIMBS.items():
                h, t = idx[f"{head}.{side}"], idx[f"{tail}.{side}"]
                a, b = rest_j[h], rest_j[t]

                def middle(v, a=a, b=b):
                    u = ((v - a) @ (b - a)) / (b - a).dot(b - a)
                    return (u > 0.25) & (u < 0.75)

                ids = pick([f"{bn}.{side}" for bn in bones], middle)
                caps.append(_Capsule(f"{part}.{side}", part, side, "limb", h, (h, t), trim, 0, ids))
        for part, (bones, low, high) in _TORSO.items():
            ids = pick(list(bones))
            for lat, tag in ((-1.0, "r"), (0.0, "c"), (1.0, "l")):
                ends = (idx[low], idx[high])
                caps.append(_Capsule(f"{part}.{tag}", part, "", "column", idx[low], ends,
                                     (0.0, 1.0), lat, ids))  # fmt: skip
        ids = pick(list(_PELVIS))
        caps.append(_Capsule("pelvis", "pelvis", "", "pill", idx["root"], (0, 0), (0, 1), 0, ids))
        ids = pick(["head"])
        caps.append(_Capsule("head", "head", "", "head", idx["head"], (0, 0), (0, 1), 0, ids))
        # forward kinematics runs on the bones the capsules hang from and their ancestors only
        parents = model.bone_parents
        needed = {b for c in caps for b in (c.bone, *c.ends)}
        for b in list(needed):
            while b > 0:
                b = parents[b]
                needed.add(b)
        sub = sorted(needed)
        remap = {b: i for i, b in enumerate(sub)}
        self.sub_bones = torch.tensor(sub)
        self.sub_parents = torch.tensor([remap.get(parents[b], -1) for b in sub])
        self.sub_levels = kinematic_levels([remap.get(parents[b], -1) for b in sub])
        for c in caps:
            c.bone, c.ends = remap[c.bone], (remap[c.ends[0]], remap[c.ends[1]])
        self.caps = caps
        self.names = [c.name for c in caps]
        self.vertex_ids = torch.stack([c.vertex_ids for c in caps])  # (C, n_vertices)
        pairs = itertools.combinations(range(len(caps)), 2)
        self.pairs = torch.tensor([p for p in pairs if not self._adjacent(*p)])  # (P, 2)

    def _adjacent(self, i: int, j: int) -> bool:
        """Pairs not tested: parts of one torso segment, adjacent parts of one limb, or a limb
        and the torso part it attaches to (see ``_ADJACENT``)."""
        a, b = self.caps[i], self.caps[j]
        if a.part == b.part and not a.side:
            return True
        same_side = a.side == b.side or not a.side or not b.side
        return frozenset((a.part, b.part)) in _ADJACENT and same_side

    # ------------------------------------------------------------------ capsules
    def capsules(
        self, betas: torch.Tensor, pose: torch.Tensor, global_orient: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed capsules: segments (B, C, 2, 3) metres and radii (B, C) metres.

        Args:
            betas: (B, K') shape; pose: (B, J-1, 3, 3); global_orient: (B, 3, 3) or None.
        """
        m = self.model
        bsz, k = betas.shape
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        go = eye.expand(bsz, 3, 3) if global_orient is None else global_orient
        sub = self.sub_bones.to(betas.device)
        rest_j, rest_r = m.rest_skeleton(betas, sub)
        full = torch.cat([go[:, None], pose], dim=1)[:, sub]
        zeros = torch.zeros(bsz, 3, dtype=pose.dtype, device=pose.device)
        parents = self.sub_parents.to(betas.device)
        joints, rot, trans = forward_kinematics(
            rest_j, rest_r, m.reference_orient[sub], full, zeros, parents, self.sub_levels
        )
        ids = self.vertex_ids.to(betas.device)
        flat = ids.reshape(-1)
        verts = m.template_vertices[flat] + torch.einsum(
            "bk,kvd->bvd", betas, m.shape_basis[:k, flat]
        )
        verts = verts.reshape(bsz, *ids.shape, 3)  # (B, C, n, 3) rest pose
        segs, radii = [], []
        for c, cap in enumerate(self.caps):
            v = verts[:, c]
            if cap.kind == "limb":
                h, t = cap.ends
                a, b = rest_j[:, h], rest_j[:, t]
                r = segment_distance(v, v, a[:, None], b[:, None]).median(dim=1).values
                ja, jb = joints[:, h], joints[:, t]
                pa, pb = ja + cap.trim[0] * (jb - ja), ja + cap.trim[1] * (jb - ja)
            else:
                lo, hi = v.min(dim=1).values, v.max(dim=1).values  # (B, 3) rest-pose extent
                centre = 0.5 * (lo + hi)
                half = 0.5 * (hi - lo)
                axis = torch.zeros_like(centre)
                if cap.kind == "column":  # along the spine segment, moved to the body's middle
                    r = half[:, 1]
                    shift = centre - 0.5 * (rest_j[:, cap.ends[0]] + rest_j[:, cap.ends[1]])
                    shift[:, 0] = cap.lateral * (half[:, 0] - r).clamp_min(0.0)
                    shift[:, 2] = 0.0
                    ends = torch.stack([rest_j[:, cap.ends[0]], rest_j[:, cap.ends[1]]], 1)
                    ends = ends + shift[:, None]
                else:
                    if cap.kind == "pill":  # transverse: across x, radius half the depth (y)
                        r = half[:, 1]
                        axis[:, 0] = (half[:, 0] - r).clamp_min(0.0)
                    else:  # head: vertical
                        r = half[:, 0]
                        axis[:, 2] = (half[:, 2] - r).clamp_min(0.0)
                    ends = torch.stack([centre - axis, centre + axis], dim=1)
                g, t = rot[:, cap.bone], trans[:, cap.bone]
                pa, pb = (ends @ g.transpose(-1, -2) + t[:, None]).unbind(1)
            segs.append(torch.stack([pa, pb], dim=1))
            radii.append(self.shrink * r)
        return torch.stack(segs, dim=1), torch.stack(radii, dim=1)

    # ------------------------------------------------------------------ test
    def penetration(
        self, betas: torch.Tensor, pose: torch.Tensor, global_orient: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Excess depth (B, P) metres of each tested capsule pair (``self.pairs``) beyond the
        threshold; > 0 means that pair interpenetrates too deeply."""
        segs, radii = self.capsules(betas, pose, global_orient)
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        dist = segment_distance(segs[:, i, 0], segs[:, i, 1], segs[:, j, 0], segs[:, j, 1])
        depth = radii[:, i] + radii[:, j] - dist
        allowed = self.depth_frac * torch.minimum(radii[:, i], radii[:, j]) + self.depth_abs
        return depth - allowed

    def intersects(
        self, betas: torch.Tensor, pose: torch.Tensor, global_orient: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B,) bool: the pose (B, J-1, 3, 3) of shape betas (B, K') self-intersects."""
        return (self.penetration(betas, pose, global_orient) > 0).any(dim=1)

    def worst_pair(self, penetration: torch.Tensor) -> list[str]:
        """Names "a|b" of the deepest pair per sample of a :meth:`penetration` result."""
        k = penetration.argmax(dim=1)
        return [
            f"{self.names[self.pairs[x, 0]]}|{self.names[self.pairs[x, 1]]}" for x in k.tolist()
        ]
