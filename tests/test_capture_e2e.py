"""End to end with the shipped networks (DetNet, IKNets, FaceNet) on the bundled sample clip:
outputs exist, parse, and match the clip's ground truth within the accuracy the shipped
weights measured (docs/model_cards/detnet_lite.md), with a margin."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fullcap.cli import main
from fullcap.commands.demo import capture_sample
from fullcap.export.bvh import read_bvh
from fullcap.export.gltf import read_glb
from fullcap.export.jsonl import read_jsonl

torch.set_num_threads(1)
FRAMES = 30

# Bounds: the shipped weights (preview 6) with the flip test (on for this video file)
# measured 6.55 px, 0.94, 55 mm and 1.24 px on these 30 frames with 1 thread, hands 29 + 25
# of 30 frames found at 5.6 px; without it 7.48 px, 0.90, 57 mm, 1.23 px, hands 28 + 23 at
# 6.0 px (an AMD EPYC CPU). Preview 5: 6.76 px, 0.91, 54 mm, 1.21 px, hands 28 + 23 at 6.8
# px; without the flip test 7.96 px, 0.87, 53 mm, 1.25 px, hands 30 + 19 at 6.4 px (preview
# 4: 59 mm, the rest the same: the refiners change only 3D; see
# docs/model_cards/detnet_lite.md). The bounds, set for preview 3 (8.7 px, 0.81, 61 mm, 1.24
# px, hands 25 + 24 at 7.0 px; the hand branch before it 20 + 10 at 10.7 px), leave about a
# third for other CPUs/torch.
MAX_BODY_ERR2D_PX = 12.0
MIN_BODY_PCK2D = 0.7
MAX_BODY_PA_MPJPE_MM = 80.0
MAX_FACE_ERR2D_PX = 1.7
MIN_HAND_FRAMES = 40  # left + right, of 2 x 30
MAX_HAND_ERR2D_PX = 10.0


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    code = capture_sample(out, "cpu", progress=False, max_frames=FRAMES)
    return out, code


def test_sample_capture_writes_every_output(demo_run):
    out, code = demo_run
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["missing"] == [] and summary["frames"] == FRAMES
    assert summary["flip_test"] is True  # a video file: the flip test is on by default
    rows = read_jsonl(out / "frames.jsonl")
    assert len(rows) == FRAMES and all(r["people"] for r in rows)
    p = rows[-1]["people"][0]
    assert len(p["body"]["uv"]) == 33 and p["model"] is not None
    assert len(p["face"]["expression"]) == 52 and len(p["face"]["rotation"]) == 3
    with np.load(out / "result.npz") as z:
        assert bool(z["complete"]) and z["body_uv"].shape == (FRAMES, 33, 2)
        assert z["body_found"].all() and np.isfinite(z["transl"]).all()
    bvh = read_bvh(out / "capture.bvh")
    assert bvh.motion.shape[0] == FRAMES and bvh.frame_time == pytest.approx(1 / 25, rel=1e-3)
    glb = read_glb(out / "capture.glb")
    assert glb.doc["animations"] and glb.doc["meshes"]
    assert (out / "arkit.csv").read_text().count("\n") == FRAMES + 1
    assert (out / "overlay.mp4").stat().st_size > 10_000


def test_sample_capture_matches_ground_truth(demo_run):
    out, _ = demo_run
    m = json.loads((out / "accuracy.json").read_text())
    assert m["body_frames"] == FRAMES and m["face_frames"] == FRAMES
    assert m["body_err2d_px"] < MAX_BODY_ERR2D_PX, m
    assert m["body_pck2d"] > MIN_BODY_PCK2D, m
    assert m["body_pa_mpjpe_mm"] < MAX_BODY_PA_MPJPE_MM, m
    assert m["face_err2d_px"] < MAX_FACE_ERR2D_PX, m
    assert m["left_hand_frames"] + m["right_hand_frames"] >= MIN_HAND_FRAMES, m
    assert m["hand_err2d_px"] < MAX_HAND_ERR2D_PX, m


def test_bench_capture_reports_stages(capsys):
    argv = ["bench", "capture", "--frames", "4", "--warmup", "1", "--threads", "1"]
    assert main([*argv, "--no-mediapipe", "--json", "--device", "cpu"]) == 0
    r = json.loads(capsys.readouterr().out)
    f = r["fullcap"]
    assert r["frames"] == 4 and r["size"] == "640x480" and f["frames_with_person"] == 4
    assert f["mean_ms"] > 0 and f["fps"] == pytest.approx(1000 / f["mean_ms"])
    stages = f["stages_ms"]
    assert any(k.startswith("DetNet") for k in stages) and "FaceNet" in stages
    assert sum(v for k, v in stages.items() if not k.startswith("rest")) < f["mean_ms"] * 1.01
    assert "mediapipe_holistic" not in r


def test_flip_test_improves_the_body_2d(demo_run, tmp_path):
    """The demo's capture (a video file: flip test on) against the same capture without it:
    the averaged body maps put the 2D keypoints closer (measured 6.55 against 7.48 px on these
    frames with preview 6, 6.8 against 8.0 with preview 5); a wrong left/right permutation
    would make them far worse."""
    out, _ = demo_run
    assert capture_sample(tmp_path, "cpu", progress=False, max_frames=FRAMES, flip_test=False) == 0
    flip = json.loads((out / "accuracy.json").read_text())
    plain = json.loads((tmp_path / "accuracy.json").read_text())
    assert json.loads((tmp_path / "summary.json").read_text())["flip_test"] is False
    assert flip["body_err2d_px"] < plain["body_err2d_px"] - 0.3, (flip, plain)
