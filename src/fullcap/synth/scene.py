"""Scene around the person: lighting and shading, procedural backgrounds, occluders and
image degradations. No external data: everything is drawn from random numbers.

Frames: world = model frame (metres, Z up, floor at z = 0); camera = OpenCV (x right, y
down, z forward); pixels with the origin at the top-left corner of the image.

Shading model (per vertex, linear RGB; the renderer only interpolates the result):
``colour = albedo * (max(sum_b sh[b] Y_b(n), 0) + light_rgb * max(n . light_dir, 0))``, with
``Y_b`` the 9 real spherical harmonics up to order 2 (:func:`sh_basis`, constants included)
and ``n`` the unit vertex normal, both in the *camera* frame; then gamma 1/2.2 to sRGB.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch

__all__ = [
    "Lighting",
    "SceneStyle",
    "background",
    "degrade",
    "draw_occluders",
    "irradiance",
    "sample_lighting",
    "sh_basis",
    "sh_to_camera",
    "shade",
    "vertex_normals",
]

BACKGROUNDS = ("gradient", "noise", "clutter", "room", "texture", "studio")


@dataclass(frozen=True)
class SceneStyle:
    """Probabilities and ranges of one source's scenes."""

    background_p: tuple[float, ...] = (0.1, 0.15, 0.3, 0.25, 0.15, 0.05)  # over BACKGROUNDS
    p_bg_blur: float = 0.3  # depth-of-field blur of the background
    p_occluder: float = 0.25
    p_directional: float = 0.75
    ambient: tuple[float, float] = (0.25, 0.75)  # linear irradiance of the SH DC term
    p_motion_blur: float = 0.12
    p_blur: float = 0.15
    p_noise: float = 0.5
    p_downscale: float = 0.1
    jpeg_quality: tuple[int, int] = (55, 95)


# ------------------------------------------------------------------------------ lighting
@dataclass(frozen=True)
class Lighting:
    """Lighting in the world frame (metres, Z up); shared by all views of one subject.

    sh: (9, 3) SH shading coefficients per RGB channel (see the module docstring).
    light_dir: (3,) unit vector from the surface towards the directional light.
    light_rgb: (3,) linear irradiance of the directional light (zeros when there is none).
    """

    sh: np.ndarray
    light_dir: np.ndarray
    light_rgb: np.ndarray


def sh_basis(n: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Real SH basis up to order 2, (..., 3) unit vectors -> (..., 9), torch or numpy.

    Order: Y00, Y1-1 (y), Y10 (z), Y11 (x), Y2-2 (xy), Y2-1 (yz), Y20 (3z^2 - 1), Y21 (xz),
    Y22 (x^2 - y^2), with the usual normalisation constants.
    """
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    one = x * 0 + 1
    cols = [
        0.282095 * one,
        0.488603 * y,
        0.488603 * z,
        0.488603 * x,
        1.092548 * x * y,
        1.092548 * y * z,
        0.315392 * (3 * z * z - 1),
        1.092548 * x * z,
        0.546274 * (x * x - y * y),
    ]
    if isinstance(n, torch.Tensor):
        return torch.stack(cols, dim=-1)
    return np.stack(cols, axis=-1)


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


_DIRS = _fibonacci_sphere(64)
_DIRS_PINV = np.linalg.pinv(sh_basis(_DIRS))


def sh_to_camera(sh_world: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Rotate SH coefficients (9, 3) from the world frame to the camera frame of ``R``
    (world -> camera rotation). Exact: order-2 SH are closed under rotation (fit on 64
    directions)."""
    world_dirs = _DIRS @ R  # row d_cam -> R^T d_cam
    return _DIRS_PINV @ (sh_basis(world_dirs) @ sh_world)


def sample_lighting(rng: np.random.Generator, style: SceneStyle) -> Lighting:
    """Random environment (ambient, sky/ground gradient, a little order-2 detail) and an
    optional directional light, in the world frame."""
    tint = np.clip(1 + rng.normal(0, 0.08, 3), 0.7, 1.3)
    a = rng.uniform(*style.ambient)
    sh = np.zeros((9, 3))
    sh[0] = a * tint / 0.282095
    d = rng.normal(size=3) * 0.6 + np.array([0, 0, 1.0])  # environment mostly lit from above
    d /= np.linalg.norm(d)
    s1 = a * rng.uniform(0.0, 0.6) / 0.488603
    sh[1:4] = s1 * np.array([d[1], d[2], d[0]])[:, None] * (1 + rng.normal(0, 0.05, 3))
    sh[4:] = rng.normal(0, 0.08 * a, (5, 3))
    el = np.radians(rng.uniform(-10, 80))
    az = rng.uniform(0, 2 * np.pi)
    light_dir = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    light_rgb = np.zeros(3)
    if rng.random() < style.p_directional:
        warm = rng.uniform(-0.15, 0.15)
        light_rgb = rng.uniform(0.3, 1.3) * np.array([1 + warm, 1.0, 1 - warm])
    return Lighting(sh=sh, light_dir=light_dir, light_rgb=light_rgb)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals, batched.

    Args:
        verts: (B, V, 3) vertices in any frame; faces: (F, 3) long, counter-clockwise
            around the outward normal.
    Returns:
        (B, V, 3) unit normals in the frame of ``verts`` (zero for unused vertices).
    """
    b, n_v = verts.shape[:2]
    n_f = faces.shape[0]
    vt = verts.permute(1, 0, 2).reshape(n_v, b * 3)  # rows = vertices: fast row gathers
    v0 = vt.index_select(0, faces[:, 0]).view(n_f, b, 3)
    e1 = vt.index_select(0, faces[:, 1]).view(n_f, b, 3) - v0
    e2 = vt.index_select(0, faces[:, 2]).view(n_f, b, 3) - v0
    fn = torch.linalg.cross(e1, e2).reshape(n_f, b * 3)  # twice the area times the normal
    out = verts.new_zeros(n_v, b * 3)
    for k in range(3):
        out.index_add_(0, faces[:, k], fn)
    out = out.view(n_v, b, 3).permute(1, 0, 2)
    return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def irradiance(
    normals: torch.Tensor, sh: torch.Tensor, light_dir: torch.Tensor, light_rgb: torch.Tensor
) -> torch.Tensor:
    """Per-vertex linear irradiance (B, V, 3): SH environment plus the directional light.

    Args:
        normals: (B, V, 3) unit, camera frame; sh: (B, 9, 3) camera-frame SH coefficients;
        light_dir: (B, 3) camera frame, unit, towards the light; light_rgb: (B, 3) linear.
    """
    irr = (sh_basis(normals) @ sh).clamp_min(0.0)
    ndl = (normals @ light_dir[:, :, None]).clamp_min(0.0)  # (B, V, 1)
    return irr + ndl * light_rgb[:, None, :]


def shade(
    albedo: torch.Tensor,
    normals: torch.Tensor,
    sh: torch.Tensor,
    light_dir: torch.Tensor,
    light_rgb: torch.Tensor,
) -> torch.Tensor:
    """Per-vertex shaded sRGB colours (B, V, 3) in [0, 1]: ``(albedo * irradiance)^(1/2.2)``.

    albedo: (B, V, 3) linear RGB; the other arguments as in :func:`irradiance`.
    """
    lin = albedo * irradiance(normals, sh, light_dir, light_rgb)
    return lin.clamp(0.0, 1.0).pow(1 / 2.2)


# ------------------------------------------------------------------------------ backgrounds
def _value_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth noise (h, w) float32 in about [0, 1]: a random grid upsampled cubically."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _fbm(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Fractal value noise (h, w) float32 in about [0, 1]: 4 octaves summed on a small grid
    (cell counts up to 40) and upsampled once."""
    base = int(rng.integers(2, 6))
    n = base * 8 + 1
    out = np.zeros((n, n), np.float32)
    amp, total = 1.0, 0.0
    for o in range(4):
        c = base * 2**o
        g = rng.random((c + 1, c + 1), dtype=np.float32)
        out += amp * cv2.resize(g, (n, n), interpolation=cv2.INTER_LINEAR)
        total += amp
        amp *= rng.uniform(0.4, 0.65)
    return cv2.resize(out / total, (w, h), interpolation=cv2.INTER_CUBIC)


def _palette(rng: np.random.Generator, k: int) -> np.ndarray:
    """k random colours (k, 3) float32 in [0, 255]: mostly muted, sometimes vivid."""
    base = rng.uniform(20, 235, 3)
    cols = base + rng.normal(0, rng.uniform(15, 80), (k, 3))
    grey = cols.mean(1, keepdims=True)
    cols = grey + (cols - grey) * rng.uniform(0.2, 1.2)
    return np.clip(cols, 0, 255).astype(np.float32)


def _frac(x: np.ndarray) -> np.ndarray:
    """Fractional part x - floor(x) (much faster than ``x % 1``)."""
    return x - np.floor(x)


def _lerp_palette(t: np.ndarray, pal: np.ndarray) -> np.ndarray:
    """Map t (h, w) float in [0, 1] through a piecewise-linear palette (k, 3) -> (h, w, 3)
    uint8, with a 256-entry lookup table (t quantised to 1/255)."""
    x = np.linspace(0, len(pal) - 1, 256)
    i = np.minimum(x.astype(np.int32), len(pal) - 2)
    f = (x - i)[:, None]
    lut = np.clip(pal[i] * (1 - f) + pal[i + 1] * f + 0.5, 0, 255).astype(np.uint8)
    q = cv2.convertScaleAbs(np.asarray(t, np.float32), alpha=255.0)  # saturating
    return cv2.LUT(cv2.merge([q, q, q]), lut.reshape(1, 256, 3))


def _modulate(img: np.ndarray, field: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """img (h, w, 3) uint8 times (lo + (hi - lo) * field), field (h, w) in [0, 1]."""
    m = cv2.convertScaleAbs(field, alpha=(hi - lo) * 100.0, beta=lo * 100.0)
    return cv2.multiply(img, cv2.merge([m, m, m]), scale=0.01)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Image-space texture (h, w, 3) uint8: stripes, checks, grid or bricks, rotated."""
    xx, yy = _pixel_grid(h, w)
    a = rng.uniform(0, np.pi)
    ca, sa = np.float32(np.cos(a)), np.float32(np.sin(a))
    per = np.float32(rng.uniform(6, 60))
    u, v = (xx * ca + yy * sa) / per, (yy * ca - xx * sa) / per
    kind = rng.integers(4)
    if kind == 0:
        m = _frac(u) < rng.uniform(0.2, 0.8)
    elif kind == 1:
        m = _frac((np.floor(u) + np.floor(v)) * 0.5) > 0.25
    elif kind == 2:
        lw = rng.uniform(0.05, 0.2)
        m = (_frac(u) < lw) | (_frac(v) < lw)
    else:
        row = np.floor(v)
        m = (_frac(v) < 0.1) | (_frac(u / 2 + _frac(row * 0.5)) < 0.05)
    img = _lerp_palette(m.astype(np.float32), _palette(rng, 2))
    return _modulate(img, _value_noise(rng, h, w, 4), 0.8, 1.2)


def _clutter(rng: np.random.Generator, img: np.ndarray, n: int, scale: float) -> None:
    """Draw n random shapes (dead-leaves style) in place on a uint8 image (h, w, 3)."""
    h, w = img.shape[:2]
    cols = _palette(rng, n)
    for k in range(n):
        col = tuple(float(c) for c in cols[k])
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        r = scale * max(h, w) * rng.uniform(0.03, 0.35)
        kind = rng.integers(5)
        if kind == 0:
            ax = (int(r), int(r * rng.uniform(0.3, 1)))
            cv2.ellipse(img, (int(cx), int(cy)), ax, rng.uniform(0, 180), 0, 360, col, -1)
        elif kind == 1:
            box = ((cx, cy), (r * 2, r * rng.uniform(0.2, 2)), rng.uniform(0, 180))
            cv2.fillPoly(img, [cv2.boxPoints(box).astype(np.int32)], col)
        elif kind == 2:
            k_ = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k_))
            rad = r * rng.uniform(0.4, 1.0, k_)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], col)
        elif kind == 3:
            p2 = (int(cx + rng.normal(0, r * 2)), int(cy + rng.normal(0, r * 2)))
            cv2.line(img, (int(cx), int(cy)), p2, col, int(rng.integers(1, 8)), cv2.LINE_AA)
        else:
            cv2.circle(img, (int(cx), int(cy)), int(r * 0.5), col, -1, cv2.LINE_AA)


@functools.lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates u (h, w) and v (h, w), float32, corner-origin convention."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float32) + np.float32(0.5)
    return u, v


def _room(
    rng: np.random.Generator, h: int, w: int, K: np.ndarray, R: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """Textured floor (plane z = 0) seen through the camera, below a wall; (h, w, 3) uint8."""
    wall = _lerp_palette(_fbm(rng, h, w), _palette(rng, 2))
    if rng.random() < 0.5:
        _clutter(rng, wall, int(rng.integers(3, 15)), 0.6)  # furniture, posters
    u, v = _pixel_grid(h, w)
    A = (R.T @ np.linalg.inv(K)).astype(np.float32)  # pixel (u, v, 1) -> world ray direction
    ray = [A[c, 0] * u + A[c, 1] * v + A[c, 2] for c in range(3)]
    c = (-R.T @ t).astype(np.float32)
    s = -c[2] / np.minimum(ray[2], np.float32(-1e-6))  # distance along the ray to z = 0
    floor = (ray[2] < -1e-6) & (s > 0) & (s < rng.uniform(4, 15))
    if not floor.any():
        return wall
    s = s * floor
    px, py = c[0] + s * ray[0], c[1] + s * ray[1]
    pal = _palette(rng, 2)
    per = np.float32(rng.uniform(0.3, 1.2))
    kind = rng.integers(3)
    if kind == 0:  # tiles
        m = 2 * _frac((np.floor(px / per) + np.floor(py / per)) * 0.5)
        tex = _lerp_palette(m, np.stack([pal[0], pal[0] * 0.8 + pal[1] * 0.2]))
    elif kind == 1:  # planks
        a = rng.uniform(0, np.pi)
        q = (px * np.float32(np.cos(a)) + py * np.float32(np.sin(a))) / (per * np.float32(0.25))
        tex = _lerp_palette(_frac(q) * 0.3 + 1.05 * _frac(np.floor(q) / 3), pal)
    else:  # carpet / concrete
        tex = _lerp_palette(_value_noise(rng, h, w, 24), np.stack([pal[0] * 0.85, pal[0] * 1.15]))
    tex = _modulate(tex, cv2.exp(s * np.float32(-1 / rng.uniform(5, 20))), 0.55, 1.0)  # far: dim
    cv2.copyTo(tex, floor.view(np.uint8), wall)
    return wall


def background(
    rng: np.random.Generator,
    size: tuple[int, int],
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    style: SceneStyle,
    tint: np.ndarray | None = None,
) -> np.ndarray:
    """A procedural background image.

    Args:
        size: (H, W) pixels; K (3, 3), R (3, 3), t (3,): the camera (world -> camera), used
            by the "room" kind to put a floor at z = 0 in perspective.
        tint: optional (3,) RGB gain (the scene lighting's colour) to harmonise with the person.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    h, w = size
    kind = BACKGROUNDS[int(rng.choice(len(BACKGROUNDS), p=_norm(style.background_p)))]
    if kind == "gradient":
        pal = _palette(rng, int(rng.integers(2, 4)))
        a = rng.uniform(0, 2 * np.pi)
        xx, yy = _pixel_grid(h, w)
        g = (xx * np.float32(np.cos(a)) + yy * np.float32(np.sin(a))) / max(h, w) * 0.7 + 0.5
        img = _lerp_palette(g + 0.15 * (_value_noise(rng, h, w, 3) - 0.5), pal)
    elif kind == "noise":
        img = _lerp_palette(_fbm(rng, h, w), _palette(rng, int(rng.integers(2, 5))))
    elif kind == "clutter":
        img = _lerp_palette(_fbm(rng, h, w), _palette(rng, 2))
        _clutter(rng, img, int(rng.integers(10, 60)), 1.0)
    elif kind == "room":
        img = _room(rng, h, w, K, R, t)
    elif kind == "texture":
        img = _texture(rng, h, w)
    else:  # studio: near-uniform grey, slightly tinted, uneven
        grey = rng.uniform(25, 200)
        col = grey * np.clip(1 + rng.normal(0, 0.08, 3), 0.8, 1.2)
        img = _lerp_palette(_value_noise(rng, h, w, 2), np.stack([col * 0.85, col * 1.15]))
    if tint is not None:
        img = cv2.multiply(img, tuple(float(x) for x in (*tint[:3], 0.0)))
    if rng.random() < style.p_bg_blur:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 3.0))
    return img


def draw_occluders(
    rng: np.random.Generator, image: np.ndarray, anchors: np.ndarray, scale: float, n: int
) -> np.ndarray:
    """Draw ``n`` random shapes in place over ``image``, each near a random anchor point.

    Args:
        image: (H, W, 3) uint8 RGB, modified in place.
        anchors: (N, 2) pixel points to put occluders on (e.g. visible keypoints), N >= 1.
        scale: typical size in pixels (e.g. the side of the target's box).
    Returns:
        (H, W) bool mask of the occluded pixels.
    """
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for _ in range(n):
        cx, cy = anchors[rng.integers(len(anchors))] + rng.normal(0, 0.1 * scale, 2)
        r = scale * rng.uniform(0.08, 0.3)
        m = np.zeros((h, w), np.uint8)
        kind = rng.integers(3)
        if kind == 0:
            ax = (max(int(r), 2), max(int(r * rng.uniform(0.4, 1.0)), 2))
            cv2.ellipse(m, (int(cx), int(cy)), ax, rng.uniform(0, 180), 0, 360, 1, -1)
        elif kind == 1:  # a bar or pole crossing the point
            box = (
                (cx, cy),
                (scale * rng.uniform(0.5, 3), r * rng.uniform(0.3, 0.8)),
                rng.uniform(0, 180),
            )
            cv2.fillPoly(m, [cv2.boxPoints(box).astype(np.int32)], 1)
        else:
            k = int(rng.integers(3, 8))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = r * rng.uniform(0.5, 1.3, k)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(m, [pts], 1)
        col = _palette(rng, 2)
        x0, y0, bw, bh = cv2.boundingRect(m)
        if bw == 0 or bh == 0:
            continue
        if rng.random() < 0.5:  # textured
            tex = _lerp_palette(_value_noise(rng, bh, bw, 3), col)
        else:
            tex = np.empty((bh, bw, 3), np.uint8)
            tex[:] = col[0].astype(np.uint8)
        cv2.copyTo(tex, m[y0 : y0 + bh, x0 : x0 + bw], image[y0 : y0 + bh, x0 : x0 + bw])
        mask |= m
    return mask.astype(bool)


# ------------------------------------------------------------------------------ degradations
def _gauss_lut() -> np.ndarray:
    q = (torch.arange(256, dtype=torch.float64) + 0.5) / 256
    return (torch.special.erfinv(2 * q - 1) * 2**0.5).numpy().astype(np.float32)


_GAUSS = _gauss_lut()  # standard normal quantiles: noise = _GAUSS[random bytes]


def degrade(rng: np.random.Generator, image: np.ndarray, style: SceneStyle) -> np.ndarray:
    """Camera-like degradations: white balance, exposure, contrast, gamma (one lookup table
    per channel), saturation, resolution loss, defocus or motion blur, sensor noise.
    (H, W, 3) uint8 -> same."""
    h, w = image.shape[:2]
    gain = rng.uniform(0.75, 1.25) * np.clip(1 + rng.normal(0, 0.06, 3), 0.8, 1.2)
    mean = float(np.mean(cv2.mean(image)[:3]))
    x = np.arange(256, dtype=np.float64)[:, None] * gain  # (256, 3)
    x = (x - mean) * rng.uniform(0.75, 1.2) + mean
    x = 255 * (np.clip(x, 0, 255) / 255) ** rng.uniform(0.8, 1.25)
    lut = np.clip(x + 0.5, 0, 255).astype(np.uint8).reshape(1, 256, 3)
    img = cv2.LUT(image, lut)
    sat = rng.uniform(0.6, 1.3)
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    img = cv2.addWeighted(img, sat, grey, 1 - sat, 0)
    if rng.random() < style.p_downscale:
        f = rng.uniform(0.35, 0.8)
        small = cv2.resize(
            img, (max(int(w * f), 8), max(int(h * f), 8)), interpolation=cv2.INTER_AREA
        )
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < style.p_motion_blur:
        k = int(rng.integers(3, 12))
        kern = np.zeros((k, k), np.float32)
        kern[k // 2] = 1.0 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(0, 180), 1.0)
        kern = cv2.warpAffine(kern, rot, (k, k))
        img = cv2.filter2D(img, -1, kern / max(kern.sum(), 1e-6))
    elif rng.random() < style.p_blur:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.3))
    if rng.random() < style.p_noise:
        sigma = rng.uniform(1.0, 6.0) if rng.random() < 0.9 else rng.uniform(6, 14)
        lut16 = np.round(sigma * _GAUSS).astype(np.int16)
        if rng.random() < 0.5:  # luminance-only noise
            noise = lut16[np.frombuffer(rng.bytes(h * w), np.uint8)].reshape(h, w, 1)
        else:
            noise = lut16[np.frombuffer(rng.bytes(h * w * 3), np.uint8)].reshape(h, w, 3)
        img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return img


def _norm(p: tuple[float, ...]) -> np.ndarray:
    a = np.asarray(p, dtype=np.float64)
    return a / a.sum()
