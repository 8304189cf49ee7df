"""IKNets: features, output shapes, training that resumes, weights that round-trip."""

from __future__ import annotations

import json

import pytest
import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.models.iknet import BODY_IK_BONES, HAND_IK_BONES, IKNet, IKNetConfig
from fullcap.models.weights import load_iknet
from fullcap.train.ik_data import IKData, NoiseConfig, add_noise, normalise
from fullcap.train.iknet import IKTrainConfig, export, ik_losses, make_config, train


@pytest.fixture(scope="module")
def bm() -> BodyModel:
    return BodyModel.load()


@pytest.mark.parametrize("part", ["body", "hand"])
def test_batches_are_consistent(bm, part):
    cfg = make_config(bm, part, width=32, depth=2)
    data = IKData(bm, cfg)
    b = data.batch(8, torch.Generator().manual_seed(0), noisy=False)
    n_kp = 33 if part == "body" else 21
    assert b.inputs.shape == b.target.shape == (8, n_kp, 3)
    torch.testing.assert_close(b.inputs, b.target)
    # The true rotations, placed back into a pose, reproduce the keypoints.
    go, pose = data.pose_from_rotations(b.rotations)
    if part == "body":
        full = torch.cat([b.global_orient[:, None], b.pose], 1)
        keep = torch.zeros(bm.num_bones, dtype=torch.bool)
        keep[data.bone_index] = True
        # Bones outside the IK set (fingers, toes, eyes) are identity in the re-posed body, so
        # compare against the true pose with those bones reset too.
        ref_pose = torch.where(keep[1:, None, None], full[:, 1:], torch.eye(3))
        ref = data.keypoints(b.betas, ref_pose, b.global_orient)
        torch.testing.assert_close(data.keypoints(b.betas, pose, go), ref, atol=1e-4, rtol=0)
    else:
        torch.testing.assert_close(data.keypoints(b.betas, pose, go), b.target, atol=1e-4, rtol=0)
    # Normalisation: body pelvis at 0; hand middle1 at 0 and wrist at unit distance.
    if part == "body":
        assert b.target[:, 0].abs().max() < 1e-6
    else:
        assert b.target[:, cfg.keypoints.index("middle1")].abs().max() < 1e-6
        torch.testing.assert_close(b.target[:, 0].norm(dim=-1), torch.ones(8))


def test_noise_changes_keypoints_but_not_clean_fraction():
    kp = torch.randn(64, 33, 3)
    parents = torch.tensor([-1] + [0] * 32)
    noisy = add_noise(
        kp, parents, NoiseConfig(clean_fraction=0.0), torch.Generator().manual_seed(0)
    )
    assert (noisy - kp).norm(dim=-1).mean() > 0.005
    same = add_noise(kp, parents, NoiseConfig(clean_fraction=1.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, kp)


def test_identity_start_and_output_shapes(bm):
    cfg = make_config(bm, "body", width=32, depth=3)
    net = IKNet(cfg)
    out = net(torch.randn(5, 33, 3))
    assert out.rotations.shape == (5, len(BODY_IK_BONES), 3, 3)
    torch.testing.assert_close(out.rotations, torch.eye(3).expand(5, len(BODY_IK_BONES), 3, 3))
    assert out.betas.shape == (5, cfg.num_betas)
    with pytest.raises(ValueError, match=r"keypoints must have shape \(B, 33, 3\)"):
        net(torch.randn(5, 21, 3))
    assert len(HAND_IK_BONES) == 20


def test_losses_fall_with_training(bm):
    cfg = make_config(bm, "hand", width=64, depth=3)
    data = IKData(bm, cfg)
    net = IKNet(cfg)
    tc = IKTrainConfig(part="hand", lr=3e-3)
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr)
    fixed = data.batch(64, torch.Generator().manual_seed(1), noisy=False)
    first = None
    for _ in range(40):
        loss = ik_losses(net(fixed.inputs), fixed, data, tc)
        opt.zero_grad()
        loss["total"].backward()
        opt.step()
        first = first if first is not None else float(loss["total"].detach())
    assert float(loss["total"].detach()) < 0.5 * first


def test_training_resumes_to_the_same_weights(tmp_path):
    tc = dict(part="hand", batch_size=16, checkpoint_every=3, eval_every=3, width=32, depth=2)
    train(tmp_path / "a", IKTrainConfig(steps=6, **tc), progress=False, workers=0)
    train(tmp_path / "b", IKTrainConfig(steps=3, **tc), progress=False, workers=0)
    train(tmp_path / "b", IKTrainConfig(steps=6, **tc), progress=False, workers=0)  # resume
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=1e-6, rtol=0)
    rows = [
        json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == [3, 6] and all("chi" in r for r in rows)


def test_weights_round_trip(tmp_path, bm):
    tc = IKTrainConfig(
        part="body", steps=2, batch_size=8, checkpoint_every=2, eval_every=2, width=32, depth=2
    )
    ckpt = train(tmp_path, tc, progress=False, workers=0)
    path = export(ckpt, tmp_path / "w.safetensors")
    net = load_iknet(path)
    assert isinstance(net.config, IKNetConfig) and net.config.part == "body"
    x = normalise(torch.randn(2, 33, 3), "body", net.config.keypoints)
    state = torch.load(ckpt, weights_only=True)
    ref = IKNet(IKNetConfig.from_dict(state["config"]))
    ref.load_state_dict(state["model"])
    torch.testing.assert_close(net(x).rotations, ref.eval()(x).rotations, atol=2e-2, rtol=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_iknet(tmp_path / "missing.safetensors")
