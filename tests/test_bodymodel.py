"""The whole-body model: shapes, dtypes, devices, gradients, keypoint sets, asset errors."""

from __future__ import annotations

import shutil

import pytest
import roma
import torch

from fullcap.assets import AssetError
from fullcap.bodymodel.model import _SVD_BELOW, ASSET_NAME, BodyModel, _rest_rotations
from fullcap.skeletons import BODY33, FACE68, HAND21


@pytest.fixture(scope="module")
def bm() -> BodyModel:
    return BodyModel.load()


@pytest.fixture(scope="module")
def bm64() -> BodyModel:
    return BodyModel.load(dtype=torch.float64)


def _random_inputs(bm: BodyModel, n: int, seed: int = 0, scale: float = 0.3):
    g = torch.Generator().manual_seed(seed)
    dt = bm.dtype
    return dict(
        betas=torch.randn(n, 20, generator=g).to(dt),
        expression=torch.rand(n, bm.num_expressions, generator=g).to(dt),
        pose=(torch.randn(n, bm.num_bones - 1, 3, generator=g) * scale).to(dt),
        global_orient=torch.randn(n, 3, generator=g).to(dt),
        transl=torch.randn(n, 3, generator=g).to(dt),
    )


def test_output_shapes_and_sets(bm):
    out = bm(**_random_inputs(bm, 3))
    assert out.vertices.shape == (3, 13718, 3)
    assert out.joints.shape == (3, bm.num_bones, 3)
    assert bm.keypoint_names("body33") == list(BODY33)
    assert bm.keypoint_names("left_hand") == list(HAND21)
    assert out.keypoints["body33"].shape == (3, 33, 3)
    assert out.keypoints["left_hand"].shape == (3, 21, 3)
    if "face68" in bm.keypoint_sets:
        assert bm.keypoint_names("face68") == list(FACE68)
        assert out.keypoints["face68"].shape == (3, 68, 3)
    assert torch.isfinite(out.vertices).all()


def test_reference_pose_is_a_standing_person(bm):
    out = bm()
    v, kp = out.vertices[0], out.keypoints["body33"][0]
    names = bm.keypoint_names("body33")
    height = v[:, 2].max() - v[:, 2].min()
    assert 1.5 < height < 1.9  # Anny's default adult
    assert torch.allclose(kp[names.index("pelvis")], torch.zeros(3), atol=1e-6)
    assert kp[names.index("head_top"), 2] > kp[names.index("neck"), 2] > 0
    assert kp[names.index("left_wrist"), 0] > 0.3 > -0.3 > kp[names.index("right_wrist"), 0]
    assert kp[names.index("left_eye"), 1] < kp[names.index("head"), 1]  # eyes in front (-Y)
    assert kp[names.index("left_ankle"), 2] < -0.6


def test_translation_and_global_rotation(bm):
    inp = _random_inputs(bm, 2)
    base = bm(**{**inp, "global_orient": None, "transl": None})
    rot = roma.rotvec_to_rotmat(inp["global_orient"])
    moved = bm(**{**inp, "global_orient": rot, "transl": inp["transl"]})
    expected = (rot[:, None] @ base.vertices[..., None])[..., 0] + inp["transl"][:, None]
    torch.testing.assert_close(moved.vertices, expected, atol=1e-5, rtol=0)
    pelvis = moved.keypoints["body33"][:, 0]
    torch.testing.assert_close(pelvis, inp["transl"], atol=1e-5, rtol=0)


def test_rotvec_and_rotmat_pose_agree(bm):
    inp = _random_inputs(bm, 2)
    a = bm(**inp)
    b = bm(**{**inp, "pose": roma.rotvec_to_rotmat(inp["pose"])})
    torch.testing.assert_close(a.vertices, b.vertices)


def test_bones_are_rigid_under_pose(bm):
    # Bone lengths (head to child's head) do not change with the pose.
    inp = _random_inputs(bm, 2, scale=0.6)
    posed = bm(**inp).joints
    rest = bm(betas=inp["betas"], expression=inp["expression"]).joints
    parents = torch.tensor(bm.bone_parents[1:])
    length = lambda j: (j[:, 1:] - j[:, parents]).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(length(posed), length(rest), atol=1e-5, rtol=0)


def test_keypoints_without_vertices_match(bm):
    inp = _random_inputs(bm, 2)
    full = bm(**inp)
    light = bm(**inp, return_vertices=False)
    assert light.vertices is None
    for name in bm.keypoint_sets:
        torch.testing.assert_close(light.keypoints[name], full.keypoints[name])


def test_fingertips_and_hand_subsets(bm):
    out = bm()
    for side in ("left", "right"):
        hand = out.keypoints[f"{side}_hand"][0]
        ids = bm.part_vertex_ids(f"{side}_hand")
        hand_verts = out.vertices[0, ids]
        # Every fingertip is a hand vertex at the far end of its finger.
        for f in ("thumb", "index", "middle", "ring", "pinky"):
            tip = hand[HAND21.index(f"{f}4")]
            assert (hand_verts - tip).norm(dim=-1).min() < 1e-6
            assert (tip - hand[0]).norm() > (hand[HAND21.index(f"{f}3")] - hand[0]).norm()
        body = out.keypoints["body33"][0]
        torch.testing.assert_close(hand[0], body[BODY33.index(f"{side}_wrist")])
        index1 = body[BODY33.index(f"{side}_index1")]
        torch.testing.assert_close(hand[HAND21.index("index1")], index1)


def test_float64_matches_float32(bm, bm64):
    inp32 = _random_inputs(bm, 2)
    inp64 = {k: v.double() for k, v in inp32.items()}
    v32 = bm(**inp32).vertices
    v64 = bm64(**inp64).vertices
    assert v64.dtype == torch.float64
    assert (v32.double() - v64).abs().max() < 1e-4


def test_gradients_flow(bm64):
    inp = _random_inputs(bm64, 1)
    for key in ("betas", "pose", "global_orient", "expression"):
        inp[key] = inp[key].clone().requires_grad_(True)
    out = bm64(**inp, return_vertices=False)
    out.keypoints["body33"].sum().backward()
    for key in ("betas", "pose", "global_orient"):
        assert inp[key].grad is not None and inp[key].grad.abs().sum() > 0, key


def test_gradcheck_small(bm64):
    inp = _random_inputs(bm64, 1)
    betas = inp["betas"][:, :4].clone().requires_grad_(True)
    pose = inp["pose"].clone()

    def f(b, p_elbow):
        p = pose.clone()
        p[:, bm64.bone_names.index("lowerarm01.L") - 1] = p_elbow
        return bm64(betas=b, pose=p, return_vertices=False).keypoints["left_hand"]

    p_elbow = pose[:, bm64.bone_names.index("lowerarm01.L") - 1].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (betas, p_elbow), eps=1e-6, atol=1e-5)


def test_batch_independence(bm):
    inp = _random_inputs(bm, 4)
    full = bm(**inp).vertices
    one = bm(**{k: v[2:3] for k, v in inp.items()}).vertices
    torch.testing.assert_close(full[2:3], one, atol=1e-5, rtol=0)


def test_rest_rotations_agree_on_both_solver_paths(bm):
    """One body's rest orientations take roma's SVD path, a batch of bodies its Horn path
    (faster for each size); both must give the same rotations."""
    g = torch.Generator().manual_seed(1)
    betas = torch.randn(4, bm.num_betas, generator=g) * 2
    m = bm.rest_orient_template + torch.einsum("nk,kjab->njab", betas, bm.rest_orient_shape)
    assert m[0].shape[0] < _SVD_BELOW <= m.shape[0] * m.shape[1]
    batch = _rest_rotations(m)
    for i in range(len(m)):
        torch.testing.assert_close(
            _rest_rotations(m[i : i + 1]), batch[i : i + 1], atol=2e-5, rtol=0
        )
    torch.testing.assert_close(batch, roma.special_procrustes(m, method="svd"), atol=2e-5, rtol=0)
    eye = torch.eye(3).expand_as(batch)
    torch.testing.assert_close(batch.transpose(-1, -2) @ batch, eye, atol=1e-5, rtol=0)
    assert (torch.linalg.det(batch) > 0).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(betas=torch.zeros(2, 500)), "betas has 500 coefficients"),
        (dict(betas=torch.zeros(2)), "betas must have shape"),
        (dict(expression=torch.zeros(1, 51)), "expression must have shape (1, 52)"),
        (dict(pose=torch.zeros(1, 10, 3)), "pose must have shape"),
        (dict(transl=torch.zeros(1, 2)), "transl must have shape (1, 3)"),
        (dict(betas=torch.zeros(1, 3, dtype=torch.float64)), "model.to(torch.float64)"),
        (dict(betas=[0.0, 1.0]), "betas must be a torch.Tensor"),
        (dict(betas=torch.zeros(2, 3), transl=torch.zeros(3, 3)), "transl must have shape (2, 3)"),
    ],
)
def test_bad_inputs_name_the_argument(bm, kwargs, message):
    with pytest.raises((ValueError, TypeError)) as info:
        bm(**kwargs)
    assert message in str(info.value)


def test_wrong_device_is_explained(bm):
    meta = torch.zeros(1, 3, device="meta")
    with pytest.raises(ValueError, match=r"betas is on meta but the model is on cpu"):
        bm(betas=meta)


def test_missing_asset_names_the_rebuild_command(tmp_path):
    with pytest.raises(AssetError, match="fullcap bodymodel build"):
        BodyModel.load(path=tmp_path / "nope.safetensors")


def test_corrupt_asset_is_reported(tmp_path):
    from fullcap.assets import asset_path

    src = asset_path(ASSET_NAME)
    bad = tmp_path / ASSET_NAME
    shutil.copy(src, bad)
    data = bytearray(bad.read_bytes())
    bad.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(AssetError, match="fullcap bodymodel build"):
        BodyModel.load(path=bad)


def test_packaged_asset_matches_manifest():
    from fullcap.assets import asset_path, load_manifest, sha256_file

    entry = load_manifest().get(ASSET_NAME)
    assert entry is not None, "run `fullcap bodymodel build` to record the asset's hash"
    assert sha256_file(asset_path(ASSET_NAME)) == entry["sha256"]


def test_hash_mismatch_is_reported(tmp_path, monkeypatch):
    import fullcap.assets as assets
    from fullcap.assets import asset_path

    src = asset_path(ASSET_NAME)
    (tmp_path / ASSET_NAME).write_bytes(src.read_bytes()[:-1] + b"\x00")
    monkeypatch.setattr(assets, "packaged_asset_dir", lambda: tmp_path)
    monkeypatch.setattr(
        "fullcap.bodymodel.model.load_manifest",
        lambda: {ASSET_NAME: {"sha256": assets.sha256_file(src)}},
    )
    with pytest.raises(AssetError, match="hash mismatch"):
        BodyModel.load()


def test_sample_betas(bm):
    g = torch.Generator().manual_seed(0)
    b = bm.sample_betas(32, generator=g)
    assert b.shape == (32, bm.num_betas)
    heights = bm(betas=b).vertices[..., 2]
    heights = heights.amax(1) - heights.amin(1)
    assert heights.min() > 1.0 and heights.max() < 2.3
    with pytest.raises(ValueError, match="prior must be"):
        bm.sample_betas(2, prior="giants")
