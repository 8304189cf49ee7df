"""Micro-benchmark of :class:`fullcap.render.Renderer`.

Run with ``python -m fullcap.render.bench``. Renders a bumpy UV sphere with 13,826 vertices and
27,648 triangles (about the size of a body mesh), re-posed every frame so vertex upload and
normal computation are included, and prints the mean milliseconds per frame.
"""

from __future__ import annotations

import time

import numpy as np

from fullcap.render.camera import intrinsics
from fullcap.render.gl import Renderer


def uv_sphere(
    n_lat: int = 109, n_lon: int = 128, noise: float = 0.03, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-radius UV sphere, radially perturbed by ``noise`` (relative std), faces
    counter-clockwise seen from outside.

    Returns:
        vertices (V, 3) float32 with V = (n_lat - 1) * n_lon + 2, and faces (F, 3) int32 with
        F = 2 * n_lon * (n_lat - 1).
    """
    theta = np.linspace(0, np.pi, n_lat + 1)[1:-1]  # polar angle of the interior rings
    phi = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    ring = np.stack(
        [st * np.cos(phi), st * np.sin(phi), np.broadcast_to(ct, (len(theta), n_lon))], -1
    )
    verts = np.concatenate([[[0, 0, 1]], ring.reshape(-1, 3), [[0, 0, -1]]])
    verts *= 1 + noise * np.random.default_rng(seed).standard_normal((len(verts), 1))
    n_ring = n_lat - 1
    idx = 1 + np.arange(n_ring * n_lon).reshape(n_ring, n_lon)
    nxt = np.roll(idx, -1, axis=1)
    top = np.stack([np.zeros(n_lon, int), idx[0], nxt[0]], 1)
    bottom = np.stack([np.full(n_lon, len(verts) - 1), nxt[-1], idx[-1]], 1)
    a, b, c, d = idx[:-1], nxt[:-1], nxt[1:], idx[1:]
    quads = np.concatenate([np.stack([a, d, c], -1), np.stack([a, c, b], -1)], 1).reshape(-1, 3)
    faces = np.concatenate([top, quads, bottom])
    return verts.astype(np.float32), faces.astype(np.int32)


def _rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float32)


def bench(size: int, frames: int = 50, warmup: int = 5) -> float:
    """Mean wall-clock milliseconds per rendered frame at size x size pixels."""
    verts, faces = uv_sphere()
    K = intrinsics(size, size, 40.0)
    cam_t = np.array([0, 0, 3.0], dtype=np.float32)
    with Renderer(size, size) as r:
        for k in range(warmup):
            r.render(verts @ _rot_y(0.01 * k).T + cam_t, faces, K)
        t0 = time.perf_counter()
        for k in range(frames):
            out = r.render(verts @ _rot_y(0.02 * k).T + cam_t, faces, K)
        dt = time.perf_counter() - t0
    assert out.mask.any()
    return 1000.0 * dt / frames


def main() -> None:
    verts, faces = uv_sphere()
    print(f"mesh: {len(verts)} vertices, {len(faces)} triangles")
    for size in (256, 512):
        print(f"{size}x{size}: {bench(size):.2f} ms/frame (mean of 50 after warm-up)")


if __name__ == "__main__":
    main()
