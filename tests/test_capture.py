"""Capture end to end on a small synthetic walking clip (video and image directory) with an
oracle keypoint stage; networks missing or present; bad inputs; tracking; jitter."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from capture_clip import (
    OracleEstimator,
    angle_deg,
    body_model,
    counter_lookup,
    make_clip,
    nearest_frame,
    random_iknet,
)
from fullcap.capture import Capture, MissingComponent, OneEuroConfig, validate_frame
from fullcap.capture.detector import (
    Detection,
    DetectorUnavailable,
    HOGPeopleDetector,
    WholeFrameDetector,
    default_detector,
)
from fullcap.capture.estimators import DetNetEstimator, _crop
from fullcap.capture.filters import mean_acceleration
from fullcap.capture.media import open_media
from fullcap.capture.solve import ModelSolver, mirror_rotations, solve_translation
from fullcap.commands.capture import (
    EXIT_INPUT,
    EXIT_MODEL,
    EXIT_OUTPUT,
    EXIT_PARTIAL,
    capture,
    parse_camera,
)
from fullcap.export.bvh import read_bvh
from fullcap.export.gltf import read_glb
from fullcap.export.jsonl import read_jsonl
from fullcap.skeletons import BODY33, HAND21

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    return body_model()


@pytest.fixture(scope="module")
def clip(model):
    return make_clip(model, n=6)


@pytest.fixture(scope="module")
def media(clip, tmp_path_factory):
    """The clip as a PNG directory, an MJPG video and a truncated copy of it."""
    root = tmp_path_factory.mktemp("media")
    (root / "images").mkdir()
    for i, f in enumerate(clip.frames):
        cv2.imwrite(str(root / "images" / f"img_{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    h, w = clip.frames.shape[1:3]
    vw = cv2.VideoWriter(str(root / "walk.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
    for f in clip.frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    data = (root / "walk.avi").read_bytes()
    (root / "truncated.avi").write_bytes(data[: int(len(data) * 0.6)])
    return root


def _oracle(clip, **kw):
    return OracleEstimator(clip, nearest_frame(clip.frames), **kw)


def _trained_iknets(model):
    """The packaged IKNets if they exist, else untrained ones (plumbing only)."""
    from fullcap.assets import AssetError
    from fullcap.models.weights import load_iknet

    try:
        return load_iknet("bodyiknet"), load_iknet("handiknet"), True
    except (AssetError, FileNotFoundError):
        return random_iknet(model, "body"), random_iknet(model, "hand"), False


# ------------------------------------------------------------------------ end to end
def test_images_without_ik_networks(clip, media, tmp_path):
    """Image directory, image mode, only the keypoint stage: keypoints exact, model parts
    null and reported missing, no BVH/GLB made up."""
    oracle = _oracle(clip)
    cap = Capture(mode="image", detnet=oracle)
    code = capture(str(media / "images"), str(tmp_path), pipeline=cap, progress=False)
    assert code == 0
    rows = read_jsonl(tmp_path / "frames.jsonl")
    assert [r["source"] for r in rows] == [f"img_{i:03d}.png" for i in range(6)]
    assert [r["time_s"] for r in rows] == pytest.approx(np.arange(6) / 30.0, abs=1e-5)
    for i, r in enumerate(rows):
        p = r["people"][0]
        np.testing.assert_allclose(p["body"]["uv"], clip.body_uv[i], atol=0.01)
        want = clip.body_cam[i] - clip.body_cam[i][0]
        np.testing.assert_allclose(p["body"]["xyz"], want, atol=2e-4)
        assert p["model"] is None and p["face"]["expression"] is None
        assert set(r["missing"]) == {"bodyiknet", "handiknet", "facenet"}
        # hands: metres relative to middle1, the default hand length
        got = np.array(p["right_hand"]["xyz"])
        true = clip.hand_cam["right"][i] - clip.hand_cam["right"][i][HAND21.index("middle1")]
        np.testing.assert_allclose(
            np.linalg.norm(got, axis=1), np.linalg.norm(true, axis=1), rtol=0.15, atol=3e-3
        )
    assert sorted(p.name for p in (tmp_path / "overlay").iterdir()) == [
        f"img_{i:03d}.png" for i in range(6)
    ]
    assert not (tmp_path / "capture.bvh").exists() and not (tmp_path / "arkit.csv").exists()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_with_person"] == 6 and summary["exit_code"] == 0
    with np.load(tmp_path / "result.npz") as z:
        assert bool(z["complete"]) and z["body_xyz"].shape == (6, 33, 3)
        assert not z["model_found"].any()


def test_video_with_ik_networks(model, clip, media, tmp_path):
    """Video, video mode (tracking + 1€ filter), IKNets: every export written and valid."""
    body_ik, hand_ik, trained = _trained_iknets(model)
    cap = Capture(
        mode="video", detnet=_oracle(clip), body_ik=body_ik, hand_ik=hand_ik, body_model=model
    )
    assert cap.missing == ("facenet",)
    code = capture(str(media / "walk.avi"), str(tmp_path), pipeline=cap, progress=False)
    assert code == 0
    rows = read_jsonl(tmp_path / "frames.jsonl")
    assert len(rows) == 6 and all(r["source"] == "walk.avi" for r in rows)
    assert [r["time_s"] for r in rows] == pytest.approx(np.arange(6) / 25.0, abs=1e-3)
    assert {r["people"][0]["id"] for r in rows} == {0}  # tracked: one stable id
    for i, r in enumerate(rows):
        p = r["people"][0]
        err = np.linalg.norm(np.array(p["body"]["uv"]) - clip.body_uv[i], axis=1)
        assert err.mean() < 2.0, err.mean()  # 1€ lag on a person drifting 0.5 m/s
        m = p["model"]
        assert len(m["pose"]) == model.num_bones and len(m["shape"]) == 16
        assert m["transl"] is not None and m["transl"][2] > 0
    bvh = read_bvh(tmp_path / "capture.bvh")
    assert bvh.motion.shape[0] == 6 and len(bvh.names) == model.num_bones
    glb = read_glb(tmp_path / "capture.glb")
    assert glb.doc["animations"][0]["channels"]
    video = cv2.VideoCapture(str(tmp_path / "overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    with np.load(tmp_path / "result.npz") as z:
        assert z["pose"].shape == (6, model.num_bones - 1, 3, 3) and z["model_found"].all()
        assert len(z["bone_names"]) == model.num_bones
    if trained:  # the IK result re-poses the model close to the truth
        with np.load(tmp_path / "result.npz") as z:
            pelvis_t = z["transl"]
        # Across the image a few cm; along the optical axis a monocular fit inherits the
        # estimated body size, so allow 15% of the distance there (about 0.4 m at 2.8 m).
        err = np.abs(pelvis_t - clip.transl)
        assert err[:, :2].max() < 0.1, err
        assert (err[:, 2] / clip.transl[:, 2]).max() < 0.15, err


def test_hand_ik_mirrors_left_hands(model):
    """A left hand goes into HandIKNet mirrored (x -> -x) and its rotations come back
    conjugated by diag(-1, 1, 1)."""

    class Stub(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.config, self.net, self.seen = net.config, net, []

        def forward(self, x):
            self.seen.append(x.clone())
            out = self.net(x)
            rot = torch.linalg.matrix_exp(
                torch.tensor([[0.0, -0.3, 0.2], [0.3, 0.0, -0.1], [-0.2, 0.1, 0.0]])
            )
            return type(out)(
                rotations=rot.expand_as(out.rotations), raw6d=out.raw6d, betas=out.betas
            )

    stub = Stub(random_iknet(model, "hand"))
    solver = ModelSolver(model, None, stub)
    xyz = np.random.default_rng(0).normal(size=(21, 3)).astype(np.float32)
    wl, fl = solver.hand(xyz, "left")
    wr, fr = solver.hand(xyz, "right")
    np.testing.assert_allclose(stub.seen[0][0, :, 0], -torch.as_tensor(xyz)[:, 0])
    np.testing.assert_allclose(wl, mirror_rotations(wr), atol=1e-6)
    np.testing.assert_allclose(fl, mirror_rotations(fr), atol=1e-6)


def test_mirrored_hand_pose_is_the_mirror_image(model, clip):
    """The convention above is right for the model: a left hand given the mirrored world
    rotation and finger rotations of the right hand has the mirror-image keypoints."""
    from fullcap.bodymodel.lbs import world_rotations
    from fullcap.types import ModelParams

    solver = ModelSolver(model, None, None)
    params = ModelParams(clip.betas[0], clip.global_orient[0], clip.pose[0])
    full = torch.cat(
        [torch.as_tensor(clip.global_orient[:1])[:, None], torch.as_tensor(clip.pose[:1])], 1
    )
    world = world_rotations(full, model.parents, model._levels)[0].numpy()
    right = world[model.bone_names.index("wrist.R")]
    fingers = clip.pose[0][[b - 1 for b in solver._finger_bones["R"]]]
    posed = solver.attach(params, {"left": (mirror_rotations(right), mirror_rotations(fingers))})
    with torch.no_grad():
        out = model(
            betas=torch.as_tensor(posed.betas)[None],
            pose=torch.as_tensor(posed.pose)[None],
            global_orient=torch.as_tensor(posed.global_orient)[None],
        )
    lh, rh = out.keypoints["left_hand"][0].numpy(), out.keypoints["right_hand"][0].numpy()
    names = model.keypoint_names("right_hand")
    lh, rh = lh - lh[names.index("middle1")], rh - rh[names.index("middle1")]
    np.testing.assert_allclose(lh, rh * np.array([-1, 1, 1]), atol=4e-3)  # 4 mm (mesh asymmetry)
    got = world_rotations(
        torch.cat(
            [torch.as_tensor(posed.global_orient)[None, None], torch.as_tensor(posed.pose)[None]], 1
        ),
        model.parents,
        model._levels,
    )[0, model.bone_names.index("wrist.L")].numpy()
    assert angle_deg(got, mirror_rotations(right)) < 0.1


def test_solve_translation_recovers_the_pelvis(clip):
    i = 2
    xyz = clip.body_cam[i] - clip.body_cam[i][0]
    t = solve_translation(xyz, clip.body_uv[i], clip.K)
    np.testing.assert_allclose(t, clip.body_cam[i][0], atol=1e-4)
    assert solve_translation(xyz[:1], clip.body_uv[i][:1], clip.K) is None


def test_detnet_estimator_runs_untrained_network():
    """The DetNet adapter on an untrained lite DetNet: shapes, frames and roots (values are
    meaningless until weights exist)."""
    from fullcap.models.detnet import DetNet, DetNetConfig

    torch.manual_seed(0)
    est = DetNetEstimator(DetNet(DetNetConfig.from_preset("lite")))
    image = np.random.default_rng(0).integers(0, 255, (150, 200, 3), dtype=np.uint8)
    parts = est(image, np.array([20.0, 10.0, 160.0, 150.0]))
    assert parts.body.uv.shape == (33, 2) and parts.body.xyz.shape == (33, 3)
    assert np.all(parts.body.uv >= [20, 10]) and np.all(parts.body.uv <= [160, 150])
    assert np.abs(parts.body.xyz[BODY33.index("pelvis")]).max() == 0
    for side in ("left_hand", "right_hand"):
        k = getattr(parts, side)
        assert k.uv.shape == (21, 2) and np.abs(k.xyz[HAND21.index("middle1")]).max() == 0
        box = getattr(parts, f"{side}_box")
        assert np.all(k.uv >= box[:2] - 1e-3) and np.all(k.uv <= box[2:] + 1e-3)
    assert parts.face.uv.shape == (68, 2) and parts.face.xyz is None


# ------------------------------------------------------------------------ detection
def test_hog_detector_finds_the_person(model):
    # pyproject pins opencv-python-headless<5, which has the HOG people detector.
    big = make_clip(model, n=1, size=(320, 320))
    dets = HOGPeopleDetector().detect(big.frames[0])
    assert len(dets) >= 1
    box, (lo, hi) = dets[0].box, (big.body_uv[0].min(0), big.body_uv[0].max(0))
    assert np.all(box[:2] <= lo + 10) and np.all(box[2:] >= hi - 10)


def test_without_hog_the_whole_frame_is_used_and_said_so(monkeypatch):
    monkeypatch.delattr(cv2, "HOGDescriptor")  # as in OpenCV 5
    with pytest.raises(DetectorUnavailable, match="opencv-python-headless<5"):
        HOGPeopleDetector()
    detector, note = default_detector()
    assert isinstance(detector, WholeFrameDetector) and "whole frame" in note
    (det,) = detector.detect(np.zeros((100, 200, 3), np.uint8))
    np.testing.assert_allclose(det.box, [0, -50, 200, 150])


# ------------------------------------------------------------------------ tracking
def test_no_person_then_new_track_and_several_people(clip):
    blank = np.zeros_like(clip.frames[0])
    frames = [clip.frames[0], clip.frames[1], blank, clip.frames[3]]

    class Two:
        name = "two"

        def detect(self, image):
            h, w = image.shape[:2]
            return [
                Detection(np.array([0.0, 0.0, w / 4, h / 4]), 0.9, "two"),
                Detection(np.array([0.0, 0.0, w, h]), 0.6, "two"),
            ]

    cap = Capture(mode="video", detnet=_oracle(clip), detector=Two())
    results = [cap.process(f, i / 25) for i, f in enumerate(frames)]
    assert [len(r.people) for r in results] == [1, 1, 0, 1]
    assert results[0].people[0].id == 0 and results[1].people[0].id == 0
    assert results[3].people[0].id == 1  # a new track after the loss
    assert any("2 people detected" in n for n in results[0].notes)
    assert any("tracking lost" in n for n in results[2].notes)
    assert any("no person found" in n for n in results[2].notes)


def test_tracker_box_shrinks_at_most_max_shrink_per_frame():
    from fullcap.capture.detector import Tracker, TrackingConfig
    from fullcap.types import Keypoints

    def body(x0, y0, side):
        uv = np.array([[x0, y0], [x0 + side, y0 + side]], np.float32)
        return Keypoints(("a", "b"), uv, None, np.ones(2, np.float32))

    tr = Tracker(TrackingConfig(margin=1.3, max_shrink=0.9))
    tr.follow(body(100, 100, 100))
    np.testing.assert_allclose(tr.box, [85, 85, 215, 215])  # 1.3 x the extent
    tr.follow(body(300, 300, 50))  # the keypoints shrink to half: the box only by 10 %
    np.testing.assert_allclose(tr.box, [325 - 58.5, 325 - 58.5, 325 + 58.5, 325 + 58.5])
    tr.follow(body(0, 0, 200))  # growing is not limited
    np.testing.assert_allclose(tr.box, [-30, -30, 230, 230])
    tr.lose()
    tr.follow(body(0, 0, 10))  # a new track starts from its own keypoints
    np.testing.assert_allclose(tr.box, [-1.5, -1.5, 11.5, 11.5])


def test_weak_track_is_rechecked_with_the_detector(clip):
    """A tracked box whose keypoints come out unsure also runs the detector; its more
    confident result replaces the track's (same person id)."""
    from dataclasses import replace

    oracle = _oracle(clip)

    class Picky:  # confident only on a box covering most of the frame
        parts = oracle.parts

        def __call__(self, image, box):
            p = oracle(image, box)
            conf = 0.9 if box[2] - box[0] > 0.8 * max(image.shape[:2]) else 0.4
            return replace(p, body=replace(p.body, conf=np.full_like(p.body.conf, conf)))

    cap = Capture(mode="video", detnet=Picky(), detector=WholeFrameDetector(),
                  refine_detections=False)  # fmt: skip
    first, second = (cap.process(clip.frames[i], i / 25) for i in range(2))
    assert not any("weak track" in n for n in first.notes)
    assert any("weak track" in n for n in second.notes)
    assert second.people[0].id == first.people[0].id == 0
    np.testing.assert_allclose(second.people[0].bbox, first.people[0].bbox, atol=1e-3)
    assert second.people[0].score == pytest.approx(0.9, abs=0.01)

    class Elsewhere:  # a confident detection whose centre is outside the tracked box
        name = "elsewhere"

        def detect(self, image):
            h, w = image.shape[:2]
            return [Detection(np.array([0.0, 0.0, 2.0 * w, 2.0 * h]), 0.9, "elsewhere")]

    cap = Capture(mode="video", detnet=Picky(), detector=WholeFrameDetector(),
                  refine_detections=False)  # fmt: skip
    cap.process(clip.frames[0], 0.0)
    track_box = cap.tracker.box.copy()
    cap.detector = Elsewhere()
    kept = cap.process(clip.frames[1], 1 / 25)
    assert not any("weak track" in n for n in kept.notes)
    np.testing.assert_allclose(kept.people[0].bbox, track_box, atol=1e-3)


def test_upper_body_boxes_hang_from_the_frame_top():
    from fullcap.capture.detector import upper_body_boxes

    boxes = upper_body_boxes(640, 480, (1.5, 2.0))
    np.testing.assert_allclose(boxes[0], [320 - 360, 0, 320 + 360, 720])
    np.testing.assert_allclose(boxes[1], [320 - 480, 0, 320 + 480, 960])


class _WantsTallBox:
    """Confident keypoints only in a box at least ``ratio`` x the frame's height whose top is at
    the frame's top (a person cut off by the bottom of the frame), unsure elsewhere; confident
    everywhere with ``ratio=None``. Records the boxes it was given."""

    def __init__(self, oracle, ratio: float | None = 1.8):
        self.oracle, self.ratio, self.boxes = oracle, ratio, []
        self.parts = oracle.parts

    def __call__(self, image, box):
        from dataclasses import replace

        self.boxes.append(np.asarray(box, float).copy())
        p = self.oracle(image, box)
        tall = self.ratio is None or (
            box[3] - box[1] >= self.ratio * image.shape[0] and abs(box[1]) < 1
        )
        conf = np.full_like(p.body.conf, 0.9 if tall else 0.1)
        return replace(p, body=replace(p.body, conf=conf))


def test_a_person_cut_off_at_the_hips_is_found_in_an_upper_body_framing(clip):
    """The detector's box and the whole frame show nobody; the upper-body framings (the frame
    as the top of a taller box) do, and are used only when the detector's box failed."""
    from fullcap.capture.detector import TrackingConfig

    class Small:  # a confident but wrong detection (HOG on a portrait's helmet)
        name = "small"

        def detect(self, image):
            return [Detection(np.array([10.0, 10.0, 40.0, 60.0]), 0.7, "small")]

    frame = clip.frames[0]
    est = _WantsTallBox(_oracle(clip))
    found = Capture(mode="image", detnet=est, detector=Small()).process(frame, 0.0)
    assert len(found.people) == 1
    assert any("upper-body framing" in n for n in found.notes)
    box = found.people[0].bbox
    assert box[1] == pytest.approx(0.0) and box[3] >= 1.8 * frame.shape[0]
    # tried in order: the detector's box (and its refinement), the whole frame, the framings
    assert est.boxes[0][2] - est.boxes[0][0] < 0.5 * frame.shape[1]

    est = _WantsTallBox(_oracle(clip))
    off = Capture(mode="image", detnet=est, detector=Small(),
                  tracking=TrackingConfig(upper_body_scales=()))  # fmt: skip
    r = off.process(frame, 0.0)
    assert r.people == () and any("no person found" in n for n in r.notes)
    assert all(b[3] - b[1] < 1.8 * frame.shape[0] for b in est.boxes)  # none tried

    # a detector box that shows the person: no framings tried, same result as without them
    est = _WantsTallBox(_oracle(clip), ratio=None)
    cap = Capture(mode="image", detnet=est, detector=WholeFrameDetector(), refine_detections=False)
    r = cap.process(frame, 0.0)
    assert len(r.people) == 1 and len(est.boxes) == 1
    assert not any("upper-body" in n for n in r.notes)


def test_a_track_found_in_an_upper_body_framing_keeps_its_framing(clip):
    """Video: the next box moves with the keypoints but keeps the framing's size and place
    relative to them, instead of shrinking onto the visible keypoints."""
    est = _WantsTallBox(_oracle(clip))
    cap = Capture(mode="video", detnet=est, detector=WholeFrameDetector(), filter=None)
    first = cap.process(clip.frames[0], 0.0)
    assert len(first.people) == 1 and any("upper-body framing" in n for n in first.notes)
    box0 = first.people[0].bbox
    second = cap.process(clip.frames[1], 1 / 30)
    assert len(second.people) == 1 and second.people[0].id == first.people[0].id
    assert not any("tracking lost" in n or "weak track" in n for n in second.notes)
    box1 = second.people[0].bbox
    assert box1[3] - box1[1] == pytest.approx(box0[3] - box0[1], rel=0.1)
    # the keypoints moved between the frames; the box moved with them
    shift = clip.body_uv[1].mean(0) - clip.body_uv[0].mean(0)
    np.testing.assert_allclose((box1[:2] + box1[2:]) / 2 - (box0[:2] + box0[2:]) / 2, shift,
                               atol=0.15 * (box0[3] - box0[1]))  # fmt: skip


def test_frame_conversions_and_downscaling(clip):
    cap = Capture(mode="image", detnet=_oracle(clip), max_side=256)
    rgb = clip.frames[1]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], 2)
    deep = rgb.astype(np.uint16) * 257
    for frame, note in ((grey, "grey"), (rgba, "alpha"), (deep, "16-bit")):
        r = cap.process(frame, 0.0)
        assert any(note in n for n in r.notes) and len(r.people) == 1
    big = cv2.resize(rgb, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    r = cap.process(big, 0.0)
    assert r.image_size == (big.shape[1], big.shape[0]) and any("downscaled" in n for n in r.notes)
    np.testing.assert_allclose(r.people[0].body.uv, 3 * clip.body_uv[1], atol=0.05)
    for bad, match in (
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 2), np.uint8), "channels"),
        (np.zeros((4, 4, 3), np.int32), "dtype"),
    ):
        with pytest.raises(ValueError, match=match):
            validate_frame(bad)
    with pytest.raises(TypeError):
        validate_frame([[0, 0, 0]])


# ------------------------------------------------------------------------ bad inputs
def test_missing_unsupported_and_corrupt_inputs(clip, media, tmp_path, capsys):
    oracle = _oracle(clip)
    cap = Capture(mode="video", detnet=oracle)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "bad.mp4").write_bytes(b"\0not a video" * 100)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cases = [
        (tmp_path / "nope.mp4", "does not exist"),
        (tmp_path / "notes.txt", "unsupported input"),
        (tmp_path / "bad.mp4", "cannot open video"),
        (tmp_path / "broken.png", "could not be decoded"),
    ]
    for path, message in cases:
        assert capture(str(path), str(tmp_path / "out"), pipeline=cap, progress=False) == EXIT_INPUT
        assert message in capsys.readouterr().err
    assert oracle.calls == 0


def test_truncated_video_keeps_what_decoded(clip, media, tmp_path, capsys):
    cap = Capture(mode="video", detnet=_oracle(clip))
    code = capture(str(media / "truncated.avi"), str(tmp_path), pipeline=cap, progress=False)
    assert code == EXIT_PARTIAL
    rows = read_jsonl(tmp_path / "frames.jsonl")
    assert 0 < len(rows) < 6
    with np.load(tmp_path / "result.npz") as z:  # valid, marked incomplete
        assert len(z["frame"]) == len(rows) and not bool(z["complete"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "decoding stopped" in summary["problems"][0]
    assert "decoding stopped" in capsys.readouterr().out


def test_unreadable_image_in_directory_is_skipped(clip, media, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for name in ("a.png", "c.png"):
        (d / name).write_bytes((media / "images" / "img_000.png").read_bytes())
    (d / "b.png").write_bytes(b"")  # zero-size
    cap = Capture(mode="image", detnet=_oracle(clip))
    assert capture(str(d), str(tmp_path / "out"), pipeline=cap, progress=False) == EXIT_PARTIAL
    rows = read_jsonl(tmp_path / "out" / "frames.jsonl")
    assert [r["source"] for r in rows] == ["a.png", "c.png"]
    assert open_media(d).kind == "images"


def test_unwritable_output_fails_before_any_work(clip, media, tmp_path, capsys):
    oracle = _oracle(clip)
    cap = Capture(mode="image", detnet=oracle)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        code = capture(str(media / "images"), str(out), pipeline=cap, progress=False)
        assert code == EXIT_OUTPUT
        assert "output" in capsys.readouterr().err
    assert oracle.calls == 0


def test_camera_argument(tmp_path):
    assert parse_camera(None) is None and parse_camera("60")[0] == 60
    (tmp_path / "k.json").write_text(json.dumps({"fx": 500, "fy": 500, "cx": 320, "cy": 240}))
    assert parse_camera(str(tmp_path / "k.json"))[0, 2] == 320
    (tmp_path / "bad.json").write_text("{}")
    for bad in ("500", str(tmp_path / "bad.json"), str(tmp_path / "none.json")):
        with pytest.raises(ValueError, match="--intrinsics"):
            parse_camera(bad)


def test_missing_detnet_is_a_clear_error(media, tmp_path, capsys):
    from fullcap.assets import AssetError, asset_path
    from fullcap.models.weights import WEIGHTS

    with pytest.raises(MissingComponent, match="fullcap train detnet"):
        Capture(detnet=None)
    with pytest.raises(FileNotFoundError):
        Capture.from_weights(detnet=str(Path("/nonexistent/detnet.safetensors")))
    bad = capture(str(media / "images"), str(tmp_path), detnet=str(tmp_path / "x"), progress=False)
    assert bad == EXIT_MODEL
    try:
        asset_path(WEIGHTS["detnet_lite"])
    except AssetError:
        code = capture(str(media / "images"), str(tmp_path), device="cpu", progress=False)
        assert code == EXIT_MODEL and "fullcap train detnet" in capsys.readouterr().err


# ------------------------------------------------------------------------ jitter
def test_one_euro_filter_reduces_keypoint_jitter(model, capsys):
    """Noisy keypoints (2 px, 1 cm) on a 90-frame 30 fps walk, with and without the filter:
    mean acceleration (jitter) and mean error to the truth."""
    walk = make_clip(model, n=90, fps=30.0, render=False)
    dummy = np.zeros((160, 192, 3), np.uint8)
    report = {}
    for name, cfg in (("raw", None), ("1euro", OneEuroConfig())):
        oracle = OracleEstimator(walk, counter_lookup(), noise_px=2.0, noise_m=0.01, seed=1)
        cap = Capture(mode="video", detnet=oracle, filter=cfg, refine_detections=False)
        res = [cap.process(dummy, t).people[0].body for t in walk.times]
        uv, xyz = np.stack([b.uv for b in res]), np.stack([b.xyz for b in res])
        truth = walk.body_cam - walk.body_cam[:, :1]
        report[name] = {
            "acc_uv_px_s2": mean_acceleration(uv, walk.times),
            "err_uv_px": float(np.linalg.norm(uv - walk.body_uv, axis=-1).mean()),
            "acc_xyz_m_s2": mean_acceleration(xyz, walk.times),
            "err_xyz_mm": float(1000 * np.linalg.norm(xyz - truth, axis=-1).mean()),
        }
    report["truth"] = {"acc_uv_px_s2": mean_acceleration(walk.body_uv, walk.times)}
    with capsys.disabled():
        print(
            "\njitter:",
            json.dumps({k: {a: round(b, 2) for a, b in v.items()} for k, v in report.items()}),
        )
    raw, filt = report["raw"], report["1euro"]
    assert filt["acc_uv_px_s2"] < raw["acc_uv_px_s2"] / 2
    assert filt["acc_xyz_m_s2"] < raw["acc_xyz_m_s2"] / 2
    assert filt["err_uv_px"] < raw["err_uv_px"] and filt["err_xyz_mm"] < raw["err_xyz_mm"] * 1.1


def test_crops_from_the_float_frame_equal_uint8_crops():
    """The estimator converts the frame to float once and crops from that: every crop must
    hold exactly what a crop of the uint8 frame gives DetNet (values / 255)."""
    from fullcap.models.crops import crop

    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (1, 3, 120, 160), dtype=torch.uint8, generator=g)
    boxes = torch.tensor([[10.3, 20.7, 90.1, 100.5], [-30.0, 60.2, 50.0, 140.2]])  # 2nd: out
    want = crop(img.expand(2, -1, -1, -1), boxes, 32).float() / 255.0
    got = _crop(img.float().expand(2, -1, -1, -1), boxes, 32)
    assert torch.equal(got, want)
    assert (want[1] == 0).any() and (want[0] > 0).any()  # the padding case is exercised


@pytest.mark.parametrize(
    ("kind", "asked", "expected"),
    [("video", None, True), ("image", None, True), ("webcam", None, False), ("webcam", True, True),
     ("video", False, False)],
)  # fmt: skip
def test_flip_test_is_on_for_files_and_off_for_webcams(
    monkeypatch, tmp_path, kind, asked, expected
):
    """``fullcap capture``'s default flip test: files get the more accurate keypoints, live
    webcams the speed; an explicit choice wins. Also: a keypoint stage that is not a DetNet
    network cannot take it."""
    import fullcap.capture.media as media_module

    class Media:
        def __init__(self, *args, **kwargs):
            self.kind = kind

    seen = {}

    def from_weights(**kwargs):
        seen.update(kwargs)
        raise MissingComponent("stop here")

    monkeypatch.setattr(media_module, "open_media", Media)
    monkeypatch.setattr(Capture, "from_weights", staticmethod(from_weights))
    code = capture("0", str(tmp_path / "out"), flip_test=asked)
    assert code == EXIT_MODEL and seen["flip_test"] is expected
    with pytest.raises(ValueError, match="flip_test applies to a DetNet network"):
        Capture(mode="image", detnet=lambda image, box: None, flip_test=True)
