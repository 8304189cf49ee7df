"""Tests for fullcap.render: analytic checks of projection, depth, triangle ids and drawing."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from fullcap.render import (
    Renderer,
    RenderUnavailable,
    contact_sheet,
    draw_keypoints,
    draw_labels,
    intrinsics,
    orbit_camera,
)
from fullcap.render import gl as render_gl
from fullcap.render.bench import uv_sphere

W, H = 160, 120
# Non-square pixels and an off-centre principal point catch swapped / mirrored conventions.
K = np.array([[100.0, 0.0, 77.0], [0.0, 120.0, 51.0], [0.0, 0.0, 1.0]])

# Square at z = 2 m: x in [-0.4, 0.6], y in [-0.3, 0.5] -> u in [57, 107], v in [33, 81].
SQUARE = np.array([[-0.4, -0.3, 2.0], [0.6, -0.3, 2.0], [0.6, 0.5, 2.0], [-0.4, 0.5, 2.0]])
SQUARE_FACES = np.array([[0, 2, 1], [0, 3, 2]])  # counter-clockwise around -z (faces camera)


def cube(center: tuple[float, float, float], side: float) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned cube, 8 vertices, 12 triangles wound counter-clockwise seen from outside."""
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    verts = np.asarray(center) + 0.5 * side * corners
    faces = []
    for axis in range(3):
        for sign in (-1, 1):
            idx = [i for i, c in enumerate(corners) if c[axis] == sign]
            a, b, c, d = sorted(idx, key=lambda i: np.arctan2(*_in_plane(corners[i], axis)))
            tris = [[a, b, c], [a, c, d]]
            normal = np.zeros(3)
            normal[axis] = sign
            for t in tris:
                n = np.cross(corners[t[1]] - corners[t[0]], corners[t[2]] - corners[t[0]])
                faces.append(t if n @ normal > 0 else t[::-1])
    return verts, np.array(faces)


def _in_plane(p: np.ndarray, axis: int) -> tuple[float, float]:
    u, v = [k for k in range(3) if k != axis]
    return p[v], p[u]


@pytest.fixture(scope="module")
def renderer():
    try:
        r = Renderer(W, H)
    except RenderUnavailable as exc:
        if os.environ.get("CI"):  # CI installs EGL: a missing renderer is a failure there
            raise
        pytest.skip(f"no headless GL: {exc}")
    yield r
    r.release()


def pixel_centres() -> tuple[np.ndarray, np.ndarray]:
    jj, ii = np.mgrid[0:H, 0:W]
    return ii + 0.5, jj + 0.5


# ------------------------------------------------------------------ renderer
def test_square_mask_depth_and_triangle_ids(renderer):
    out = renderer.render(SQUARE, SQUARE_FACES, K)
    u, v = pixel_centres()
    expected = (u > 57) & (u < 107) & (v > 33) & (v < 81)
    np.testing.assert_array_equal(out.mask, expected)
    np.testing.assert_allclose(out.depth[expected], 2.0, atol=1e-4)
    assert np.all(np.isinf(out.depth[~expected]))
    assert np.all(out.triangle_id[~expected] == -1)
    # Diagonal from vertex 0 (57, 33) to vertex 2 (107, 81): triangle 0 lies above-right of it.
    side = (u - 57) * (81 - 33) - (v - 33) * (107 - 57)
    clear = expected & (np.abs(side) / np.hypot(48, 50) > 0.05)
    np.testing.assert_array_equal(out.triangle_id[clear], np.where(side[clear] > 0, 0, 1))
    assert out.rgb.shape == (H, W, 3) and out.rgb.dtype == np.uint8
    assert out.depth.dtype == np.float32 and out.triangle_id.dtype == np.int32


def test_tilted_plane_depth_is_exact(renderer):
    verts = SQUARE.copy()
    verts[:, 2] = 2.0 + 0.5 * verts[:, 0] + 0.3 * verts[:, 1]  # planar, depth varies over image
    out = renderer.render(verts, SQUARE_FACES, K)
    jj, ii = np.nonzero(out.mask)
    assert len(ii) > 1000
    n = np.cross(verts[1] - verts[0], verts[2] - verts[0])
    rays = np.stack(
        [(ii + 0.5 - K[0, 2]) / K[0, 0], (jj + 0.5 - K[1, 2]) / K[1, 1], np.ones(len(ii))]
    )
    z_true = (n @ verts[0]) / (n @ rays)
    np.testing.assert_allclose(out.depth[jj, ii], z_true, atol=1e-4)
    assert np.ptp(z_true) > 0.2


@pytest.mark.parametrize("point", [(0.31, -0.17, 2.7), (-0.52, 0.26, 1.9)])
def test_point_projects_to_analytic_pixel(renderer, point):
    p = np.asarray(point)
    ang = np.radians([90.0, 210.0, 330.0])
    r = 12.0 * p[2] / K[0, 0]  # ~12 px circumradius in u
    verts = p + r * np.stack([np.cos(ang), np.sin(ang), np.zeros(3)], 1)
    out = renderer.render(verts, [[0, 1, 2]], K)
    jj, ii = np.nonzero(out.mask)
    assert len(ii) > 50
    u_true = K[0, 0] * p[0] / p[2] + K[0, 2]
    v_true = K[1, 1] * p[1] / p[2] + K[1, 2]
    assert abs(ii.mean() + 0.5 - u_true) < 0.15
    assert abs(jj.mean() + 0.5 - v_true) < 0.15


def test_image_row_zero_is_top(renderer):
    verts = np.array([[0.1, -0.4, 2.0], [0.5, -0.4, 2.0], [0.3, -0.2, 2.0]])  # x > 0, y < 0
    out = renderer.render(verts, [[0, 1, 2]], K)
    jj, ii = np.nonzero(out.mask)
    assert len(jj) > 0
    assert jj.max() < K[1, 2] and ii.min() > K[0, 2]  # above and right of the principal point


def test_cube_depth_and_back_face_culling(renderer):
    verts, faces = cube((0.1, 0.05, 4.0), 1.0)
    centre = (int(K[1, 2] + 120 * 0.05 / 4.0), int(K[0, 2] + 100 * 0.1 / 4.0))
    front = [k for k, f in enumerate(faces) if np.all(verts[f, 2] == 3.5)]
    for cull in (False, True):
        out = renderer.render(verts, faces, K, cull_back=cull)
        assert out.depth[centre] == pytest.approx(3.5, abs=1e-4)
        assert out.triangle_id[centre] in front
    # Inverted winding: culling now removes the near faces and exposes the far ones (z = 4.5).
    out = renderer.render(verts, faces[:, ::-1], K, cull_back=True)
    assert out.depth[centre] == pytest.approx(4.5, abs=1e-4)
    assert np.all(verts[faces[out.triangle_id[centre]], 2] == 4.5)


def test_shading_and_vertex_colors(renderer):
    c = (60, 80)
    lit = renderer.render(SQUARE, SQUARE_FACES, K, light_dir=(0, 0, -1), ambient=0.35)
    dark = renderer.render(SQUARE, SQUARE_FACES, K, light_dir=(0, 0, 1), ambient=0.35)
    np.testing.assert_allclose(lit.rgb[c], 0.8 * 255, atol=1.5)  # default grey, fully lit
    np.testing.assert_allclose(dark.rgb[c], 0.35 * 0.8 * 255, atol=1.5)  # ambient only
    default = renderer.render(SQUARE, SQUARE_FACES, K)  # light above-right of the camera
    assert dark.rgb[c][0] < default.rgb[c][0] < lit.rgb[c][0]
    red = np.tile([1.0, 0.0, 0.0], (4, 1))
    out = renderer.render(SQUARE, SQUARE_FACES, K, vertex_colors=red, light_dir=(0, 0, -1))
    np.testing.assert_array_equal(out.rgb[c], [255, 0, 0])
    out8 = renderer.render(SQUARE, SQUARE_FACES, K, vertex_colors=(red * 255).astype(np.uint8))
    assert out8.rgb[c][0] > 0 and out8.rgb[c][1] == 0


def test_back_faces_are_lit_like_front_faces(renderer):
    front = renderer.render(SQUARE, SQUARE_FACES, K)
    back = renderer.render(SQUARE, SQUARE_FACES[:, ::-1], K)
    np.testing.assert_array_equal(front.mask, back.mask)
    np.testing.assert_array_equal(front.rgb, back.rgb)


def test_smooth_sphere_shading_matches_lambert(renderer):
    verts, faces = uv_sphere(n_lat=64, n_lon=96, noise=0.0)
    center = np.array([0.1, 0.0, 4.0])
    out = renderer.render(verts + center, faces, K, light_dir=(0.0, 0.0, -1.0), ambient=0.2)
    jj, ii = np.nonzero(out.mask)
    rays = np.stack(
        [(ii + 0.5 - K[0, 2]) / K[0, 0], (jj + 0.5 - K[1, 2]) / K[1, 1], np.ones(len(ii))]
    )
    rays /= np.linalg.norm(rays, axis=0)
    b = rays.T @ center  # ray-sphere intersection (unit radius)
    s = b - np.sqrt(np.maximum(b**2 - center @ center + 1.0, 0.0))
    normal_z = s * rays[2] - center[2]
    expected = 0.8 * 255 * (0.2 + 0.8 * np.maximum(-normal_z, 0.0))
    err = np.abs(out.rgb[jj, ii, 0] - expected)
    assert np.median(err) < 1.5 and np.percentile(err, 95) < 6


def test_background_compositing(renderer):
    bg = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    out = renderer.render(SQUARE, SQUARE_FACES, K, background=bg, light_dir=(0, 0, -1))
    np.testing.assert_array_equal(out.rgb[~out.mask], bg[~out.mask])
    np.testing.assert_array_equal(out.rgb[out.mask], np.full((out.mask.sum(), 3), 204))
    plain = renderer.render(SQUARE, SQUARE_FACES, K)
    assert np.all(plain.rgb[~plain.mask] == 0)


def test_mesh_changes_between_calls(renderer):
    verts, faces = cube((0.0, 0.0, 4.0), 1.0)
    renderer.render(verts, faces, K)
    out = renderer.render(SQUARE, SQUARE_FACES[1:], K)  # fewer vertices and faces
    assert set(np.unique(out.triangle_id)) == {-1, 0}
    u, v = pixel_centres()
    assert out.mask[(u > 58) & (v > 34) & (v < 80) & ((u - 57) * 48 < (v - 33) * 50 - 60)].all()
    shifted = SQUARE + np.array([0.0, 0.0, 1.0])  # same faces, new vertex data
    out = renderer.render(shifted, SQUARE_FACES, K)
    np.testing.assert_allclose(out.depth[out.mask], 3.0, atol=1e-4)
    out = renderer.render(SQUARE, np.zeros((0, 3), int), K)  # nothing to draw
    assert not out.mask.any() and np.all(np.isinf(out.depth))


def test_torch_inputs(renderer):
    import torch

    a = renderer.render(torch.tensor(SQUARE), torch.tensor(SQUARE_FACES), torch.tensor(K))
    b = renderer.render(SQUARE, SQUARE_FACES, K)
    np.testing.assert_array_equal(a.triangle_id, b.triangle_id)
    np.testing.assert_array_equal(a.depth, b.depth)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vertices": np.zeros((10, 2))}, r"vertices must have shape \(V, 3\), got \(10, 2\)"),
        ({"faces": np.zeros((2, 4), int)}, r"faces must have shape \(F, 3\), got \(2, 4\)"),
        ({"faces": [[0, 1, 7]]}, r"faces index vertex 7 but vertices has 4"),
        ({"faces": [[0, 1, -2]]}, r"faces must contain non-negative"),
        ({"faces": [[0.0, 1.0, 2.0]]}, r"faces must hold integer"),
        ({"K": np.eye(4)}, r"K must have shape \(3, 3\)"),
        ({"vertex_colors": np.ones((3, 3))}, r"vertex_colors must have shape \(V, 3\)"),
        ({"background": np.zeros((H, W), np.uint8)}, r"background must have shape \(H, W, 3\)"),
        ({"light_dir": (0, 1)}, r"light_dir must have shape \(3,\)"),
        ({"ambient": 1.5}, r"ambient must be in \[0, 1\]"),
    ],
)
def test_bad_inputs_raise_value_error(renderer, kwargs, message):
    args = {"vertices": SQUARE, "faces": SQUARE_FACES, "K": K} | kwargs
    with pytest.raises(ValueError, match=message):
        renderer.render(**args)


def _no_egl(**kwargs):
    raise Exception("eglGetDisplay failed")


@pytest.mark.parametrize("cause", ["no-moderngl", "no-egl"])
def test_render_unavailable_explains_fix(monkeypatch, cause):
    if cause == "no-moderngl":
        monkeypatch.setitem(sys.modules, "moderngl", None)  # makes `import moderngl` fail
    else:
        import moderngl  # [render] extra, installed by `make test`

        monkeypatch.setattr(moderngl, "create_standalone_context", _no_egl)
    with pytest.raises(RenderUnavailable) as info:
        render_gl._create_context()
    msg = str(info.value)
    assert "pip install 'fullcap[render]'" in msg
    assert all(p in msg for p in ("libegl1", "libgl1", "libegl-mesa0", "libgl1-mesa-dri"))
    assert issubclass(RenderUnavailable, RuntimeError)


# ------------------------------------------------------------------ cameras
@pytest.mark.parametrize(("az", "el"), [(0, 0), (35, 20), (-120, -40), (200, 70)])
def test_orbit_camera_geometry(az, el):
    center, dist = np.array([0.3, -0.2, 1.1]), 2.5
    R, t = orbit_camera(center, dist, az, el)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R @ center + t, [0, 0, dist], atol=1e-12)
    up_cam = R @ np.array([0.0, 0.0, 1.0])
    assert up_cam[1] < -1e-3 and abs(up_cam[0]) < 1e-12  # image up, no roll
    cam_pos = -R.T @ t
    a, e = np.radians(az), np.radians(el)
    expected = center + dist * np.array([np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])
    np.testing.assert_allclose(cam_pos, expected, atol=1e-12)


def test_orbit_camera_front_view_and_y_up():
    R, t = orbit_camera((0, 0, 0), 3.0, 0.0, 0.0)
    np.testing.assert_allclose(-R.T @ t, [0, -3, 0], atol=1e-12)  # on the -Y side
    np.testing.assert_allclose(R[0], [1, 0, 0], atol=1e-12)  # world +X is image right
    R, t = orbit_camera((0, 0, 0), 3.0, 0.0, 0.0, world_up=(0, 1, 0))
    assert (R @ [0, 1, 0])[1] == pytest.approx(-1.0)
    np.testing.assert_allclose(-R.T @ t, [0, 0, 3], atol=1e-12)  # looks towards -Z


def test_intrinsics():
    Km = intrinsics(640, 480, 60.0)
    np.testing.assert_allclose(Km[[0, 1], [2, 2]], [320, 240])
    assert Km[0, 0] == Km[1, 1] == pytest.approx(240 / np.tan(np.radians(30)))
    # a point on the top edge of the vertical field of view lands on row boundary v = 0
    y = -np.tan(np.radians(30))
    assert Km[1, 1] * y + Km[1, 2] == pytest.approx(0.0)


# ------------------------------------------------------------------ drawing
def _centroid(img: np.ndarray, channel: int) -> tuple[float, float]:
    w = img[..., channel].astype(float)
    jj, ii = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return (w * ii).sum() / w.sum() + 0.5, (w * jj).sum() / w.sum() + 0.5


def test_draw_keypoints_subpixel_and_copy():
    img = np.zeros((40, 50, 3), np.uint8)
    uv = np.array([[20.25, 14.75]])
    out = draw_keypoints(img, uv, radius=4)
    assert not img.any()  # input untouched
    cu, cv = _centroid(out, 1)
    assert abs(cu - 20.25) < 0.1 and abs(cv - 14.75) < 0.1
    assert out[14, 20, 1] == 255 and out[..., [0, 2]].max() == 0


def test_draw_keypoints_hollow_edges_and_colors():
    img = np.zeros((40, 60, 3), np.uint8)
    uv = np.array([[10.5, 20.5], [50.5, 20.5], [np.nan, 3.0]])
    out = draw_keypoints(img, uv, edges=[(0, 1), (1, 2)], visible=[True, False, True], radius=6,
                         thickness=1, color=[(255, 0, 0), (0, 0, 255), (0, 255, 0)])  # fmt: skip
    assert tuple(out[20, 10]) == (255, 0, 0)  # filled, visible
    assert out[20, 50, 2] == 0  # hollow centre (only the red edge reaches it)
    assert out[20, 56, 2] > 100  # ring of the hollow point
    assert out[20, 30, 0] > 100  # edge 0-1 takes colour of point 0
    assert out[..., 1].max() == 0  # NaN point and its edge skipped
    with pytest.raises(ValueError, match="uv must have shape"):
        draw_keypoints(img, np.zeros((3, 3)))


def test_draw_labels():
    img = np.zeros((40, 80, 3), np.uint8)
    out = draw_labels(img, np.array([[10.5, 30.5]]), ["hip"])
    assert not img.any()
    jj, ii = np.nonzero(out.max(axis=2) > 128)
    assert len(ii) > 5
    assert ii.min() >= 10 and jj.max() <= 30  # text right of and above the anchor
    with pytest.raises(ValueError, match="names"):
        draw_labels(img, np.zeros((2, 2)), ["a"])


def test_contact_sheet_layout():
    imgs = [np.full((10, 12, 3), 50 * k + 10, np.uint8) for k in range(5)]
    sheet = contact_sheet(imgs, cols=2, pad=2)
    assert sheet.shape == (3 * 12 + 2, 2 * 14 + 2, 3)
    assert np.all(sheet[2:12, 2:14] == 10) and np.all(sheet[14:24, 16:28] == 160)
    assert np.all(sheet[26:36, 2:14] == 210)
    titled = contact_sheet(imgs, cols=3, titles=[f"t{k}" for k in range(5)], title_height=16)
    assert titled.shape == (2 * (10 + 16 + 2) + 2, 3 * 14 + 2, 3)
    assert titled[2:18, 2:14].max() > 128  # title text drawn in the band above tile 0
    assert np.all(titled[18:28, 2:14] == 10)
    with pytest.raises(ValueError, match=r"images\[1\]"):
        contact_sheet([imgs[0], np.zeros((5, 5, 3), np.uint8)], cols=2)
