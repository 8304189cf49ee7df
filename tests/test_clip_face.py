"""Synthetic clips (render, video round trip, CLI), the clip comparison, FaceNet's face crop
and FaceNet inside the capture pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from capture_clip import OracleEstimator, body_model, make_clip, nearest_frame
from fullcap.capture import Capture
from fullcap.capture.face import FaceNetEstimator, face_crop
from fullcap.capture.media import open_media
from fullcap.cli import main
from fullcap.commands.capture import capture
from fullcap.eval.clip import compare, load_truth
from fullcap.export.jsonl import read_jsonl
from fullcap.synth.clip import write_video

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return body_model()


@pytest.fixture(scope="module")
def synth_clip(model):
    return make_clip(model, n=4, size=(192, 144), look="synth", seed=1, wave=True)


def test_synth_look_draws_a_person_on_a_room(synth_clip):
    c = synth_clip
    assert c.frames.shape == (4, 144, 192, 3) and c.frames.dtype == np.uint8
    f = c.frames[0].astype(np.float32)
    x0, y0 = np.floor(c.body_uv[0].min(0)).astype(int)
    x1, y1 = np.ceil(c.body_uv[0].max(0)).astype(int)
    person = f[max(y0, 0) : y1, max(x0, 0) : x1]
    corner = f[:20, :20]
    assert person.std() > 10 and corner.std() < person.std()  # a figure, not flat colour
    # the frames change over time (the person moves), the background does not
    moved = np.abs(c.frames[3].astype(int) - c.frames[0]).mean(-1) > 12
    assert 0.002 < moved.mean() < 0.3
    assert not moved[:20, :20].any()
    assert c.expression.shape == (4, 52) and (c.expression >= 0).all()


def test_write_video_round_trip(synth_clip, tmp_path):
    path = write_video(tmp_path / "sub" / "clip.mp4", synth_clip.frames, 25.0)
    frames = [f.image for f in open_media(path)]
    assert len(frames) == 4
    for got, want in zip(frames, synth_clip.frames, strict=True):
        assert np.abs(got.astype(int) - want).mean() < 6  # lossy codec, same content
    assert [p.name for p in path.parent.iterdir()] == ["clip.mp4"]  # no temporary left over
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "bad.mp4", synth_clip.frames.astype(np.float32), 25.0)


def test_synth_clip_command_writes_video_and_truth(tmp_path, capsys):
    out = tmp_path / "c.mp4"
    argv = ["synth", "clip", str(out), "--frames", "3", "--width", "96", "--height", "80"]
    assert main([*argv, "--look", "plain", "--no-wave"]) == 0
    assert "c.npz" in capsys.readouterr().out
    truth = load_truth(tmp_path / "c.npz")
    assert truth["body_uv"].shape == (3, 33, 2) and truth["left_hand_cam"].shape == (3, 21, 3)
    assert "vertices" not in truth and "frames" not in truth
    assert len([f for f in open_media(out)]) == 3


def _perfect_result(truth: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = len(truth["body_uv"])
    body = truth["body_cam"] - truth["body_cam"][:, :1]
    r = {
        "frame": np.arange(n),
        "body_uv": truth["body_uv"].copy(),
        "body_xyz": body.astype(np.float32),
        "face_uv": truth["face_uv"].copy(),
        "face_expression": truth["expression"].copy(),
        "transl": truth["transl"].copy(),
    }
    for side in ("left", "right"):
        r[f"{side}_hand_uv"] = truth[f"{side}_hand_uv"].copy()
    for part in ("body", "face", "model", "left_hand", "right_hand"):
        r[f"{part}_found"] = np.ones(n, bool)
    return r


def test_compare_is_zero_for_the_truth_and_measures_shifts(model):
    c = make_clip(model, n=3, render=False)
    truth = {
        "body_uv": c.body_uv,
        "body_cam": c.body_cam,
        "face_uv": c.face_uv,
        "expression": c.expression,
        "transl": c.transl,
        "left_hand_uv": c.hand_uv["left"],
        "right_hand_uv": c.hand_uv["right"],
    }
    r = _perfect_result(truth)
    m = compare(r, truth)
    for key in ("body_err2d_px", "body_pa_mpjpe_mm", "body_mpjpe_mm", "face_err2d_px"):
        assert m[key] == pytest.approx(0, abs=1e-3), key
    assert m["body_pck2d"] == 1 and m["hand_err2d_px"] == pytest.approx(0, abs=1e-4)
    r["body_uv"] = r["body_uv"] + np.array([3.0, 4.0], np.float32)  # 5 px
    r["body_xyz"] = r["body_xyz"] * 1.1  # a scale error: PA removes it, MPJPE does not
    r["transl"] = r["transl"] + np.array([0, 0, 0.5], np.float32)
    r["face_found"][1:] = False
    m = compare(r, truth)
    assert m["body_err2d_px"] == pytest.approx(5.0, abs=1e-3)
    assert m["body_pa_mpjpe_mm"] == pytest.approx(0, abs=1e-3) and m["body_mpjpe_mm"] > 5
    assert m["transl_err_m"] == pytest.approx(0.5, abs=1e-5) and m["face_frames"] == 1


def test_face_crop_keeps_the_camera_consistent():
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:240, 0:320].astype(np.float64)
    img = np.stack([0.7 * xs, ys, np.zeros_like(xs)], -1).round().astype(np.uint8)  # ramps
    K = np.array([[300.0, 0, 161.0], [0, 290.0, 118.0], [0, 0, 1]])
    pts = rng.normal([0.02, -0.05, 0.8], 0.04, (68, 3))
    uv = pts @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    crop, box, Kc = face_crop(img, uv, K, 64, 1.3)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    side = 1.3 * (uv.max(0) - uv.min(0)).max()
    assert box[2] - box[0] == pytest.approx(side, rel=1e-5)
    np.testing.assert_allclose((box[:2] + box[2:]) / 2, (uv.min(0) + uv.max(0)) / 2, atol=1e-4)
    # a 3D point projects through Kc where its image point lands in the crop
    q = pts @ Kc.T
    in_crop = (uv - box[:2]) * 64 / side
    np.testing.assert_allclose(q[:, :2] / q[:, 2:], in_crop, atol=1e-4)
    # crop pixel (i, j) shows the image at box + (j + 0.5, i + 0.5) * side / 64 (pixel corners
    # at integers): the ramps read back the image coordinates there
    t = (np.arange(64) + 0.5) * side / 64
    np.testing.assert_allclose(crop[10, :, 0], 0.7 * (box[0] + t - 0.5), atol=1.5)
    np.testing.assert_allclose(crop[:, 10, 1], box[1] + t - 0.5, atol=1.5)


def test_capture_fills_the_face_with_facenet(model, tmp_path):
    from fullcap.models.weights import load_facenet

    clip = make_clip(model, n=3, size=(256, 256))
    facenet = FaceNetEstimator(load_facenet("facenet"))
    oracle = OracleEstimator(clip, nearest_frame(clip.frames))
    cap = Capture(mode="video", detnet=oracle, facenet=facenet)
    assert "facenet" not in cap.missing
    r = cap.process(clip.frames[0], 0.0)
    face = r.people[0].face
    assert (
        face.expression.shape == (52,) and ((face.expression >= 0) & (face.expression <= 1)).all()
    )
    assert face.expression_names[0] and len(face.expression_names) == 52
    assert face.illumination.shape == (27,) and face.albedo.ndim == 1
    np.testing.assert_allclose(face.rotation @ face.rotation.T, np.eye(3), atol=1e-4)
    # the head faces the camera about the way the clip turns it (within FaceNet's accuracy):
    # the face's forward axis (-Y of the head frame) points towards the camera (-z)
    forward = face.rotation @ np.array([0.0, -1.0, 0.0])
    assert forward[2] < -0.5
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    import cv2

    for i, f in enumerate(clip.frames):
        cv2.imwrite(str(frames_dir / f"{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    cap = Capture(mode="video", detnet=oracle, facenet=facenet)
    assert capture(str(frames_dir), str(tmp_path / "out"), pipeline=cap, progress=False) == 0
    row = read_jsonl(tmp_path / "out" / "frames.jsonl")[0]
    f = row["people"][0]["face"]
    assert len(f["rotation"]) == 3 and len(f["illumination"]) == 27
    assert set(f["expression"]) == set(face.expression_names)
    arkit = json.loads((tmp_path / "out" / "arkit.json").read_text())
    assert arkit  # the ARKit export is written once FaceNet gives expressions
