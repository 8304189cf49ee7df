"""One batch of synthetic samples: parameters -> posed mesh -> camera -> shading -> render ->
composite -> occluders and degradations -> labels -> JPEG.

Determinism: sample ``i`` depends only on ``(seed, source, i)`` (and the image size). Every
random draw comes from generators seeded by ``SeedSequence([seed, crc32(source), ...])``: one
per sample (camera, scene, degradations), one per subject ``j = i // views_per_subject``
(appearance, lighting, placement), and one per *chunk* of :data:`FORWARD_BATCH` subjects
(``j // FORWARD_BATCH``) for the body parameters, which the parameter sampler draws and the
body model poses as one full chunk (batched sampling is about 7x cheaper than one at a time,
and the fixed batch composition makes the float results bitwise reproducible), whatever
subset of samples a call asks for.

Visibility of a keypoint (stored per keypoint, ``vis/<set>``): it projects inside the image
in front of the camera, is not under a drawn occluder, and either
- it lies within ``0.015 m + d`` behind the rendered depth at its pixel, where ``d`` is its
  distance to the nearest vertex in the reference pose (0 for mesh-bound points), for points
  with ``d <= 2 cm`` (surface points, finger joints), or
- for interior joints (``d > 2 cm``: pelvis, knees, spine...), the surface seen at its pixel
  belongs to one of its own bones (bones of the vertices within ``d + 5 cm`` of it), i.e. the
  joint is only hidden by *other* body parts, as an annotator would judge it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.render import Renderer, RenderOutput
from fullcap.synth.appearance import AppearanceModel
from fullcap.synth.camera import SHOTS, sample_camera
from fullcap.synth.scene import (
    background,
    degrade,
    draw_occluders,
    irradiance,
    sample_lighting,
    sh_to_camera,
    vertex_normals,
)
from fullcap.synth.sources import SourceConfig, get_source

__all__ = ["BOXES", "FORWARD_BATCH", "SynthEngine", "SynthSample"]

FORWARD_BATCH = 16
BOXES = ("body", "left_hand", "right_hand", "face")
SURFACE_TOL = 0.015  # metres
_INTERIOR = 0.02  # metres from the surface beyond which a keypoint counts as interior
OCCLUDER_PART = 255


@dataclass
class SynthSample:
    """One sample.

    jpeg: the stored image (JPEG bytes, RGB content). part_png: PNG of the (H, W) uint8 part
    map (0 background, 1 + index into ``BodyModel.part_names``, 255 occluder) or None.
    labels: name -> array: ``kp2d/<set>`` (P, 2) pixels,
    ``kp3d/<set>`` (P, 3) camera frame metres, ``vis/<set>`` (P,) uint8, ``boxes`` (4, 4)
    x0, y0, x1, y1 pixels for BOXES, ``box_valid`` (4,), camera ``K``/``R``/``t``
    (world -> camera), model parameters, lighting and appearance summaries.
    image: (H, W, 3) uint8 before JPEG; info: strings (pose archetypes); buffers: the raw
    render and occluder_mask the (H, W) bool occluder pixels (only with keep_buffers).
    """

    index: int
    jpeg: bytes
    part_png: bytes | None
    labels: dict[str, np.ndarray]
    image: np.ndarray
    info: dict[str, str] = field(default_factory=dict)
    buffers: RenderOutput | None = None
    occluder_mask: np.ndarray | None = None


def _mesh_landmarks(pos: np.ndarray, part: np.ndarray, part_names: list[str]) -> dict[str, int]:
    """Vertex ids of the nose tip and ear points, found on the rest mesh (Z up, -Y forward)."""
    head = np.nonzero(part == part_names.index("head"))[0]
    eyes = pos[part == part_names.index("eyes")]
    e = eyes.mean(0)
    p = pos[head] - e
    band = (np.abs(p[:, 0]) < 0.006) & (p[:, 2] < -0.005) & (p[:, 2] > -0.06)
    nose = head[band][np.argmin(p[band, 1])]  # most forward midline point below the eyes
    out = {"mesh:nose": int(nose)}
    ear_band = (np.abs(p[:, 2] + 0.02) < 0.03) & (p[:, 1] > 0.04) & (p[:, 1] < 0.12)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        cand = head[ear_band & (sign * p[:, 0] > 0)]
        out[f"mesh:{side}_ear"] = int(cand[np.argmax(sign * pos[cand, 0])])
    return out


class _PreShadedRenderer(Renderer):
    """The renderer fed with colours already shaded here (ambient = 1, so its own normals
    are unused): skip its per-call normal computation (about 1.5 ms per image)."""

    def _vertex_normals(self, verts: np.ndarray) -> np.ndarray:
        z = getattr(self, "_zero_normals", None)
        if z is None or z.shape != verts.shape:
            z = self._zero_normals = np.zeros_like(verts)
        return z


class SynthEngine:
    """Renders samples of one source.

    Args:
        source: a name from :data:`fullcap.synth.sources.SOURCES` or a SourceConfig.
        seed: dataset seed.
        size: square image side in pixels (> 0).
        model: body model (loaded with ``BodyModel.load()`` when None).
        sampler: ``(n, torch.Generator) -> params`` with fields betas (n, K), pose
            (n, J-1, 3, 3), global_orient (n, 3, 3), expression (n, 52) and archetype
            (list of str) (default: ``fullcap.synth.samplers.ParamSampler(model).sample`` with the
            source's adult fraction).
        part_map: also store the per-pixel part map as PNG.
        keep_buffers: keep depth, triangle ids and the occluder mask in each sample.
    """

    def __init__(
        self,
        source: str | SourceConfig,
        seed: int,
        size: int = 256,
        model: BodyModel | None = None,
        sampler: Callable[[int, torch.Generator], Any] | None = None,
        part_map: bool = True,
        keep_buffers: bool = False,
    ):
        self.source = get_source(source)
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
            raise ValueError(f"size must be a positive integer (pixels), got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed, self.size = int(seed), int(size)
        self.part_map, self.keep_buffers = part_map, keep_buffers
        self.model = model if model is not None else BodyModel.load()
        if sampler is None:
            from fullcap.synth.samplers import ParamSampler

            sampler = ParamSampler(
                self.model,
                adult_fraction=self.source.adult_fraction,
                expression=self.source.expression,
            ).sample
        self.sampler = sampler
        self._key = zlib.crc32(self.source.name.encode())
        self.appearance = AppearanceModel(self.model)
        self.renderer = _PreShadedRenderer(self.size, self.size)
        self._chunk_cache: tuple[int, Any] | None = None
        self._setup_labels()

    # ----------------------------------------------------------------- label structure
    def _setup_labels(self) -> None:
        m, src = self.model, self.source
        self.model_sets = list(m.keypoint_sets)
        self.body_names = m.keypoint_names("body33")
        self._eye_ids = [self.body_names.index(n) for n in ("left_eye", "right_eye", "head")]
        sizes = [len(m.keypoint_names(s)) for s in self.model_sets]
        self._slices = dict(zip(self.model_sets, np.cumsum([0, *sizes])[:-1].tolist(), strict=True))
        self._set_len = dict(zip(self.model_sets, sizes, strict=True))
        faces = m.faces.cpu().numpy()
        self.faces = np.ascontiguousarray(faces, dtype=np.int32)
        self._faces_t = m.faces.long()
        part = m.part_labels.cpu().numpy()
        self.tri_part = np.concatenate([[0], part[faces[:, 0]] + 1]).astype(
            np.uint8
        )  # id+1 -> part
        pn = m.part_names
        self._box_vertices = [
            None,
            np.nonzero(part == pn.index("left_hand"))[0],
            np.nonzero(part == pn.index("right_hand"))[0],
            np.nonzero(np.isin(part, [pn.index("head"), pn.index("eyes")]))[0],
        ]
        self._box_parts = [
            None,
            [pn.index("left_hand") + 1],
            [pn.index("right_hand") + 1],
            [pn.index("head") + 1, pn.index("eyes") + 1],
        ]
        with torch.no_grad():
            ref = m()
        ref_v = ref.vertices[0].cpu().numpy()
        ref_k = torch.cat([ref.keypoints[s][0] for s in self.model_sets]).cpu().numpy()
        self.landmarks = _mesh_landmarks(m.template_vertices.cpu().numpy(), part, pn)
        dist = np.sqrt(((ref_k[:, None] - ref_v[None]) ** 2).sum(-1))  # (P, V)
        self.kp_depth = dist.min(1)
        dom = m.skin_weights.argmax(1).cpu().numpy()
        self.tri_bone = np.concatenate([[0], dom[faces[:, 0]]])  # indexed by triangle id + 1
        own = np.zeros((len(ref_k), m.num_bones), dtype=bool)
        for k in range(len(ref_k)):
            own[k, dom[dist[k] < self.kp_depth[k] + 0.05]] = True
        self.kp_own = own
        self.kp_interior = self.kp_depth > _INTERIOR
        self._tol = SURFACE_TOL + np.where(self.kp_interior, 0.0, self.kp_depth)
        # Extended sets: rows over [model keypoints, landmark vertices].
        lm_names = list(self.landmarks)
        self._lm_ids = np.array([self.landmarks[n] for n in lm_names], dtype=np.int64)
        n_model = len(ref_k)
        self.ext: dict[str, tuple[np.ndarray, list[list[int]]]] = {}
        for es in src.extended:
            W = np.zeros((len(es.names), n_model + len(lm_names)))
            deps: list[list[int]] = []
            for r, anchor in enumerate(es.anchors):
                cols = []
                for name, w in anchor:
                    if name.startswith("mesh:"):
                        c = n_model + lm_names.index(name)
                    else:
                        c = self._slices["body33"] + self.body_names.index(name)
                    W[r, c] = w
                    cols.append(c)
                deps.append(cols)
            self.ext[es.name] = (W, deps)
        self.labelled_sets = [s for s in src.keypoint_sets if s in self.model_sets]
        self.labelled_sets += list(self.ext)

    def set_names(self, name: str) -> list[str]:
        """Keypoint names of a labelled set (model or extended)."""
        for es in self.source.extended:
            if es.name == name:
                return list(es.names)
        return self.model.keypoint_names(name)

    # ----------------------------------------------------------------- randomness
    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, self._key, *key]))

    # ----------------------------------------------------------------- main entry
    def render(self, indices: Sequence[int]) -> list[SynthSample]:
        """Render samples ``indices`` (non-negative ints, any order; output in that order)."""
        idx = [int(i) for i in indices]
        if any(i < 0 for i in idx):
            raise ValueError("indices must be non-negative")
        vps = self.source.views_per_subject
        out: dict[int, SynthSample] = {}
        chunks = sorted({i // vps // FORWARD_BATCH for i in idx})
        for c in chunks:
            todo = sorted({i for i in idx if i // vps // FORWARD_BATCH == c})
            for s in range(0, len(todo), FORWARD_BATCH):
                for smp in self._render_batch(todo[s : s + FORWARD_BATCH], self._chunk(c)):
                    out[smp.index] = smp
        return [out[i] for i in idx]

    def _chunk(self, c: int) -> tuple[dict[str, torch.Tensor], Any, Any]:
        """Parameters and posed model of subjects ``[c * FORWARD_BATCH, (c + 1) * FORWARD_BATCH)``,
        sampled together with a generator seeded by ``(seed, source, c)`` (cached)."""
        if self._chunk_cache is not None and self._chunk_cache[0] == c:
            return self._chunk_cache[1]
        seed = int(self._rng(c, 1).integers(0, 2**62))
        params = self.sampler(FORWARD_BATCH, torch.Generator().manual_seed(seed))
        cat = {
            f: getattr(params, f).to(self.model.dtype)
            for f in ("betas", "pose", "global_orient", "expression")
        }
        with torch.no_grad():
            out = self.model(**cat)
        self._chunk_cache = (c, (cat, out, params))
        return cat, out, params

    def _render_batch(self, idx: list[int], chunk: tuple[dict, Any, Any]) -> list[SynthSample]:
        src = self.source
        subjects = [i // src.views_per_subject for i in idx]
        rows = [j % FORWARD_BATCH for j in subjects]
        cat_all, out, params = chunk
        cat = {f: x[rows] for f, x in cat_all.items()}
        verts = out.vertices[rows].float()
        kps = torch.cat([out.keypoints[s] for s in self.model_sets], dim=1)[rows].float()
        shot_names = [s for s, _ in src.shots]
        shot_p = np.array([w for _, w in src.shots], dtype=np.float64)
        cams, lights, apps, transl, exposure = [], [], [], [], []
        for b, (i, j) in enumerate(zip(idx, subjects, strict=True)):
            subj_rng, rng = self._rng(j, 2), self._rng(i, 0, 0)
            vol = src.rig.volume
            xy = subj_rng.uniform(-vol, vol, 2) if vol > 0 else np.zeros(2)
            tr = np.array([xy[0], xy[1], -float(verts[b, :, 2].min())])  # feet on z = 0
            transl.append(tr)
            apps.append(self.appearance.sample(subj_rng, src.appearance))
            lights.append(sample_lighting(subj_rng, src.scene))
            kp_w = kps[b].numpy() + tr
            named = {s: kp_w[o : o + self._set_len[s]] for s, o in self._slices.items()}
            shot = shot_names[int(rng.choice(len(shot_names), p=shot_p / shot_p.sum()))]
            if shot == "face":  # where the head looks: eye midpoint minus head centre
                body = named["body33"]
                eyes = (body[self._eye_ids[0]] + body[self._eye_ids[1]]) / 2
                facing = eyes - body[self._eye_ids[2]]
            else:  # where the pelvis looks
                facing = cat["global_orient"][b].numpy() @ np.array([0.0, -1.0, 0.0])
            cams.append(
                sample_camera(
                    rng,
                    src.rig,
                    shot,
                    named,
                    self.body_names,
                    facing,
                    self.size,
                    verts[b, ::11].numpy() + tr,
                )
            )
            exposure.append(rng.uniform(0.55, 1.15))
        R = torch.from_numpy(np.stack([c.R for c in cams])).float()
        t = np.stack([c.t + c.R @ tr for c, tr in zip(cams, transl, strict=True)])
        t = torch.from_numpy(t).float()[:, None]
        v_cam = verts @ R.transpose(1, 2) + t
        k_cam = (kps @ R.transpose(1, 2) + t).numpy()
        normals = vertex_normals(v_cam, self._faces_t)
        sh = np.stack([sh_to_camera(li.sh, c.R) for li, c in zip(lights, cams, strict=True)])
        ldir = np.stack([c.R @ li.light_dir for li, c in zip(lights, cams, strict=True)])
        lrgb = np.stack([li.light_rgb for li in lights])
        irr = irradiance(
            normals,
            torch.from_numpy(sh).float(),
            torch.from_numpy(ldir).float(),
            torch.from_numpy(lrgb).float(),
        )
        # Auto-exposure: scale the lighting so the camera-facing surface gets a target level.
        front = (normals[..., 2] < 0).float()
        level = (irr.mean(-1) * front).sum(1) / front.sum(1).clamp_min(1.0)
        gain = torch.tensor(exposure, dtype=torch.float32) / level.clamp_min(1e-3)
        irr *= gain[:, None, None]
        gain_np = gain.numpy().astype(np.float64)
        sh, lrgb = sh * gain_np[:, None, None], lrgb * gain_np[:, None]
        albedo = self.appearance.albedo_tensor(apps)
        colors = (albedo * irr).clamp_(0.0, 1.0).pow_(1 / 2.2).numpy()
        v_cam_np = v_cam.numpy()
        samples = []
        for b, i in enumerate(idx):
            extra = {
                "sh": sh[b],
                "light_dir": ldir[b],
                "light_rgb": lrgb[b],
                "albedo": apps[b].summary,
                "appearance_codes": apps[b].codes,
                "subject": np.int64(subjects[b]),
            }
            if src.has_3d:
                for f in ("betas", "pose", "global_orient", "expression"):
                    extra[f] = cat[f][b].numpy()
                extra["transl"] = transl[b]
                extra["R"], extra["t"] = cams[b].R, cams[b].t
            hand = params.hand_archetype[rows[b]] if hasattr(params, "hand_archetype") else ""
            info = {
                "archetype": str(params.archetype[rows[b]]),
                "hand_archetype": "/".join(hand) if isinstance(hand, tuple | list) else str(hand),
            }
            samples.append(self._finish(i, cams[b], v_cam_np[b], k_cam[b], colors[b], extra, info))
        return samples

    # ----------------------------------------------------------------- per sample
    def _finish(
        self,
        i: int,
        cam: Any,
        v_cam: np.ndarray,
        k_cam: np.ndarray,
        colors: np.ndarray,
        extra: dict[str, Any],
        info: dict[str, str],
    ) -> SynthSample:
        src, H = self.source, self.size
        rng = self._rng(i, 0, 1)
        K = cam.K
        if src.fixed_backgrounds > 0:  # one lab: the same scene behind each fixed camera
            view = max(cam.view, 0) % src.fixed_backgrounds
            bg = background(self._rng(7, view), (H, H), K, cam.R, cam.t, src.scene)
        else:
            sh0 = extra["sh"][0]
            tint = np.clip(sh0 / max(sh0.mean(), 1e-6), 0.7, 1.3) ** (1 / 2.2)
            bg = background(rng, (H, H), K, cam.R, cam.t, src.scene, tint)
        r = self.renderer.render(v_cam, self.faces, K, colors, ambient=1.0, background=bg)
        img, tri, depth = r.rgb, r.triangle_id, r.depth
        mask = (tri >= 0).view(np.uint8)
        edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        cv2.copyTo(cv2.blur(img, (3, 3)), edge, img)  # soften the aliased silhouette

        uvw = k_cam @ K.T
        uv = uvw[:, :2] / uvw[:, 2:3]
        occ = np.zeros((H, H), dtype=bool)
        pix = self._pixels(uv, k_cam[:, 2])
        vis = self._visibility(pix, k_cam[:, 2], depth, tri, occ)
        if rng.random() < src.scene.p_occluder and vis.any():
            anchors = uv[vis]
            span = float(np.ptp(anchors, axis=0).max()) if len(anchors) > 1 else H / 4
            occ = draw_occluders(
                rng, img, anchors, float(np.clip(span, H / 8, H)), int(rng.integers(1, 4))
            )
            vis = self._visibility(pix, k_cam[:, 2], depth, tri, occ)
        img = degrade(rng, img, src.scene)
        quality = int(rng.integers(src.scene.jpeg_quality[0], src.scene.jpeg_quality[1] + 1))
        ok, jpg = cv2.imencode(
            ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for sample {i}")
        part = self.tri_part[tri + 1]
        part[occ] = OCCLUDER_PART
        png = cv2.imencode(".png", part)[1].tobytes() if self.part_map else None

        labels = self._labels(uv, k_cam, vis, v_cam, K, part, depth)
        labels["K"] = K.astype(np.float32)
        labels["index"] = np.int64(i)
        labels["shot"] = np.uint8(SHOTS.index(cam.shot))
        labels["shot_side"] = np.uint8({"": 0, "left": 1, "right": 2}[cam.side])
        labels["view"] = np.int16(cam.view)
        labels["jpeg_quality"] = np.uint8(quality)
        for k, v in extra.items():
            a = np.asarray(v)
            labels[k] = a.astype(np.float32) if a.dtype.kind == "f" else a
        return SynthSample(
            index=i,
            jpeg=jpg.tobytes(),
            part_png=png,
            labels=labels,
            image=img,
            info=info,
            buffers=r if self.keep_buffers else None,
            occluder_mask=occ if self.keep_buffers else None,
        )

    def _pixels(self, uv: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inside (P,) bool, row (P,), col (P,)): the pixel of each point, if in the image."""
        H = self.size
        ok = np.isfinite(uv).all(1) & (z > self.renderer.near)
        col = np.floor(np.where(ok, uv[:, 0], -1)).astype(np.int64)
        row = np.floor(np.where(ok, uv[:, 1], -1)).astype(np.int64)
        inside = ok & (col >= 0) & (col < H) & (row >= 0) & (row < H)
        return inside, np.where(inside, row, 0), np.where(inside, col, 0)

    def _visibility(
        self,
        pix: tuple[np.ndarray, np.ndarray, np.ndarray],
        z: np.ndarray,
        depth: np.ndarray,
        tri: np.ndarray,
        occ: np.ndarray,
    ) -> np.ndarray:
        """(P,) bool visibility of the model keypoints (see the module docstring)."""
        inside, r, c = pix
        by_depth = z <= depth[r, c] + self._tol
        bone = self.tri_bone[tri[r, c] + 1]
        own = self.kp_interior & (tri[r, c] >= 0) & self.kp_own[np.arange(len(z)), bone]
        return inside & (by_depth | own) & ~occ[r, c]

    def _labels(
        self,
        uv: np.ndarray,
        k_cam: np.ndarray,
        vis: np.ndarray,
        v_cam: np.ndarray,
        K: np.ndarray,
        part: np.ndarray,
        depth: np.ndarray,
    ) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for s in self.labelled_sets:
            if s in self.ext:
                W, deps = self.ext[s]
                p3 = W @ np.concatenate([k_cam, v_cam[self._lm_ids]])
                uvw = p3 @ K.T
                p2 = uvw[:, :2] / uvw[:, 2:3]
                inside, r, c = self._pixels(p2, p3[:, 2])
                surf = inside & (p3[:, 2] <= depth[r, c] + SURFACE_TOL)
                surf &= part[r, c] != OCCLUDER_PART
                v = np.array(
                    [
                        all(vis[j] if j < len(vis) else surf[row] for j in d)
                        for row, d in enumerate(deps)
                    ],
                    dtype=bool,
                )
            else:
                o, n = self._slices[s], self._set_len[s]
                p3, p2, v = k_cam[o : o + n], uv[o : o + n], vis[o : o + n]
            out[f"kp2d/{s}"] = p2.astype(np.float32)
            out[f"vis/{s}"] = v.astype(np.uint8)
            if self.source.has_3d:
                out[f"kp3d/{s}"] = p3.astype(np.float32)
        boxes = np.zeros((4, 4), np.float32)
        valid = np.zeros(4, np.uint8)
        counts = cv2.calcHist([part], [0], None, [256], [0, 256]).ravel()
        near = self.renderer.near
        z = v_cam[:, 2]
        front = z > near
        all_front = bool(front.all())
        # Vertex pixels; the cameras here have no skew, so u depends on x / z only. Vertices
        # at or behind the camera (a body behind a face close-up's camera) divide by zero:
        # they are never used (``front`` selects), so their inf / nan stays silent.
        with np.errstate(divide="ignore", invalid="ignore"):
            u = v_cam[:, 0] / z * np.float32(K[0, 0]) + np.float32(K[0, 2])
            v = v_cam[:, 1] / z * np.float32(K[1, 1]) + np.float32(K[1, 2])
        for k, ids in enumerate(self._box_vertices):
            if k == 3 and "face68" in self._slices:
                o = self._slices["face68"]
                pts = uv[o : o + 68][k_cam[o : o + 68, 2] > near]
                if len(pts) == 0:
                    continue
                boxes[k] = [*pts.min(0), *pts.max(0)]
            else:
                sel = front if ids is None else ids if all_front else ids[front[ids]]
                if ids is None and all_front:
                    su, sv = u, v
                else:
                    su, sv = u[sel], v[sel]
                if len(su) == 0:
                    continue
                boxes[k] = [su.min(), sv.min(), su.max(), sv.max()]
            pids = self._box_parts[k]
            seen = counts[1:OCCLUDER_PART].sum() if pids is None else counts[pids].sum()
            valid[k] = int(seen >= 4)
        out["boxes"], out["box_valid"] = boxes, valid
        return out
