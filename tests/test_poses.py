"""Named demo poses: valid rotations, mirror convention, and what each pose should look like."""

from __future__ import annotations

import pytest
import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.bodymodel.poses import POSES, mirror, pose_tensor


@pytest.fixture(scope="module")
def bm() -> BodyModel:
    return BodyModel.load()


def _joints(bm: BodyModel, named: dict) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = bm(pose=pose_tensor(bm, named), return_vertices=False)
    joints = {name: out.joints[0, i] for i, name in enumerate(bm.bone_names)}
    for name, i in (("L", "left_hand"), ("R", "right_hand")):
        kp = out.keypoints[i][0]
        joints |= {f"hand.{name}.{k}": kp[j] for j, k in enumerate(bm.keypoint_names(i))}
    return joints


@pytest.mark.parametrize("name", list(POSES))
def test_pose_is_valid_rotation_tensor(bm, name):
    rot = pose_tensor(bm, POSES[name])
    assert rot.shape == (1, bm.num_bones - 1, 3, 3)
    assert rot.dtype == bm.dtype
    assert torch.isfinite(rot).all()
    eye = torch.eye(3).expand_as(rot[0])
    assert torch.allclose(rot[0] @ rot[0].transpose(-1, -2), eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot[0]), torch.ones(bm.num_bones - 1), atol=1e-5)
    # Every named bone actually moves (no silently ignored entries).
    moved = {
        bm.bone_names[i + 1] for i in range(bm.num_bones - 1) if not torch.equal(rot[0, i], eye[0])
    }
    assert moved == {b for b, v in POSES[name].items() if any(v)}


def test_pose_tensor_rejects_bad_input(bm):
    with pytest.raises(ValueError, match="unknown bone"):
        pose_tensor(bm, {"upperarm.L": (0.0, 0.0, 0.1)})
    with pytest.raises(ValueError, match="root"):
        pose_tensor(bm, {"root": (0.0, 0.0, 0.1)})
    with pytest.raises(ValueError, match="3 finite numbers"):
        pose_tensor(bm, {"upperarm01.L": (0.0, 0.1)})


def test_mirror_reflects_the_posed_body(bm):
    """mirror() must give the X-reflected body: it swaps sides and reflects rotation vectors."""
    pose = POSES["fist_and_point"]
    assert mirror(mirror(pose)) == {k: tuple(map(float, v)) for k, v in pose.items()}
    a, b = _joints(bm, pose), _joints(bm, mirror(pose))
    flip = torch.tensor([-1.0, 1.0, 1.0])
    for name in ("wrist.L", "finger2-3.L", "lowerleg01.L", "head"):
        other = name.replace(".L", ".R")
        # Anny's rest body is symmetric to within a few millimetres.
        assert torch.allclose(b[other], a[name] * flip, atol=0.01), name


def test_t_pose_arms_horizontal_and_wide(bm):
    j = _joints(bm, POSES["t_pose"])
    for s in "LR":
        shoulder_z = j[f"upperarm01.{s}"][2]
        assert abs(float(j[f"wrist.{s}"][2] - shoulder_z)) < 0.08
    assert float(j["wrist.L"][0] - j["wrist.R"][0]) > 1.2  # left is +X


def test_sitting_knees_forward(bm):
    j = _joints(bm, POSES["sitting"])
    for s in "LR":
        assert float(j[f"lowerleg01.{s}"][1]) < float(j[f"upperleg01.{s}"][1]) - 0.2  # -Y forward
        assert abs(float(j[f"lowerleg01.{s}"][2] - j[f"upperleg01.{s}"][2])) < 0.15  # thigh level


def test_arms_up_and_waving_hands_above_head(bm):
    up, wave = _joints(bm, POSES["arms_up"]), _joints(bm, POSES["waving"])
    assert float(up["wrist.L"][2]) > float(up["head"][2]) + 0.2
    assert float(up["wrist.R"][2]) > float(up["head"][2]) + 0.2
    assert float(wave["wrist.R"][2]) > float(wave["head"][2])
    assert float(wave["wrist.L"][2]) < float(wave["root"][2])


def test_walking_opposite_arm_and_leg(bm):
    j = _joints(bm, POSES["walking"])
    assert float(j["foot.L"][1]) < float(j["foot.R"][1]) - 0.3  # left foot ahead
    assert float(j["wrist.R"][1]) < float(j["wrist.L"][1]) - 0.2  # right hand ahead


def test_fist_and_point_hands(bm):
    ref, pose = _joints(bm, POSES["reference"]), _joints(bm, POSES["fist_and_point"])

    def reach(j, side, finger):
        return float(torch.linalg.norm(j[f"hand.{side}.{finger}4"] - j[f"hand.{side}.wrist"]))

    for finger in ("index", "middle", "ring", "pinky"):
        assert reach(pose, "L", finger) < 0.75 * reach(ref, "L", finger), finger  # fist
    assert reach(pose, "R", "index") > 0.95 * reach(ref, "R", "index")  # pointing
    assert reach(pose, "R", "middle") < 0.75 * reach(ref, "R", "middle")
