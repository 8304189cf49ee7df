"""FaceNet: face model, image formation, losses, network, training, weights, evaluation."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.face.build import build_face_model, head_frame_shape
from fullcap.face.model import FaceParams
from fullcap.face.render import (
    form_image,
    landmark_loss,
    photometric_loss,
    regularisers,
    sample_image,
    sh_irradiance,
    shade,
)
from fullcap.geometry import project
from fullcap.models.facenet import R0, FaceNet
from fullcap.synth.scene import sh_basis, vertex_normals
from fullcap.train.face_data import directional_to_sh

S = 32  # crop side of the test network


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small tensors: one thread is faster, and immune to a busy machine's oversubscription."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def bm() -> BodyModel:
    return BodyModel.load()


@pytest.fixture(scope="module")
def face(bm):
    fm, report = build_face_model(bm, n_identity=8, n_albedo=6, albedo_samples=48)
    return fm, report


@pytest.fixture(scope="module")
def rasterizer():
    from fullcap.face.render import FaceRasterizer
    from fullcap.render import RenderUnavailable

    try:
        return FaceRasterizer(128)
    except RenderUnavailable as exc:
        if os.environ.get("CI"):  # CI installs EGL: a missing renderer is a failure there
            raise
        pytest.skip(f"no headless GL: {exc}")


def small_net(face_model) -> FaceNet:
    torch.manual_seed(0)
    return FaceNet.create(face_model, input_size=S, width=8, stages=3, hidden=32)


def frontal_params(fm, batch: int = 1, depth: float = 0.5) -> FaceParams:
    g = torch.Generator().manual_seed(1)
    sh = torch.zeros(batch, 9, 3)
    sh[:, 0] = 0.8 / 0.282095
    sh[:, 2] = -0.3  # a little light from above (camera -y is up: Y10 is z)
    sh[:, 1] = -0.4
    return FaceParams(
        identity=0.5 * torch.randn(batch, fm.num_identity, generator=g),
        expression=0.2 * torch.rand(batch, fm.num_expressions, generator=g),
        albedo=0.5 * torch.randn(batch, fm.num_albedo, generator=g),
        sh=sh,
        rotation=R0.expand(batch, 3, 3).clone(),
        translation=torch.tensor([0.0, -0.02, depth]).expand(batch, 3).clone(),
    )


def crop_K(size: int, f: float) -> torch.Tensor:
    return torch.tensor([[f, 0.0, size / 2], [0.0, f, size / 2], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------- face model
def test_face_model_region_and_bases(bm, face):
    fm, report = face
    assert 2500 < fm.num_vertices < 4000 and fm.num_faces > 4000
    assert report["identity_variance"] > 0.99 and report["albedo_variance"] > 0.9
    assert fm.expression_names == bm.expression_names and fm.num_expressions == 52
    # Landmarks are the face68 vertices of the body model.
    from fullcap.bodymodel.face68 import VERTICES

    assert fm.vertex_ids[fm.landmark_ids].tolist() == list(VERTICES)
    # The head-frame shape of any body is reproduced by the identity basis (to < 1 mm).
    betas = bm.sample_betas(4, generator=torch.Generator().manual_seed(0))
    expr = 0.3 * torch.rand(4, 52)
    x = head_frame_shape(bm, fm.vertex_ids, betas, expr)
    v, j, _ = bm.shaped(betas, expr)
    head = bm.bone_names.index("head")
    torch.testing.assert_close(x, v[:, fm.vertex_ids] - j[:, head : head + 1])
    fit = fm.shape(fm.fit_identity(x, expr), expr)
    assert (fit - x).norm(dim=-1).mean() < 1e-3
    # Mean albedo is a plausible skin colour (linear RGB), red above blue.
    m = fm.albedo_mean.mean(0)
    assert 0.05 < m.mean() < 0.8 and m[0] > m[2]


# ----------------------------------------------------------------------------- shading
def _sphere(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """UV sphere of radius 1: vertices (V, 3), triangles (F, 3) counter-clockwise outward."""
    th = torch.linspace(0, math.pi, n)[1:-1]
    ph = torch.linspace(0, 2 * math.pi, 2 * n + 1)[:-1]
    t, p = torch.meshgrid(th, ph, indexing="ij")
    pts = torch.stack([t.sin() * p.cos(), t.sin() * p.sin(), t.cos()], -1).reshape(-1, 3)
    verts = torch.cat([torch.tensor([[0, 0, 1.0]]), pts, torch.tensor([[0, 0, -1.0]])])
    rows, cols = len(th), len(ph)
    idx = lambda r, c: 1 + r * cols + c % cols  # noqa: E731
    faces = [[0, idx(0, c), idx(0, c + 1)] for c in range(cols)]
    for r in range(rows - 1):
        for c in range(cols):
            a, b, d, e = idx(r, c), idx(r, c + 1), idx(r + 1, c), idx(r + 1, c + 1)
            faces += [[a, d, e], [a, e, b]]
    last = len(verts) - 1
    faces += [[last, idx(rows - 1, c + 1), idx(rows - 1, c)] for c in range(cols)]
    return verts, torch.tensor(faces)


def test_sh_shading_of_a_sphere_matches_the_analytic_value():
    verts, faces = _sphere()
    normals = vertex_normals(verts[None], faces)
    assert (normals[0] - verts).norm(dim=-1).max() < 0.02  # outward normals of a unit sphere
    # Ambient + a linear gradient along z: E(n) = c0 Y00 + c2 Y10(n) = 0.282095 c0 + 0.488603 c2 z
    sh = torch.zeros(1, 9, 3)
    sh[0, 0] = torch.tensor([2.0, 1.0, 0.5])
    sh[0, 2] = torch.tensor([1.0, 0.5, 0.2])
    z = verts[:, 2:3]
    expect = (0.282095 * sh[0, 0] + 0.488603 * sh[0, 2] * z).clamp_min(0)
    irr = sh_irradiance(normals, sh)[0]
    torch.testing.assert_close(irr, expect, atol=0.01, rtol=0)
    albedo = torch.full((1, len(verts), 3), 0.5)
    torch.testing.assert_close(
        shade(albedo, normals, sh)[0], (0.5 * expect).clamp(1e-4, 1) ** (1 / 2.2), atol=0.01, rtol=0
    )
    # A directional light (Lambert: max(n . l, 0)) projected onto order-2 SH: the classic
    # Ramamoorthi-Hanrahan approximation, within 0.1 everywhere and 0.03 on average.
    light = torch.tensor([0.3, -0.5, 0.8])
    light = light / light.norm()
    sh_dir = torch.from_numpy(directional_to_sh(light.numpy(), np.ones(3))).float()[None]
    lam = (verts @ light).clamp_min(0)[:, None].expand(-1, 3)
    approx = (sh_basis(verts) @ sh_dir[0]).clamp_min(0)
    assert (approx - lam).abs().max() < 0.1 and (approx - lam).abs().mean() < 0.03


def test_projection_and_sampling_conventions(face):
    fm, _ = face
    net = small_net(fm)
    K = crop_K(S, 60.0)[None].expand(2, 3, 3).clone()
    K[1, 0, 1] = 3.0  # skew
    out = net(torch.randint(0, 256, (2, 3, S, S), dtype=torch.uint8), K)
    lm = fm.landmarks(out.vertices)
    torch.testing.assert_close(out.landmarks_uv, project(lm, K[:, None]), atol=1e-4, rtol=0)
    img = form_image(fm, out.params, K, out.vertices)
    torch.testing.assert_close(img.uv, project(out.vertices, K[:, None]))
    # Head joint (the head frame's origin) projects where the network put it (crop pixels).
    uv0 = project(out.params.translation, K)
    raw = out.raw[:, -3:] * net.config.pose_scale
    torch.testing.assert_close(uv0, S * (0.5 + raw[:, :2]), atol=1e-3, rtol=0)
    # Sampling at a pixel centre returns that pixel (corner-origin convention).
    image = torch.rand(1, 3, 5, 7)
    uv = torch.tensor([[[0.5, 0.5], [3.5, 2.5], [6.5, 4.5]]])
    got = sample_image(image, uv)[0]
    want = torch.stack([image[0, :, 0, 0], image[0, :, 2, 3], image[0, :, 4, 6]])
    torch.testing.assert_close(got, want)


def test_photometric_loss_zero_on_own_render_and_grows_with_albedo(face, rasterizer):
    fm, _ = face
    size = rasterizer.size
    K = crop_K(size, 400.0)[None]
    p = frontal_params(fm)
    img = form_image(fm, p, K)
    r = rasterizer.render(img.vertices[0], fm.faces, K[0], img.colors[0].detach())
    image = torch.from_numpy(r.rgb).permute(2, 0, 1)[None].float() / 255
    vis = rasterizer.visibility(img.vertices, fm.faces, K, img.normals)
    assert vis.float().mean() > 0.3
    obs = sample_image(image, img.uv)
    own = photometric_loss(img.colors, obs, vis.float())
    assert own < 0.03  # bilinear sampling of the rasterised colours, 8 bits, eye details
    assert photometric_loss(img.colors, img.colors, vis.float()) < 1e-3
    losses = []
    for delta in (0.5, 1.0, 2.0):
        other = p.replace(albedo=p.albedo + delta)
        losses.append(float(photometric_loss(form_image(fm, other, K).colors, obs, vis.float())))
    assert own < 0.5 * losses[0] and losses[0] < losses[1] < losses[2]


def test_gradients_reach_every_parameter_group(face):
    fm, _ = face
    K = crop_K(S, 60.0)[None].expand(2, 3, 3)
    base = frontal_params(fm, batch=2, depth=0.6)
    leaves = {f: getattr(base, f).clone().requires_grad_(True) for f in base.__dataclass_fields__}
    p = FaceParams(**leaves)
    img = form_image(fm, p, K)
    target = torch.rand(2, 3, S, S)
    vis = torch.ones(2, fm.num_vertices)
    loss = photometric_loss(img.colors, sample_image(target, img.uv), vis)
    loss = loss + landmark_loss(
        fm.landmarks(img.uv), torch.rand(2, 68, 2) * S, torch.ones(2, 68), S
    )
    loss = loss + sum(regularisers(p).values())
    loss.backward()
    for name, leaf in leaves.items():
        assert leaf.grad is not None and leaf.grad.abs().sum() > 0, name
    # ... and through the network to every weight.
    net = small_net(fm)
    out = net(torch.randint(0, 256, (2, 3, S, S), dtype=torch.uint8), K.clone())
    img = form_image(fm, out.params, K, out.vertices)
    loss = photometric_loss(img.colors, sample_image(target, img.uv), vis)
    loss = loss + landmark_loss(out.landmarks_uv, torch.rand(2, 68, 2) * S, torch.ones(2, 68), S)
    loss.backward()
    for name, prm in net.named_parameters():
        assert prm.grad is not None and prm.grad.abs().sum() > 0, name


def test_expression_output_names_and_range(face):
    fm, _ = face
    net = small_net(fm).eval()
    with torch.no_grad():
        net.head.bias[fm.num_identity : fm.num_identity + 52] = torch.linspace(-50, 50, 52)
        out = net(torch.zeros(1, 3, S, S))
    w = out.expression_weights()[0]
    assert list(w) == fm.expression_names and "jawOpen" in w and "eyeBlinkLeft" in w
    vals = torch.tensor(list(w.values()))
    assert vals.min() >= 0 and vals.max() <= 1 and vals[0] < 0.01 and vals[-1] > 0.99
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        net(torch.zeros(1, 3, 64, 64))


# ----------------------------------------------------------------------------- data, training
@pytest.fixture(scope="module")
def shards(tmp_path_factory, rasterizer):
    from fullcap.synth.shards import generate

    out = tmp_path_factory.mktemp("face_shards")
    generate(out, "face_like", 4, seed=3, shard_size=4, workers=0, size=96)
    return out


def test_crops_carry_consistent_truth(face, shards, bm):
    from fullcap.train.face_data import FaceCrops

    fm, _ = face
    data = FaceCrops([shards], fm, size=S, augment=True, body_model=bm)
    assert len(data) == 4
    item = data[1]
    assert item["image"].shape == (3, S, S) and item["has_truth"] and item["has_albedo"]
    uv = project(item["vertices"][fm.landmark_ids], item["K"])
    torch.testing.assert_close(uv, item["landmarks"], atol=0.01, rtol=0)
    assert item["albedo"].min() >= 0 and item["albedo"].max() <= 1


def test_a_folder_of_user_crops_trains_self_supervised(face, shards, tmp_path):
    import json

    import cv2

    from fullcap.face.render import FaceRasterizer
    from fullcap.train.face_data import FaceData
    from fullcap.train.facenet import FaceTrainConfig, face_losses

    fm, _ = face
    crops = FaceData([shards], fm, size=48)
    marks = {}
    for i in range(2):  # a non-square image: centre-cropped, landmarks moved with it
        item = crops[i]
        img = np.zeros((48, 60, 3), np.uint8)
        img[:, 6:54] = item["image"].permute(1, 2, 0).numpy()
        cv2.imwrite(str(tmp_path / f"face{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        marks[f"face{i}.png"] = (item["landmarks"] + torch.tensor([6.0, 0.0])).tolist()
    (tmp_path / "landmarks.json").write_text(json.dumps(marks))
    (tmp_path / "face2.jpg").write_bytes(cv2.imencode(".jpg", img)[1].tobytes())
    data = FaceData([tmp_path, shards], fm, size=S)
    assert len(data) == 3 + 4
    item = data[0]
    assert not item["has_truth"] and item["K"][0, 2] == S / 2
    torch.testing.assert_close(item["landmarks"], crops[0]["landmarks"] * S / 48, atol=1e-4, rtol=0)
    assert data[2]["landmark_weight"].sum() == 0  # no landmarks for face2.jpg
    batch = torch.utils.data.default_collate([data[i] for i in range(3)])
    net = small_net(fm)
    tc = FaceTrainConfig(size=S)
    losses = face_losses(net, net(batch["image"], batch["K"]), batch, FaceRasterizer(S), tc)
    assert losses["vertex"] == 0 and torch.isfinite(losses["total"]) and losses["photo"] > 0


def test_tiny_training_overfits_and_weights_round_trip(face, shards, bm, tmp_path):
    from fullcap.models.weights import load_facenet
    from fullcap.train.face_data import FaceCrops
    from fullcap.train.facenet import FaceTrainConfig, export, face_losses, train

    fm, _ = face
    data = FaceCrops([shards], fm, size=S, augment=False, body_model=bm)
    batch = torch.utils.data.default_collate([data[0], data[1]])
    from fullcap.face.render import FaceRasterizer

    rast = FaceRasterizer(S)
    net = small_net(fm)
    tc = FaceTrainConfig(size=S)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss = face_losses(net, net(batch["image"], batch["K"]), batch, rast, tc)
        first = float(loss["total"].detach()) if first is None else first
        opt.zero_grad()
        loss["total"].backward()
        opt.step()
    assert float(loss["total"].detach()) < 0.5 * first
    # The training loop: runs, checkpoints, resumes, exports weights that round-trip.
    tc = FaceTrainConfig(steps=2, batch_size=2, size=S, checkpoint_every=1, eval_every=2,
                         val_samples=2)  # fmt: skip
    ckpt = train(tmp_path / "run", [shards], tc, val=[shards], progress=False, workers=0,
                 net=small_net(fm))  # fmt: skip
    tc = FaceTrainConfig(steps=3, batch_size=2, size=S)
    ckpt = train(tmp_path / "run", [shards], tc, progress=False, workers=0)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 3
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("landmark_px") == 1
    path = export(ckpt, tmp_path / "facenet.safetensors")
    loaded = load_facenet(path)
    net = FaceNet(loaded.config)
    net.load_state_dict(state["model"])
    net.eval()
    x = batch["image"]
    with torch.no_grad():
        a, b = net(x, batch["K"]), loaded(x, batch["K"])
    torch.testing.assert_close(a.landmarks_uv, b.landmarks_uv, atol=0.2, rtol=0)
    torch.testing.assert_close(a.params.expression, b.params.expression, atol=2e-3, rtol=0)
    assert torch.equal(loaded.face.faces, fm.faces)
    torch.testing.assert_close(loaded.face.mean_shape, fm.mean_shape, atol=1e-4, rtol=0)


def test_evaluation_reports_table2_metrics(face, shards, bm):
    from fullcap.eval.facenet import evaluate, landmark_errors, overlay_sheet
    from fullcap.train.face_data import FaceCrops

    fm, _ = face
    t = torch.tensor([[[10.0, 10.0]] * 68])
    t[0, 36], t[0, 45] = torch.tensor([0.0, 0.0]), torch.tensor([20.0, 0.0])
    px, iod = landmark_errors(t + torch.tensor([3.0, 4.0]), t)
    assert float(px) == pytest.approx(5.0) and float(iod) == pytest.approx(0.25)
    data = FaceCrops([shards], fm, size=S, body_model=bm)
    report = evaluate(small_net(fm), data, n=4, batch_size=2)
    for key in ("landmark_px", "landmark_iod", "photometric_px", "photometric_vertex"):
        assert np.isfinite(report["facenet"][key]), key
    assert 0 <= report["truth"]["photometric_px"] < 0.5
    sheet = overlay_sheet(small_net(fm), data, [0, 1], scale=2)
    assert sheet.shape == (2 * 2 * S, 3 * 2 * S, 3) and sheet.dtype == np.uint8


def test_expression_report_scores_visible_actions_against_neutral():
    from fullcap.eval.facenet import expression_report
    from fullcap.synth.samplers import ARKIT_NAMES, ExpressionStyle, sample_expression

    style = ExpressionStyle(neutral_prob=0.1, max_actions=2, level=(0.4, 1.0), visible_only=True)
    true = sample_expression(500, torch.Generator().manual_seed(1), None, style)
    exact = expression_report(true, true, ARKIT_NAMES)
    assert exact["corr_visible"] == pytest.approx(1.0) and exact["mae_strong"] == 0.0
    neutral = expression_report(torch.zeros_like(true), true, ARKIT_NAMES)
    assert math.isnan(neutral["corr_visible"])  # a constant answer correlates with nothing
    assert neutral["mae_strong"] == pytest.approx(neutral["mae_strong_zeros"])
    assert neutral["mae_strong_zeros"] >= 0.4  # visible actions are drawn at 0.4 or more
    noisy = true + 0.1 * torch.randn(true.shape, generator=torch.Generator().manual_seed(2))
    report = expression_report(noisy.clamp(0, 1), true, ARKIT_NAMES)
    assert 0.5 < report["corr_visible"] < 1.0
    assert report["mae_strong"] < 0.2 * report["mae_strong_zeros"]
