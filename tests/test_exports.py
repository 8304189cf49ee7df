"""Exports: BVH and GLB round trips (parse back, forward kinematics / skinning reproduce the
model), frames.jsonl per the contract, result.npz partial writes, ARKit files, overlays."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from capture_clip import make_clip
from fullcap.bodymodel.lbs import forward_kinematics as model_fk
from fullcap.bodymodel.lbs import skin
from fullcap.bodymodel.model import BodyModel
from fullcap.export.arkit import write_arkit_csv, write_arkit_json
from fullcap.export.bvh import CAMERA_TO_WORLD, forward_kinematics, read_bvh, write_bvh
from fullcap.export.gltf import read_glb, skin_glb, top_influences, write_glb
from fullcap.export.jsonl import JsonlWriter, frame_to_dict, read_jsonl
from fullcap.export.npz import NpzWriter
from fullcap.export.overlay import Overlay, VideoWriter
from fullcap.skeletons import BODY33, FACE68, HAND21
from fullcap.types import (
    BodyMesh,
    FaceResult,
    FrameResult,
    HandResult,
    Keypoints,
    ModelParams,
    PersonResult,
)

torch.set_num_threads(1)
W = CAMERA_TO_WORLD


@pytest.fixture(scope="module")
def model() -> BodyModel:
    return BodyModel.load()


@pytest.fixture(scope="module")
def clip(model):
    return make_clip(model, n=4, render=False)


def _params(clip, expression=False) -> list[ModelParams]:
    rng = np.random.default_rng(0)
    return [
        ModelParams(
            betas=clip.betas[i],
            global_orient=clip.global_orient[i],
            pose=clip.pose[i],
            expression=rng.uniform(0, 1, 52).astype(np.float32) if expression else None,
            transl=clip.transl[i],
        )
        for i in range(len(clip.times))
    ]


def _model_out(model, p: list[ModelParams]):
    t = lambda k: torch.as_tensor(np.stack([getattr(q, k) for q in p]))  # noqa: E731
    expr = t("expression") if p[0].expression is not None else None
    with torch.no_grad():
        return model(
            betas=t("betas"),
            expression=expr,
            pose=t("pose"),
            global_orient=t("global_orient"),
            transl=t("transl"),
        )


# ------------------------------------------------------------------------------ BVH
def test_bvh_round_trip_reproduces_joints(model, clip, tmp_path):
    params = _params(clip)
    path = write_bvh(tmp_path / "a.bvh", model, params, clip.times)
    bvh = read_bvh(path)
    assert bvh.names[0] == "root" and len(bvh.names) == model.num_bones
    assert "upperleg01_L" in bvh.names and "finger2-3_R" in bvh.names  # fingers included
    assert bvh.parents == list(model.bone_parents)
    assert bvh.motion.shape == (4, 6 + 3 * (model.num_bones - 1))
    assert bvh.frame_time == pytest.approx(1 / 25, abs=1e-6)
    got = forward_kinematics(bvh) / 100.0  # centimetres -> metres
    want = _model_out(model, params).joints.numpy() @ W.T
    np.testing.assert_allclose(got, want, atol=2e-5)  # 0.02 mm


def test_bvh_reads_in_an_independent_parser(model, clip, tmp_path):
    """The `bvh` package (PyPI, dev extra) agrees with our file: joints, parents, channels,
    offsets, frames and values."""
    from bvh import Bvh

    params = _params(clip)
    path = write_bvh(tmp_path / "i.bvh", model, params, clip.times)
    ours = read_bvh(path)
    theirs = Bvh(path.read_text())
    names = theirs.get_joints_names()
    assert names == ours.names and theirs.nframes == len(clip.times)
    assert theirs.frame_time == pytest.approx(ours.frame_time)
    for i, name in enumerate(names[1:], start=1):
        assert theirs.joint_parent(name).name == ours.names[ours.parents[i]]
        np.testing.assert_allclose(theirs.joint_offset(name), ours.offsets[i], atol=1e-4)
    chans = theirs.joint_channels(names[0])
    assert chans == ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    got = np.array(theirs.frames_joint_channels(names[5], ["Zrotation", "Xrotation", "Yrotation"]))
    k = sum(len(c) for c in ours.channels[:5])
    np.testing.assert_allclose(got, ours.motion[:, k : k + 3], atol=1e-4)


def test_bvh_holds_missing_frames_and_rejects_garbage(model, clip, tmp_path):
    params = _params(clip)
    frames = [None, params[1], None, params[3]]
    bvh = read_bvh(write_bvh(tmp_path / "b.bvh", model, frames, clip.times))
    np.testing.assert_array_equal(bvh.motion[0], bvh.motion[1])
    np.testing.assert_array_equal(bvh.motion[2], bvh.motion[1])
    with pytest.raises(ValueError, match="no frame"):
        write_bvh(tmp_path / "c.bvh", model, [None, None], clip.times[:2])
    (tmp_path / "bad.bvh").write_text("HIERARCHY\nROOT a\n{\nOFFSET 0 0\n")
    with pytest.raises(ValueError, match="not a valid BVH"):
        read_bvh(tmp_path / "bad.bvh")


# ------------------------------------------------------------------------------ GLB
def test_glb_round_trip_sizes_and_skinning(model, clip, tmp_path):
    params = _params(clip, expression=True)
    glb = read_glb(write_glb(tmp_path / "a.glb", model, params, clip.times))
    doc = glb.doc
    prim = doc["meshes"][0]["primitives"][0]
    n_v, n_j, n_f = len(model.template_vertices), model.num_bones, len(clip.times)
    counts = {k: doc["accessors"][a]["count"] for k, a in prim["attributes"].items()}
    assert counts == {"POSITION": n_v, "NORMAL": n_v, "JOINTS_0": n_v, "WEIGHTS_0": n_v}
    assert doc["accessors"][prim["indices"]]["count"] == 3 * len(model.faces)
    assert glb.accessor(prim["indices"]).max() < n_v
    assert len(prim["targets"]) == 52 and doc["meshes"][0]["extras"]["targetNames"][0]
    skin_ = doc["skins"][0]
    assert len(skin_["joints"]) == n_j and glb.accessor(skin_["inverseBindMatrices"]).shape == (
        n_j,
        16,
    )
    weights = glb.accessor(prim["attributes"]["WEIGHTS_0"])
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-6)
    assert glb.accessor(prim["attributes"]["JOINTS_0"]).max() < n_j
    anim = doc["animations"][0]
    for s in anim["samplers"]:
        assert doc["accessors"][s["input"]]["count"] == n_f
        n_out = doc["accessors"][s["output"]]["count"]
        assert n_out in (n_f, n_f * 52)
    assert len(anim["channels"]) == n_j + 2  # rotations, root translation, morph weights

    # Skinning the file's data = the model's LBS with the same 4-influence weights (exact),
    # and close to the model's own vertices.
    out = _model_out(model, params)
    joints4, w4 = top_influences(model.skin_weights.numpy())
    dense4 = np.zeros(model.skin_weights.shape, np.float32)
    np.put_along_axis(dense4, joints4, w4, axis=1)
    b = torch.as_tensor(np.stack([p.betas for p in params])).mean(0, keepdim=True)
    for k in (0, n_f - 1):
        got = skin_glb(glb, k)
        p = params[k]
        expr = torch.as_tensor(p.expression)[None]
        rest_v, rest_j, rest_r = model.shaped(b, expr)
        full = torch.cat(
            [torch.as_tensor(p.global_orient)[None, None], torch.as_tensor(p.pose)[None]], 1
        )
        _, rot, tr = model_fk(
            rest_j,
            rest_r,
            model.reference_orient,
            full,
            torch.as_tensor(p.transl)[None],
            model.parents,
            model._levels,
        )
        exact = skin(rest_v, torch.as_tensor(dense4), rot, tr)[0].numpy() @ W.T
        np.testing.assert_allclose(got, exact, atol=1e-4)
        err = np.linalg.norm(got - out.vertices[k].numpy() @ W.T, axis=1)
        # the 4-influence limit: measured mean 0.06 mm, max 1 cm (a few vertices)
        assert err.mean() < 5e-4 and err.max() < 0.03, (err.mean(), err.max())


def test_glb_loads_in_gltf_libraries(model, clip, tmp_path):
    """Independent readers: pygltflib (the glTF 2.0 schema as dataclasses) and trimesh (loads
    the geometry as a scene)."""
    import pygltflib  # [dev] extra
    import trimesh  # installed with Anny by scripts/setup.sh test

    path = write_glb(tmp_path / "lib.glb", model, _params(clip, expression=True), clip.times)
    g = pygltflib.GLTF2().load(str(path))
    assert g.asset.version == "2.0" and len(g.meshes) == 1 and len(g.skins) == 1
    blob = g.binary_blob()
    assert blob is not None and len(blob) >= sum(v.byteLength for v in g.bufferViews)
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}
    size = {5126: 4, 5125: 4, 5123: 2, 5121: 1}
    for acc in g.accessors:  # every accessor fits its buffer view(s)
        if acc.bufferView is None:  # a sparse accessor (morph targets): zeros + sparse values
            sp = acc.sparse
            assert sp is not None and 0 < sp.count <= acc.count
            idx, val = g.bufferViews[sp.indices.bufferView], g.bufferViews[sp.values.bufferView]
            assert sp.count * size[sp.indices.componentType] <= idx.byteLength
            assert sp.count * width[acc.type] * size[acc.componentType] <= val.byteLength
            continue
        view = g.bufferViews[acc.bufferView]
        n_bytes = acc.count * width[acc.type] * size[acc.componentType]
        assert (acc.byteOffset or 0) + n_bytes <= view.byteLength
    nodes = set(range(len(g.nodes)))
    assert set(g.skins[0].joints) <= nodes
    for ch in g.animations[0].channels:
        assert ch.target.node in nodes and ch.target.path in ("rotation", "translation", "weights")
    scene = trimesh.load(str(path), force="scene")
    (mesh,) = scene.geometry.values()
    assert len(mesh.vertices) == len(model.template_vertices)
    assert len(mesh.faces) == len(model.faces)


def test_glb_without_expressions_and_bad_file(model, clip, tmp_path):
    glb = read_glb(write_glb(tmp_path / "b.glb", model, _params(clip), clip.times))
    assert "targets" not in glb.doc["meshes"][0]["primitives"][0]
    got = skin_glb(glb, 1)
    want = _model_out(model, _params(clip)).vertices[1].numpy() @ W.T
    assert np.linalg.norm(got - want, axis=1).mean() < 2e-3
    (tmp_path / "x.glb").write_bytes(b"glTF\x02\x00\x00\x00")
    with pytest.raises(ValueError):
        read_glb(tmp_path / "x.glb")


# ------------------------------------------------------------------------------ JSONL
def _kp(names, xyz=True, seed=0):
    rng = np.random.default_rng(seed)
    p = len(names)
    return Keypoints(
        tuple(names),
        rng.uniform(0, 100, (p, 2)).astype(np.float32),
        rng.normal(0, 0.3, (p, 3)).astype(np.float32) if xyz else None,
        rng.uniform(0, 1, p).astype(np.float32),
    )


def _frame(with_hand=True):
    hand = HandResult("right", np.array([1, 2, 30, 40], np.float32), _kp(HAND21), 0.1)
    face = FaceResult(np.array([0, 0, 9, 9], np.float32), _kp(FACE68, xyz=False))
    person = PersonResult(
        id=3,
        bbox=np.array([0, 0, 100, 100], np.float32),
        score=0.8,
        body=_kp(BODY33),
        left_hand=None,
        right_hand=hand if with_hand else None,
        face=face,
        model=ModelParams(np.zeros(16, np.float32), np.eye(3), np.tile(np.eye(3), (103, 1, 1))),
        mesh=BodyMesh(np.zeros((5, 3)), np.zeros((104, 3))),
    )
    return FrameResult(7, "img_007.png", 0.25, (640, 480), (person,), ("facenet",), ("a note",))


def test_jsonl_follows_the_contract(tmp_path):
    with JsonlWriter(tmp_path / "frames.jsonl") as w:
        w.write(_frame())
        w.write(FrameResult(8, "img_008.png", 0.3, (640, 480)))
    rows = read_jsonl(tmp_path / "frames.jsonl")
    assert len(rows) == 2 and rows[1]["people"] == []
    d = rows[0]
    assert {"frame", "source", "time_s", "image_size", "people"} <= set(d)
    assert d["frame"] == 7 and d["source"] == "img_007.png" and d["image_size"] == [640, 480]
    p = d["people"][0]
    assert set(p) == {"id", "bbox", "score", "body", "left_hand", "right_hand", "face", "model"}
    assert p["left_hand"] is None  # not found -> null
    body = p["body"]
    assert body["names"] == list(BODY33) and len(body["uv"]) == 33 and len(body["conf"]) == 33
    assert body["xyz"][BODY33.index("pelvis")] == [0.0, 0.0, 0.0]
    rh = p["right_hand"]
    assert rh["names"] == list(HAND21) and rh["xyz"][HAND21.index("middle1")] == [0.0, 0.0, 0.0]
    assert all(0 <= c <= 1 for c in body["conf"] + rh["conf"])
    assert len(p["face"]["landmarks_uv"]) == 68 and p["face"]["expression"] is None
    m = p["model"]
    assert len(m["shape"]) == 16 and len(m["pose"]) == 104 and m["pose"][0] == [0.0, 0.0, 0.0]
    assert m["expression"] is None and m["transl"] is None
    assert d["missing"] == ["facenet"] and d["notes"] == ["a note"]
    assert isinstance(p["score"], float) and isinstance(p["id"], int)


def test_jsonl_lines_are_flushed_and_nan_becomes_null(tmp_path):
    f = _frame()
    person = f.people[0]
    uv = person.body.uv.copy()
    uv[0] = np.nan
    from dataclasses import replace

    f = replace(f, people=(replace(person, body=replace(person.body, uv=uv)),))
    w = JsonlWriter(tmp_path / "f.jsonl")
    w.write(f)
    # readable before close: the line is complete and flushed
    assert read_jsonl(tmp_path / "f.jsonl")[0]["people"][0]["body"]["uv"][0] == [None, None]
    w.close()
    json.dumps(frame_to_dict(f), allow_nan=False)


# ------------------------------------------------------------------------------ NPZ
def test_npz_partial_writes_are_valid(tmp_path):
    w = NpzWriter(tmp_path / "r.npz", every=2, names={"bone_names": ["a", "b"]})
    w.add(_frame())
    assert not (tmp_path / "r.npz").exists()
    w.add(FrameResult(8, "img_008.png", 0.3, (640, 480)))
    with np.load(tmp_path / "r.npz") as z:  # written after 2 frames: a valid partial file
        assert not bool(z["complete"]) and len(z["frame"]) == 2
        assert z["body_uv"].shape == (2, 33, 2) and np.isnan(z["body_uv"][1]).all()
        assert list(z["person_found"]) == [True, False]
    w.add(_frame(with_hand=False))
    w.close()
    with np.load(tmp_path / "r.npz") as z:
        assert bool(z["complete"]) and list(z["frame"]) == [7, 8, 7]
        assert list(z["right_hand_found"]) == [True, False, False]
        assert z["pose"].shape == (3, 103, 3, 3) and list(z["bone_names"]) == ["a", "b"]
        assert list(z["body_names"]) == list(BODY33)


# ------------------------------------------------------------------------------ ARKit
def test_arkit_csv_and_json(tmp_path):
    names = ["jawOpen", "eyeBlinkLeft"]
    weights = [np.array([0.5, 0.25]), None]
    write_arkit_csv(tmp_path / "a.csv", names, [0, 1], [0.0, 0.04], weights)
    write_arkit_json(tmp_path / "a.json", names, [0, 1], [0.0, 0.04], weights)
    rows = list(csv.reader((tmp_path / "a.csv").open()))
    assert rows[0] == ["frame", "time_s", "jawOpen", "eyeBlinkLeft"]
    assert rows[1][2:] == ["0.50000", "0.25000"] and rows[2][2:] == ["", ""]
    d = json.loads((tmp_path / "a.json").read_text())
    assert d["names"] == names and d["frames"][1]["weights"] is None
    with pytest.raises(ValueError):
        write_arkit_csv(tmp_path / "b.csv", names, [0], [0.0], [np.zeros(3)])


# ------------------------------------------------------------------------------ overlay
def test_overlay_draws_and_video_is_readable(model, clip, tmp_path):
    img = np.full((120, 160, 3), 40, np.uint8)
    k = clip.K.copy()
    person = PersonResult(
        0,
        np.array([10, 10, 100, 110], np.float32),
        1.0,
        Keypoints(BODY33, clip.body_uv[0] * 0.6, None, np.ones(33, np.float32)),
        mesh=BodyMesh(clip.vertices[0], np.zeros((104, 3))),
    )
    result = FrameResult(0, "x", 0.0, (160, 120), (person,), camera=k)
    ov = Overlay(model.faces.numpy(), np.full((len(clip.vertices[0]), 3), 0.8, np.float32))
    out = ov.draw(img, result)
    ov.close()
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out != img).any(axis=2).mean() > 0.02
    vw = VideoWriter(tmp_path / "o.mp4", 25.0)
    for _ in range(3):
        vw.write(out)
    vw.close()
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3
