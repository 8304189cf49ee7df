"""Procedural appearance: per-vertex albedo of skin, clothes, shoes, gloves, hair and eyes.

Everything is painted per vertex on the model's topology (fast, no textures): regions come
from each vertex's dominant skinning bone, garment lengths from parametric coordinates along
the limbs of the *rest* mesh, and patterns (stripes, checks, noise) from rest-mesh 3D
positions, so they stick to the body as it moves. The body mesh has vertices about 1.4 cm
apart (0.4 cm on the head and hands), so patterns use periods of 6 cm and more.

Front and back differ, as on real people, so that an image shows which way a body faces
(the left/right swaps of DetNet come from confusing the two): necklines dip at the front,
prints and button plackets sit on the front of tops, patch pockets on the back of trousers,
and palms are lighter than the backs of the hands. Front and back come from the rest mesh's
vertex normals (the model faces -Y).

Colours are linear RGB in [0, 1] (sRGB values are converted with gamma 2.2); the shading in
:mod:`fullcap.synth.scene` works in linear RGB and converts back to sRGB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.synth.scene import vertex_normals

__all__ = ["REGIONS", "Appearance", "AppearanceModel", "AppearanceStyle", "srgb_to_linear"]

REGIONS = (
    "torso",
    "hips",
    "upperarm",
    "forearm",
    "hand",
    "thigh",
    "shin",
    "foot",
    "neck",
    "head",
    "eye",
)
_R = {name: i for i, name in enumerate(REGIONS)}

# sRGB skin swatches from light to dark (sampled along this curve).
_SKIN = (
    np.array(
        [
            [250, 222, 200],
            [241, 194, 167],
            [234, 189, 150],
            [224, 172, 125],
            [198, 140, 100],
            [170, 112, 78],
            [141, 85, 56],
            [110, 66, 44],
            [86, 52, 36],
            [62, 38, 28],
        ],
        dtype=np.float64,
    )
    / 255.0
)
_HAIR = (
    np.array(
        [
            [20, 16, 14],
            [45, 32, 24],
            [80, 55, 35],
            [120, 85, 55],
            [180, 140, 90],
            [215, 190, 140],
            [140, 60, 30],
            [160, 160, 160],
            [230, 230, 225],
        ],
        dtype=np.float64,
    )
    / 255.0
)
_HAIR_P = np.array([0.3, 0.25, 0.15, 0.08, 0.07, 0.05, 0.04, 0.04, 0.02])
_IRIS = (
    np.array(
        [[60, 38, 24], [100, 66, 40], [70, 100, 60], [70, 110, 150], [110, 140, 170], [40, 30, 25]],
        dtype=np.float64,
    )
    / 255.0
)
_CLOTH = (
    np.array(
        [
            [20, 20, 22],
            [240, 240, 236],
            [128, 128, 130],
            [40, 55, 95],
            [70, 95, 140],
            [190, 175, 140],
            [110, 80, 55],
            [60, 80, 50],
            [150, 30, 35],
            [200, 200, 210],
            [90, 40, 90],
            [30, 90, 90],
        ],
        dtype=np.float64,
    )
    / 255.0
)

SLEEVES = ("none", "short", "elbow", "long")
LEGS = ("shorts", "knee", "capri", "long", "skirt")
PATTERNS = ("solid", "stripes", "checker", "noise", "gradient")


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> linear RGB (gamma 2.2 approximation), same shape."""
    return np.power(np.clip(c, 0.0, 1.0), 2.2)


@dataclass(frozen=True)
class AppearanceStyle:
    """Probabilities and ranges that make one source's people look like that source's."""

    p_top: float = 0.95  # else bare torso
    sleeve_p: tuple[float, ...] = (0.15, 0.4, 0.1, 0.35)  # over SLEEVES
    leg_p: tuple[float, ...] = (0.2, 0.1, 0.1, 0.45, 0.15)  # over LEGS
    pattern_p: tuple[float, ...] = (0.45, 0.2, 0.12, 0.13, 0.1)  # over PATTERNS
    p_shoes: float = 0.85
    p_gloves: float = 0.06
    p_hair: float = 0.85
    p_cap: float = 0.1
    p_saturated: float = 0.3  # garment colour from random HSV instead of the common palette
    skin_range: tuple[float, float] = (0.0, 1.0)  # position along the skin swatch curve
    # Front/back cues (what tells a body seen from the front from one seen from the back):
    p_neckline: float = 0.6  # the top's neckline dips at the front (scoop or V)
    p_print: float = 0.35  # a print or a button placket on the front of the top
    p_pockets: float = 0.4  # patch pockets on the back of the trousers or shorts


@dataclass(frozen=True)
class Appearance:
    """Albedo of one person.

    albedo: (V, 3) float32 linear RGB in [0, 1], per model vertex.
    summary: (5, 3) float32 sRGB colours of skin, top, bottom, hair and iris (zeros if absent).
    codes: (6,) int32: skin tone in 1/1000 of the swatch curve, sleeve (SLEEVES index, -1 no
        top), legs (LEGS index), shoes (0/1), gloves (0/1), hair (0 none, 1 hair, 2 cap).
    """

    albedo: np.ndarray
    summary: np.ndarray
    codes: np.ndarray


def _rand_color(rng: np.random.Generator, saturated: bool) -> np.ndarray:
    """One sRGB garment colour."""
    if not saturated:
        c = _CLOTH[rng.integers(len(_CLOTH))]
        return np.clip(c * rng.uniform(0.85, 1.15) + rng.normal(0, 0.03, 3), 0, 1)
    h, s, v = rng.uniform(0, 6), rng.uniform(0.3, 0.95), rng.uniform(0.25, 0.95)
    k = (np.array([5.0, 3.0, 1.0]) + h) % 6
    return v - v * s * np.clip(np.minimum(k, 4 - k), 0, 1)


def _fourier_noise(
    rng: np.random.Generator, pos: np.ndarray, freq: float, n: int = 6
) -> np.ndarray:
    """Smooth random field (N,) with unit variance on points (N, 3) metres, ``freq`` cycles/m."""
    dirs = rng.normal(size=(n, 3))
    dirs *= (freq * rng.uniform(0.6, 1.4, (n, 1)) * 2 * np.pi) / np.linalg.norm(dirs, axis=1)[
        :, None
    ]
    return np.sin(pos @ dirs.T + rng.uniform(0, 2 * np.pi, n)).sum(1) / np.sqrt(n / 2)


_NOISE_FREQS = (3.0, 8.0, 20.0, 60.0)  # cycles per metre of the precomputed noise bands
_NOISE_FIELDS = 8


class AppearanceModel:
    """Precomputed regions of one body model; :meth:`sample` paints one person.

    Args:
        model: the body model (its rest mesh, skinning weights, parts and bones are read).
    """

    def __init__(self, model: BodyModel):
        pos = model.template_vertices.detach().cpu().double().numpy()  # rest A-pose, metres
        self.pos = pos
        self.num_vertices = len(pos)
        names = model.bone_names
        dom = model.skin_weights.argmax(1).cpu().numpy()
        region = np.array([_bone_region(names[b]) for b in dom])
        parts = model.part_labels.cpu().numpy()
        pn = model.part_names
        region[np.isin(parts, [pn.index("left_hand"), pn.index("right_hand")])] = _R["hand"]
        region[parts == pn.index("eyes")] = _R["eye"]
        region[(parts == pn.index("head")) & (region != _R["neck"])] = _R["head"]
        self.region = region
        self.masks = {name: region == i for name, i in _R.items()}
        bank_rng = np.random.default_rng(1234)  # fixed: the bank belongs to the model
        self._bank = {
            f: np.stack([_fourier_noise(bank_rng, pos, f) for _ in range(_NOISE_FIELDS)]).astype(
                np.float32
            )
            for f in _NOISE_FREQS
        }
        joints = model.joint_template.detach().cpu().double().numpy()

        def j(name: str) -> np.ndarray:
            return joints[names.index(name)]

        side = np.where(pos[:, 0] >= 0, "L", "R")
        self.arm_t = np.zeros(len(pos))
        self.leg_t = np.zeros(len(pos))
        for s in ("L", "R"):
            m = side == s
            self.arm_t[m] = _along(pos[m], j(f"upperarm01.{s}"), j(f"wrist.{s}"))
            self.leg_t[m] = _along(pos[m], j(f"upperleg01.{s}"), j(f"foot.{s}"))
        normals = vertex_normals(torch.from_numpy(pos)[None], model.faces.cpu().long())[0].numpy()
        self.front = normals[:, 1] < -0.35  # the model faces -Y
        self.back = normals[:, 1] > 0.35
        x_mid = np.median(pos[(region == _R["torso"]), 0])
        self.dx_mid = np.abs(pos[:, 0] - x_mid)  # distance from the body's midline plane
        # Palms: hand vertices facing the side the fingers curl to (lighter skin there).
        self.palm = np.zeros(len(pos), dtype=bool)
        for s in ("L", "R"):
            along = j(f"finger3-1.{s}") - j(f"wrist.{s}")
            across = j(f"finger2-1.{s}") - j(f"finger5-1.{s}")
            n = np.cross(along, across)
            tip = j(f"finger3-3.{s}") - j(f"finger3-1.{s}")
            n *= np.sign(tip @ n) / np.linalg.norm(n)
            self.palm |= (region == _R["hand"]) & (side == s) & (normals @ n > 0.3)
        self.z_pelvis = j("upperleg01.L")[2]
        self.z_neck = j("neck01")[2]
        eye_c = {s: pos[(region == _R["eye"]) & (side == s)].mean(0) for s in ("L", "R")}
        self.eye_mid = (eye_c["L"] + eye_c["R"]) / 2
        # Iris and pupil: eyeball vertices facing forward (-Y) from the eyeball centre.
        cosang = np.zeros(len(pos))
        for s in ("L", "R"):
            m = (region == _R["eye"]) & (side == s)
            d = pos[m] - eye_c[s]
            cosang[m] = -d[:, 1] / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
        self.iris = (region == _R["eye"]) & (cosang > np.cos(np.radians(28)))
        self.pupil = (region == _R["eye"]) & (cosang > np.cos(np.radians(12)))
        self._face_features(pos, region)

    def _face_features(self, pos: np.ndarray, region: np.ndarray) -> None:
        """Lip and brow masks from rest-mesh geometry around the eyes (no landmarks needed)."""
        rel = pos - self.eye_mid
        head = region == _R["head"]
        front = head & (rel[:, 1] < 0.03)  # in front of the eyeball centres
        # Lips: the frontmost head vertices 5.5-8 cm below the eyes, within 2.6 cm of the midline.
        band = front & (np.abs(rel[:, 0]) < 0.026) & (rel[:, 2] < -0.055) & (rel[:, 2] > -0.085)
        lips = np.zeros(len(pos), dtype=bool)
        if band.any():
            y_front = np.percentile(rel[band, 1], 5)
            mouth_z = rel[band][np.argmin(rel[band, 1]), 2]
            ell = (rel[:, 0] / 0.022) ** 2 + ((rel[:, 2] - mouth_z) / 0.0095) ** 2
            lips = band & (ell < 1) & (rel[:, 1] < y_front + 0.012)
        self.lips = lips
        # Brows: 1.3-2.3 cm above the eye centres, 0.5-4.5 cm off the midline, on the front.
        ax = np.abs(rel[:, 0])
        self.brows = front & (ax > 0.006) & (ax < 0.047) & (rel[:, 2] > 0.013) & (rel[:, 2] < 0.023)
        self.brows &= rel[:, 1] < np.percentile(rel[front, 1], 40)
        self.head_rel = rel

    def _noise(self, rng: np.random.Generator, freq: float, m: np.ndarray | None = None):
        """Unit-variance smooth random field on all vertices or on mask ``m``: a random mix of
        the precomputed fields of band ``freq`` (one of ``_NOISE_FREQS``)."""
        w = (rng.normal(size=_NOISE_FIELDS) / np.sqrt(_NOISE_FIELDS)).astype(np.float32)
        bank = self._bank[freq] if m is None else self._bank[freq][:, m]
        return w @ bank

    def sample(self, rng: np.random.Generator, style: AppearanceStyle | None = None) -> Appearance:
        """Paint one person; deterministic given ``rng``."""
        st = style or AppearanceStyle()
        pos, M = self.pos, self.masks
        summary = np.zeros((5, 3))
        # ---- skin
        tone = rng.uniform(*st.skin_range)
        x = tone * (len(_SKIN) - 1)
        i0 = min(int(x), len(_SKIN) - 2)
        skin = _SKIN[i0] * (1 - (x - i0)) + _SKIN[i0 + 1] * (x - i0)
        skin = np.clip(skin * rng.uniform(0.93, 1.07) + rng.normal(0, 0.015, 3), 0, 1)
        summary[0] = skin
        lin = srgb_to_linear(skin)
        albedo = np.empty((len(pos), 3), np.float32)
        albedo[:] = lin
        albedo *= (1 + 0.06 * self._noise(rng, 3.0))[:, None]  # blotchiness
        # Palms carry less pigment than the backs of the hands, more so on darker skin.
        palm = np.maximum(srgb_to_linear(_SKIN[0]), lin)
        albedo[self.palm] = lin + (palm - lin) * rng.uniform(0.3, 0.7)
        redness = np.array([1.04, 0.96, 0.95])
        albedo[self.lips] *= redness * rng.uniform(0.6, 0.8)
        albedo[self.brows] *= rng.uniform(0.25, 0.6)
        # ---- eyes
        iris = _IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.2)
        summary[4] = np.clip(iris, 0, 1)
        eye = self.masks["eye"]
        albedo[eye] = srgb_to_linear(np.array([0.9, 0.88, 0.85]) * rng.uniform(0.85, 1.0))
        albedo[self.iris] = srgb_to_linear(np.clip(iris, 0, 1))
        albedo[self.pupil] = 0.003
        # ---- hair or cap
        hair_code = 0
        rel = self.head_rel
        scalp_z = 0.045 - 0.9 * np.clip(rel[:, 1] + 0.02, 0, None)  # hairline drops to the back
        if rng.random() < st.p_cap:
            hair_code = 2
            cap = self.masks["head"] & (rel[:, 2] > 0.035 + rng.uniform(0, 0.015))
            col = _rand_color(rng, rng.random() < 0.5)
            albedo[cap] = srgb_to_linear(col) * (1 + 0.05 * self._noise(rng, 20.0, cap))[:, None]
            summary[3] = col
        elif rng.random() < st.p_hair:
            hair_code = 1
            col = _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] * rng.uniform(0.85, 1.15)
            col = np.clip(col, 0, 1)
            drop = rng.uniform(0.0, 0.06)  # longer hair reaches lower at the back
            m = self.masks["head"] & (rel[:, 2] > scalp_z - drop * (rel[:, 1] > 0.0))
            m &= (rel[:, 2] > 0.035) | (rel[:, 1] > 0.02)
            albedo[m] = srgb_to_linear(col) * (1 + 0.12 * self._noise(rng, 60.0, m))[:, None]
            summary[3] = col
        # ---- clothes
        codes = np.zeros(6, dtype=np.int32)
        codes[0] = round(tone * 1000)
        codes[5] = hair_code
        top_mask = np.zeros(len(pos), dtype=bool)
        codes[1] = -1
        if rng.random() < st.p_top:
            sleeve = int(rng.choice(len(SLEEVES), p=_norm(st.sleeve_p)))
            codes[1] = sleeve
            t_len = (-1.0, rng.uniform(0.2, 0.35), rng.uniform(0.45, 0.6), rng.uniform(0.9, 1.0))
            neck_z = self.z_neck - rng.uniform(0.01, 0.08)
            hem_z = self.z_pelvis + rng.uniform(-0.08, 0.12)
            torso = (M["torso"] | M["hips"]) & (pos[:, 2] < neck_z)
            if rng.random() < st.p_neckline:  # scoop or V at the front
                dip = rng.uniform(0.04, 0.14)
                v = rng.random() < 0.5
                dx = self.dx_mid / rng.uniform(0.06, 0.11)
                depth = dip * np.clip(1 - dx, 0, 1) ** (1.0 if v else 0.5)
                torso &= ~(self.front & (pos[:, 2] > neck_z - depth))
            torso &= pos[:, 2] > hem_z
            arms = (M["upperarm"] | M["forearm"]) & (self.arm_t < t_len[sleeve])
            top_mask = torso | arms
            if sleeve == 0:  # no sleeves: free the shoulder cap
                top_mask &= ~M["upperarm"]
        leg = int(rng.choice(len(LEGS), p=_norm(st.leg_p)))
        codes[2] = leg
        l_len = (
            rng.uniform(0.25, 0.4),
            rng.uniform(0.5, 0.6),
            rng.uniform(0.7, 0.8),
            1.05,
            rng.uniform(0.3, 0.6),
        )[leg]
        waist_z = self.z_pelvis + rng.uniform(0.03, 0.15)
        legs = (M["hips"] | M["thigh"] | M["shin"]) & (self.leg_t < l_len)
        bottom_mask = legs | ((M["torso"] | M["hips"]) & (pos[:, 2] < waist_z))
        tucked = rng.random() < 0.3
        garments = [("top", top_mask & ~(bottom_mask & tucked)), ("bottom", bottom_mask)]
        if codes[1] >= 0 and leg != 4 and rng.random() < 0.08:  # one-piece: same cloth
            garments = [("dress", top_mask | bottom_mask)]
        for name, m in garments:
            if not m.any():
                continue
            col = self._paint_garment(rng, albedo, m, st)
            if name in ("top", "dress") and rng.random() < st.p_print:
                self._paint_front(rng, albedo, m & M["torso"], col)
            if name == "bottom" and leg != 4 and rng.random() < st.p_pockets:
                self._paint_pockets(rng, albedo, m & M["hips"], col)
            if name in ("top", "dress"):
                summary[1] = col
            if name in ("bottom", "dress"):
                summary[2] = col
        if rng.random() < st.p_shoes:
            codes[3] = 1
            m = M["foot"] | (M["shin"] & (self.leg_t > 0.97))
            col = _rand_color(rng, rng.random() < 0.2) * (0.5 if rng.random() < 0.5 else 1.0)
            albedo[m] = srgb_to_linear(col)
            sole = m & (pos[:, 2] < pos[m, 2].min() + 0.015)
            albedo[sole] = srgb_to_linear(np.full(3, rng.uniform(0.05, 0.9)))
        if rng.random() < st.p_gloves:
            codes[4] = 1
            m = M["hand"] | (M["forearm"] & (self.arm_t > 0.95))
            albedo[m] = srgb_to_linear(_rand_color(rng, rng.random() < 0.5))
        return Appearance(
            albedo=np.clip(albedo, 0.0, 1.0).astype(np.float32),
            summary=summary.astype(np.float32),
            codes=codes,
        )

    def _paint_garment(
        self, rng: np.random.Generator, albedo: np.ndarray, m: np.ndarray, st: AppearanceStyle
    ) -> np.ndarray:
        """Fill ``albedo[m]`` with a solid colour or a pattern; return the main sRGB colour."""
        c1 = _rand_color(rng, rng.random() < st.p_saturated)
        c2 = _rand_color(rng, rng.random() < 0.5)
        p = self.pos[m]
        kind = PATTERNS[int(rng.choice(len(PATTERNS), p=_norm(st.pattern_p)))]
        if kind == "solid":
            w = np.zeros(len(p))
        elif kind == "stripes":
            d = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.15, 3)
            if rng.random() < 0.25:
                d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            ph = (p @ d) / rng.uniform(0.06, 0.2) + rng.uniform()
            w = ((ph % 1.0) < rng.uniform(0.3, 0.7)).astype(np.float64)
        elif kind == "checker":
            per = rng.uniform(0.06, 0.16)
            a = rng.uniform(0, np.pi)
            u = (p[:, 0] * np.cos(a) + p[:, 1] * np.sin(a)) / per
            w = ((np.floor(u) + np.floor(p[:, 2] / per)) % 2).astype(np.float64)
        elif kind == "noise":
            n = self._noise(rng, 8.0, m)
            w = np.clip((n - rng.uniform(-0.3, 0.3)) * rng.uniform(1.5, 6) + 0.5, 0, 1)
        else:  # gradient along the body axis
            z = p[:, 2]
            w = (z - z.min()) / max(np.ptp(z), 1e-6)
        col = (1 - w)[:, None] * srgb_to_linear(c1) + w[:, None] * srgb_to_linear(c2)
        folds = 1 + 0.1 * self._noise(rng, 8.0, m)  # creases and wear
        albedo[m] = col * folds[:, None]
        return c1

    def _paint_front(self, rng: np.random.Generator, albedo: np.ndarray, m: np.ndarray, col):
        """A print on the chest, or a button placket down the middle, on the front only."""
        m = m & self.front
        if not m.any():
            return
        p, dx = self.pos, self.dx_mid
        if rng.random() < 0.6:  # print: a rectangle or an ellipse on the chest
            zc = self.z_neck - rng.uniform(0.12, 0.2)
            hw, hh = rng.uniform(0.04, 0.1), rng.uniform(0.03, 0.08)
            if rng.random() < 0.5:
                inside = (dx < hw) & (np.abs(p[:, 2] - zc) < hh)
            else:
                inside = (dx / hw) ** 2 + ((p[:, 2] - zc) / hh) ** 2 < 1
            ink = _rand_color(rng, True) if rng.random() < 0.7 else 1.0 - np.asarray(col)
        else:  # placket: a narrow strip down the front
            inside = dx < rng.uniform(0.01, 0.02)
            ink = np.clip(np.asarray(col) * rng.uniform(0.3, 0.6), 0, 1)
        albedo[m & inside] = srgb_to_linear(np.asarray(ink))

    def _paint_pockets(self, rng: np.random.Generator, albedo: np.ndarray, m: np.ndarray, col):
        """Two patch pockets on the seat, a shade off the cloth, on the back only."""
        m = m & self.back
        if not m.any():
            return
        p, dx = self.pos, self.dx_mid
        z_top = self.z_pelvis + rng.uniform(0.0, 0.05)
        h = rng.uniform(0.08, 0.13)
        inside = (p[:, 2] < z_top) & (p[:, 2] > z_top - h) & (dx > 0.03) & (dx < 0.13)
        shade = np.clip(np.asarray(col) * rng.uniform(0.5, 0.8), 0, 1)
        albedo[m & inside] = srgb_to_linear(shade)

    def albedo_tensor(self, appearances: list[Appearance]) -> torch.Tensor:
        """Stack albedos to (B, V, 3) float32 torch (linear RGB)."""
        return torch.from_numpy(np.stack([a.albedo for a in appearances]))


def _norm(p: tuple[float, ...]) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    return a / a.sum()


def _along(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Parametric coordinate of points (N, 3) on the segment a -> b (0 at a, 1 at b)."""
    d = b - a
    return (p - a) @ d / float(d @ d)


def _bone_region(bone: str) -> int:
    """Clothing region index (REGIONS) of a bone name of the body model."""
    b = bone.split(".")[0]
    if b.startswith(("spine", "clavicle", "shoulder01")) or b == "root":
        return _R["torso"]
    if b == "pelvis":
        return _R["hips"]
    if b.startswith("upperarm"):
        return _R["upperarm"]
    if b.startswith("lowerarm"):
        return _R["forearm"]
    if b.startswith(("wrist", "finger", "metacarpal")):
        return _R["hand"]
    if b.startswith("upperleg"):
        return _R["thigh"]
    if b.startswith("lowerleg"):
        return _R["shin"]
    if b.startswith(("foot", "toe")):
        return _R["foot"]
    if b.startswith("neck"):
        return _R["neck"]
    if b == "eye":
        return _R["eye"]
    return _R["head"]
