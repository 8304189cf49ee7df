"""DetNet data, loss, training, resume, metrics, weights and evaluation on tiny shards."""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from fullcap.data.detnet_batches import build_sample, collate
from fullcap.data.heads import HEADS, detnet_config, get_spec
from fullcap.data.mixer import Mixer, ShardSource, open_sources
from fullcap.eval.detnet import (
    _readers,
    cross_dataset,
    evaluate,
    format_table,
    hand_crop_targets_in_image,
    read_at,
)
from fullcap.eval.metrics import auc_pck, pa_errors, pck, root_aligned_errors
from fullcap.geometry import random_rotmat
from fullcap.models.detnet import BODY_STRIDE, CROP_STRIDE, DetNet, DetNetConfig
from fullcap.models.posenet import PoseMaps, PoseTargets, decode, posenet_loss
from fullcap.models.weights import load_detnet
from fullcap.skeletons import BASIC9, BODY33, HAND21
from fullcap.synth import shards
from fullcap.synth.shards import Augment
from fullcap.train.detnet import DetNetTrainConfig, detnet_loss, export, forward, train

SOURCES = ("mtc_like", "h36m_like", "humbi_like", "coco_like", "hand_like", "face_like")
TINY = {"hidden": 16, "crop_width": 8, "body_size": 64, "hand_size": 32, "face_size": 32}


@pytest.fixture(scope="module")
def shard_dirs(tmp_path_factory) -> dict[str, str]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("detnet_shards")
    out = {}
    for s in SOURCES:
        shards.generate(root / s, s, 8, seed=3, shard_size=8, workers=1, size=128)
        out[s] = str(root / s)
    return out


def _tiny_config(readers) -> DetNetConfig:
    return detnet_config("lite", [r.spec for r in readers], **TINY)


# ----------------------------------------------------------------------------- heads, config
def test_heads_and_config_errors(tmp_path):
    h36m = HEADS["h36m"]
    parent = {
        n: (h36m.names[p] if p >= 0 else None)
        for n, p in zip(h36m.names, h36m.parents, strict=True)
    }
    assert parent["head"] == "nose" and parent["nose"] == "thorax"
    assert parent["left_shoulder"] == "thorax" and parent["pelvis"] is None
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        DetNetConfig.from_preset("huge")
    with pytest.raises(ValueError, match="not BODY33 names"):
        DetNetConfig(extended=(("h36m", h36m.names),))
    with pytest.raises(ValueError, match="unknown source 'mpii'"):
        get_spec("mpii")
    with pytest.raises(FileNotFoundError, match=r"not a shard folder.*fullcap synth generate"):
        ShardSource([tmp_path / "missing"])
    cfg = detnet_config("lite", [get_spec(s) for s in SOURCES])
    assert [h for h, _ in cfg.extended] == ["humbi", "h36m", "coco"]
    assert DetNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ----------------------------------------------------------------------------- batches
def _marker_item(item: dict, points: dict[int, np.ndarray]) -> dict:
    """The item with a black image and a 3x3 marker in channel c at each points[c] (u, v)."""
    img = torch.zeros_like(item["image"])
    for c, uv in points.items():
        u, v = int(uv[0]), int(uv[1])
        img[c, max(v - 1, 0) : v + 2, max(u - 1, 0) : u + 2] = 255
    return item | {"image": img}


def _centroid(channel: torch.Tensor) -> np.ndarray:
    w = channel.float()
    ys, xs = torch.meshgrid(torch.arange(w.shape[0]), torch.arange(w.shape[1]), indexing="ij")
    return np.array(
        [float((w * (xs + 0.5)).sum() / w.sum()), float((w * (ys + 0.5)).sum() / w.sum())]
    )


def test_crops_hold_keypoints_where_targets_say(shard_dirs):
    readers = open_sources(
        [shard_dirs["mtc_like"], shard_dirs["humbi_like"]],
        augment=Augment(out_size=128, p_flip=0.5),
    )
    cfg = _tiny_config(readers)
    wrist, middle = HAND21.index("wrist"), HAND21.index("middle1")
    elbow = BASIC9.index("left_elbow")
    seen = {True: 0, False: 0, "elbow": 0}
    for r in readers:
        body33 = list(r.sets["body33"])
        for i in range(len(r)):
            item = dict(r[i])
            # snap the marked keypoints to pixel centres, where the 3x3 markers are centred
            keys = (
                ("kp2d/left_hand", wrist),
                ("kp2d/right_hand", wrist),
                ("kp2d/body33", body33.index("left_elbow")),
            )
            pts = {}
            for c, (key, j) in enumerate(keys):
                item[key] = item[key].clone()
                item[key][j] = item[key][j].floor() + 0.5
                pts[c] = item[key][j].numpy()
            s = build_sample(_marker_item(item, pts), r.spec, r.sets, cfg)
            # body input: the elbow marker sits where the basic target says
            if s.basic[1][elbow] and (pts[2] > 2).all() and (pts[2] < 126).all():
                found = _centroid(s.body[2]) / BODY_STRIDE  # body-input px -> map px
                assert np.abs(found - s.basic[0][elbow].numpy()).max() < 0.1
                seen["elbow"] += 1
            for h in s.hands:
                left = bool(h["is_left"])
                crop = h["crop"].flip(-1) if left else h["crop"]  # as DetNet mirrors it
                ch = crop[0 if left else 1]
                if not h["valid2d"][wrist] or ch.sum() == 0:
                    continue
                target = h["uv"][wrist].numpy() * CROP_STRIDE
                half = 2.0 * cfg.hand_size / float(h["image_box"][2] - h["image_box"][0])
                if (target - half < 0).any() or (target + half > cfg.hand_size).any():
                    continue  # the marker would be cut by the crop's edge
                found = _centroid(ch)
                assert np.abs(found - target).max() < 0.5, (r.spec.name, i, left)
                # 3D: root middle1, unit wrist distance, mirrored like the 2D target
                torch.testing.assert_close(h["xyz"][middle], torch.zeros(3))
                assert abs(float(h["xyz"][wrist].norm()) - 1) < 1e-5
                du = float(h["uv"][wrist, 0] - h["uv"][middle, 0])
                if abs(du) > 1.0:
                    assert np.sign(du) == np.sign(float(h["xyz"][wrist, 0]))
                seen[left] += 1
    assert seen[True] > 0 and seen[False] > 0 and seen["elbow"] > 0, seen


def test_part_targets_lie_in_the_image(shard_dirs):
    """A close-up's other hand, out of the picture, gives no crop (it would be mostly
    padding), and no hand or face target is a keypoint outside the image."""
    readers = open_sources(
        [shard_dirs["hand_like"], shard_dirs["humbi_like"]], Augment(out_size=128)
    )
    cfg = _tiny_config(readers)
    off_image_hands = crops_seen = 0
    for r in readers:
        for i in range(len(r)):
            item = r[i]
            a = item["image"].shape[-1]
            for side in ("left", "right"):
                kp = item.get(f"kp2d/{side}_hand")
                if kp is not None and int(((kp >= 0) & (kp < a)).all(-1).sum()) < 6:
                    off_image_hands += 1
            s = build_sample(item, r.spec, r.sets, cfg)
            parts = [(h, f"kp2d/{'left' if h['is_left'] else 'right'}_hand") for h in s.hands]
            parts += [(f, "kp2d/face68") for f in s.faces]
            for part, key in parts:
                kp = item[key].float()[part["valid2d"]]
                assert len(kp) and ((kp >= 0) & (kp < a)).all(), (r.spec.name, i, key)
                crops_seen += 1
    assert off_image_hands > 0 and crops_seen > 0  # the case occurs, and crops remain


def test_mixer_composition_determinism_and_faces(shard_dirs):
    readers = open_sources(list(shard_dirs.values()), augment=Augment(out_size=128))
    cfg = _tiny_config(readers)
    m = Mixer(readers, cfg, factor=2, seed=5, keep_images=True)
    b = m.batch(3)
    counts = {s: b.sources.count(s) for s in SOURCES}
    assert counts == {
        "mtc_like": 4,
        "h36m_like": 4,
        "humbi_like": 4,
        "coco_like": 2,
        "hand_like": 2,
        "face_like": 2,
    }
    assert m.batch_size == 18 and b.body.shape == (18, 3, 64, 64)
    again = Mixer(readers, cfg, factor=2, seed=5, keep_images=True).batch(3)
    assert torch.equal(b.body, again.body) and torch.equal(b.hands.crops, again.hands.crops)
    assert m.position(4)["coco_like"] == {"epoch": 1, "offset": 0}  # 8 items, 2 per batch
    # 2D-only coco: no 3D; the pelvis (not in coco17) is unlabelled
    coco = [i for i, s in enumerate(b.sources) if s == "coco_like"]
    assert not b.basic.has3d[coco].any() and not b.basic.labelled[coco, 0].any()
    assert set(b.extended) == {"humbi", "h36m", "coco"} and b.face is not None
    # hand targets mapped back into the item image land on the labelled keypoints
    back = hand_crop_targets_in_image(b)
    assert back.shape == (len(b.hands.crops), 21, 2) and torch.isfinite(back).all()


# ----------------------------------------------------------------------------- loss, training
def test_loss_finite_and_falls_when_overfitting(shard_dirs):
    torch.manual_seed(0)
    readers = open_sources(list(shard_dirs.values()), augment=Augment(out_size=128))
    cfg = _tiny_config(readers)
    batch = Mixer(readers, cfg, jitter=False).batch(0)
    net = DetNet(cfg)
    tc = DetNetTrainConfig()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        losses = detnet_loss(net, forward(net, batch), batch, tc)
        assert all(torch.isfinite(v) for v in losses.values())
        first = first if first is not None else {k: v.item() for k, v in losses.items()}
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
    last = {k: v.item() for k, v in losses.items()}
    assert last["total"] < 0.3 * first["total"]
    for k in ("basic", "ext", "hand", "face"):
        assert last[k] < first[k], k


@pytest.fixture(scope="module")
def trained(shard_dirs, tmp_path_factory):
    """A straight 4-step run and a 2 + 2 resumed run of the same config."""
    data = tuple(shard_dirs.values())
    tc = DetNetTrainConfig(
        data=data,
        val=data,
        steps=4,
        eval_every=2,
        val_batches=1,
        checkpoint_every=1,
        image_size=128,
        overrides=TINY,
    )
    a, b = tmp_path_factory.mktemp("straight"), tmp_path_factory.mktemp("resumed")
    ra = train(a, tc, workers=0)
    rb1 = train(b, tc, workers=0, run_steps=2)
    rb2 = train(b, DetNetTrainConfig(steps=4), workers=0)  # configs from the checkpoint
    return a, b, (ra, rb1, rb2)


def test_resume_matches_uninterrupted_run(trained):
    a, b, (ra, rb1, rb2) = trained
    assert ra["finished"] and not rb1["finished"] and rb1["step"] == 2 and rb2["finished"]
    sa = torch.load(a / "last.pt", weights_only=True)
    sb = torch.load(b / "last.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 4
    for k, v in sa["model"].items():
        torch.testing.assert_close(sb["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    assert sa["scheduler"]["best"] == sb["scheduler"]["best"]
    assert set(sa["data_position"]) == set(SOURCES)
    rows = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all(math.isfinite(r["val_total"]) for r in rows)


def test_resume_can_widen_sigma_3d_and_set_the_lr(trained, tmp_path):
    _, b, _ = trained
    run = tmp_path / "run"
    shutil.copytree(b, run)
    r = train(run, DetNetTrainConfig(steps=5), workers=0, sigma_3d=2.5, lr=2e-4)
    assert r["finished"] and r["step"] == 5 and r["lr"] == pytest.approx(2e-4)
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["train_config"]["sigma_3d"] == 2.5
    # the loss scale changed, so the plateau schedule's best is the new run's, not the old one
    old = torch.load(b / "last.pt", weights_only=True)["scheduler"]["best"]
    assert state["scheduler"]["best"] != old
    with pytest.raises(ValueError, match="sigma_3d"):
        train(run, DetNetTrainConfig(steps=6), workers=0, sigma_3d=0.0)


def test_resume_can_set_the_cut_which_the_training_augmentation_uses(
    trained, tmp_path, monkeypatch
):
    import fullcap.train.detnet as train_module

    _, b, _ = trained
    run = tmp_path / "run"
    shutil.copytree(b, run)
    seen = []
    real = train_module.open_sources

    def spy(roots, augment=None, seed=0):
        seen.append(augment.p_cut)
        return real(roots, augment=augment, seed=seed)

    monkeypatch.setattr(train_module, "open_sources", spy)
    assert torch.load(run / "last.pt", weights_only=True)["train_config"]["cut"] == 0.0
    train(run, DetNetTrainConfig(steps=5), workers=0, cut=0.4)
    assert seen == [0.4, 0.0]  # training readers cut, validation readers not
    train(run, DetNetTrainConfig(steps=6), workers=0)  # kept by the checkpoint
    assert seen[2:] == [0.4, 0.0]
    assert torch.load(run / "last.pt", weights_only=True)["train_config"]["cut"] == 0.4
    with pytest.raises(ValueError, match="cut"):
        train(run, DetNetTrainConfig(steps=7), workers=0, cut=1.5)


def test_weight_average_is_kept_resumed_exported_and_taken_by_init(trained, tmp_path, caplog):
    from fullcap.models.weights import read_weights
    from fullcap.train.detnet import _read_init

    _, b, _ = trained
    run = tmp_path / "run"
    shutil.copytree(b, run)
    with pytest.raises(ValueError, match="ema"):
        train(run, DetNetTrainConfig(steps=5), workers=0, ema=1.0)
    train(run, DetNetTrainConfig(steps=5), workers=0, ema=0.5)
    s5 = torch.load(run / "last.pt", weights_only=True)
    assert s5["ema"]["decay"] == 0.5 and s5["ema"]["steps"] == 1  # starts at that step's weights
    for k, v in s5["model"].items():
        torch.testing.assert_close(s5["ema"]["model"][k], v, msg=k)
    r = train(run, DetNetTrainConfig(steps=6), workers=0)  # resumed, decay kept
    s6 = torch.load(run / "last.pt", weights_only=True)
    assert s6["ema"]["steps"] == 2 and math.isfinite(r["ema_val_loss"])
    moved = 0
    for k, v in s6["model"].items():
        if v.is_floating_point():
            want = 0.5 * s5["model"][k] + 0.5 * v  # the average of steps 5 and 6
            torch.testing.assert_close(s6["ema"]["model"][k], want, msg=k)
            moved += int(not torch.equal(v, s5["model"][k]))
    assert moved > 10
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(rows[-1]["ema_val_total"]) and rows[-1]["step"] == 6
    assert rows[-1]["ema_val_total"] != rows[-1]["val_total"]

    name = "backbone.stem.0.0.weight"
    averaged, raw = s6["ema"]["model"][name], s6["model"][name]
    tensors, meta = read_weights(export(run / "last.pt", tmp_path / "avg.safetensors"))
    assert torch.equal(tensors[name], averaged.half()) and meta["info"]["ema"]["steps"] == 2
    tensors, meta = read_weights(export(run / "last.pt", tmp_path / "raw.safetensors", raw=True))
    assert torch.equal(tensors[name], raw.half()) and "ema" not in meta["info"]
    with caplog.at_level(logging.INFO, logger="fullcap.train.detnet"):
        tensors, _ = _read_init(run / "last.pt")
    assert torch.equal(tensors[name], averaged) and "weight average" in caplog.text

    train(run, DetNetTrainConfig(steps=7), workers=0, ema=0.0)  # switched off
    assert "ema" not in torch.load(run / "last.pt", weights_only=True)


def test_weight_average_keeps_index_buffers_and_runs_like_its_weights():
    """The average runs as a network loaded with its weights: integer buffers (the bone
    index tables, which are not saved) are the network's, not blends rounded down."""
    from fullcap.train.detnet import _averaged

    torch.manual_seed(0)
    cfg = DetNetConfig(**TINY)
    net = DetNet(cfg)
    averaged = _averaged(net, 0.9995, None)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    for _ in range(3):
        net(x).basic.K.square().mean().backward()
        opt.step()
        averaged.update_parameters(net)
    for (name, b), kept in zip(net.named_buffers(), averaged.module.buffers(), strict=True):
        if not b.is_floating_point():
            assert torch.equal(kept, b), name
    loaded = DetNet(cfg)
    loaded.load_state_dict(averaged.module.state_dict())
    loaded.eval(), averaged.module.eval()
    with torch.no_grad():
        torch.testing.assert_close(averaged.module(x).basic.L, loaded(x).basic.L)


def test_weights_round_trip_and_eval(trained, shard_dirs, tmp_path):
    a, _, _ = trained
    path = export(a / "last.pt", tmp_path / "w.safetensors")
    net = load_detnet(path)
    state = torch.load(a / "last.pt", weights_only=True)
    ref = DetNet(DetNetConfig.from_dict(state["config"]))
    ref.load_state_dict(state["model"])
    ref.eval()
    x = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(net(x).basic.K, ref(x).basic.K, atol=2e-2, rtol=2e-2)
    assert net.config == ref.config
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_detnet(tmp_path / "nope.safetensors")
    report = evaluate(net, list(shard_dirs.values()), samples=8, image_size=128)
    assert set(report) == set(SOURCES)
    assert 0 <= report["h36m_like"]["pck150_pa"] <= 1 and "hand_auc_20_50" in report["hand_like"]
    assert "face_nme" in report["face_like"] and "pck150_pa" not in report["coco_like"]
    assert 0 <= report["mtc_like"]["oracle2d_pck150_pa"] <= 1
    flipped = evaluate(net, [shard_dirs["mtc_like"]], samples=8, image_size=128, flip_test=True)
    f, p = flipped["mtc_like"], report["mtc_like"]
    assert 0 <= f["pck150_pa"] <= 1 and f["err2d_px"] != p["err2d_px"]
    assert f["hand_err2d_px"] == pytest.approx(p["hand_err2d_px"], rel=1e-4)  # body maps only
    cut = evaluate(net, [shard_dirs["mtc_like"]], samples=8, image_size=128, cut=True)
    assert cut["mtc_like"]["items"] == p["items"] and cut["mtc_like"]["err2d_px"] != p["err2d_px"]
    (reader,) = _readers([shard_dirs["mtc_like"]], 128, cut=True)
    (whole,) = _readers([shard_dirs["mtc_like"]], 128)
    reader.set_epoch(0), whole.set_epoch(0)
    changed = 0
    for i in range(4):  # the same crops, blacked out below a line
        a, b = reader[i]["image"], whole[i]["image"]
        differ = (a != b).any(0)
        changed += int(differ.any())
        assert (a[:, differ] == 0).all()
    assert changed
    hand = report["hand_like"]
    for k in ("oracle2d_hand_auc_20_50", "meanpose_hand_auc_20_50"):
        assert 0 <= hand[k] <= 1, k
    assert hand["meanuv_hand_err2d_px"] > 0 and hand["meanpose_hand_epe_mm"] > 0
    for k in ("truez_pck150_pa", "truexy_pck150_pa"):
        assert 0 <= report["mtc_like"][k] <= 1, k
    for k in ("truez_hand_auc_20_50", "truexy_hand_auc_20_50"):
        assert 0 <= hand[k] <= 1, k
    table = cross_dataset(
        {"all": net}, [shard_dirs["h36m_like"], shard_dirs["coco_like"]], samples=4, image_size=128
    )
    text = format_table(table)
    assert "h36m_like" in text and "all" in text and "-" in text.splitlines()[-1]


def test_fine_tune_from_weights_trains_only_the_named_parts(trained, shard_dirs, tmp_path):
    """--init copies every fitting tensor; --train-only leaves the rest (batch-norm statistics
    included) untouched; --counts sets the batch; the hand's 3D weight reaches the loss."""
    a, _, _ = trained
    init = export(a / "last.pt", tmp_path / "init.safetensors")
    start = load_detnet(init).state_dict()
    hands = ("hand_like", "mtc_like")
    tc = DetNetTrainConfig(
        data=tuple(shard_dirs[s] for s in hands),
        val=(shard_dirs["hand_like"],),
        steps=3,
        eval_every=3,
        val_batches=1,
        image_size=128,
        overrides=TINY | {"hand_encoder": "light"},  # another hand encoder: starts fresh
        train_only=("hand_encoder", "hand_net"),
        counts={"hand_like": 2, "mtc_like": 1},
        hand_w3d=1.0,
        lambda_b=0.0,
        lambda_f=0.0,
    )
    with pytest.raises(ValueError, match="no count for \\['hand_like'\\]"):
        train(tmp_path / "bad", replace(tc, counts={"mtc_like": 1}), workers=0, init=init)
    with pytest.raises(ValueError, match="no DetNet parameter starts with 'hands'"):
        train(tmp_path / "bad2", replace(tc, train_only=("hands",)), workers=0, init=init)
    r = train(tmp_path / "ft", tc, workers=0, init=init)
    assert r["finished"] and r["batch_size"] == 3
    state = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    after = state["model"]
    # the heads of the sources not in this run's data are kept, with the init's weights
    heads = [h for h, _ in DetNetConfig.from_dict(state["config"]).extended]
    assert sorted(heads) == sorted(h for h, _ in load_detnet(init).config.extended)
    assert set(heads) > {"humbi"}
    moved = {k for k, v in after.items() if k in start and not torch.equal(v.float(), start[k])}
    assert moved and all(k.startswith(("hand_encoder.", "hand_net.")) for k in moved), moved
    assert any(k.startswith("hand_net.") for k in moved)
    assert not any(k.startswith("hand_encoder.net.") for k in start)  # was not in init
    assert any(k.startswith("hand_encoder.net.") for k in after)
    bn = "backbone.stem.0.1.running_mean"  # a frozen batch norm keeps its statistics
    assert torch.equal(after[bn], start[bn])
    foreign = tmp_path / "foreign.pt"  # e.g. another network's checkpoint
    torch.save({"model": {"encoder.weight": torch.zeros(3)}}, foreign)
    with pytest.raises(ValueError, match="does not fit this DetNet"):
        train(tmp_path / "bad3", tc, workers=0, init=foreign)


def test_hand_3d_weight_scales_the_hand_loss(shard_dirs):
    torch.manual_seed(0)
    readers = open_sources([shard_dirs["hand_like"]], augment=Augment(out_size=128))
    cfg = _tiny_config(readers)
    batch = Mixer(readers, cfg, jitter=False, counts={"hand_like": 4}).batch(0)
    net = DetNet(cfg).eval()
    with torch.no_grad():
        out = forward(net, batch)
    h = {w: detnet_loss(net, out, batch, DetNetTrainConfig(hand_w3d=w))["hand"] for w in (0, 1, 10)}
    assert batch.hands is not None and float(h[1]) > float(h[0])
    torch.testing.assert_close(h[10] - h[0], 10 * (h[1] - h[0]), rtol=1e-4, atol=1e-3)


def test_crop_encoders_and_parse_counts():
    from fullcap.commands.detnet import parse_counts
    from fullcap.models.backbone import make_crop_encoder

    for name in ("light", "context"):
        enc = make_crop_encoder(name, 8)
        assert enc(torch.zeros(2, 3, 32, 32)).shape == (2, 8, 8, 8)
    with pytest.raises(ValueError, match="unknown crop encoder"):
        make_crop_encoder("huge", 8)
    with pytest.raises(ValueError, match="unknown hand_encoder"):
        DetNetConfig(hand_encoder="huge")
    # configs written before the field existed load with the encoder they were trained with
    old = DetNetConfig().to_dict()
    del old["hand_encoder"]
    assert DetNetConfig.from_dict(old).hand_encoder == "light"
    assert DetNetConfig.from_preset("lite").hand_encoder == "context"
    assert parse_counts(["hand_like=8", "mtc_like=0"]) == {"hand_like": 8, "mtc_like": 0}
    for bad in ("hand_like", "hand_like=-1", "=3", "hand_like=x"):
        with pytest.raises(ValueError, match="SOURCE=N"):
            parse_counts([bad])


def test_training_needs_data(tmp_path):
    with pytest.raises(ValueError, match="needs training"):
        train(tmp_path / "run", DetNetTrainConfig(steps=1))
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        DetNetTrainConfig(factor=0)
    from fullcap.commands.detnet import train as cmd_train

    with pytest.raises(ValueError, match="unknown preset"):
        cmd_train(str(tmp_path / "r"), "huge", [], [], 1, 1, 0, 0)


# ----------------------------------------------------------------------------- metrics
def test_pck_and_procrustes_metrics():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(4, 9, 3, generator=g) * 0.3
    valid = torch.ones(4, 9, dtype=torch.bool)
    err, m = pa_errors(target.clone(), target, valid)
    assert pck(err, 0.15, m) == 1.0 and float(err.max()) < 1e-6
    # similarity transforms do not change PA errors
    R = random_rotmat(4, generator=g)
    moved = 1.7 * target @ R.transpose(1, 2) + torch.tensor([0.3, -1.0, 2.0])
    err2, _ = pa_errors(moved, target, valid)
    assert float(err2.max()) < 1e-5
    # root-aligned errors of a uniform shift are zero; a single moved keypoint is known
    shifted = target + 0.2
    e = root_aligned_errors(shifted, target, root=0)
    assert float(e.max()) < 1e-6
    bad = target.clone()
    bad[:, 3] += torch.tensor([0.2, 0.0, 0.0])
    e = (bad - target).norm(dim=-1)
    assert pck(e, 0.15, valid) == pytest.approx(8 / 9)
    assert pck(e, torch.full((4,), 0.25), valid) == 1.0
    assert math.isnan(pck(e, 0.15, torch.zeros_like(valid)))
    # too few valid keypoints: the sample is left out
    few = torch.zeros_like(valid)
    few[:, :3] = True
    _, m = pa_errors(target, target, few)
    assert not m.any()


def test_true_depth_and_in_plane_decomposition():
    from fullcap.eval.detnet import _with_true

    g = torch.Generator().manual_seed(0)
    truth = torch.randn(4, 9, 3, generator=g)
    depth_wrong = truth.clone()
    depth_wrong[..., 2] += 0.3 * torch.randn(4, 9, generator=g)
    before = depth_wrong.clone()
    fixed = _with_true(depth_wrong, truth, slice(2, 3))
    torch.testing.assert_close(fixed, truth)
    assert torch.equal(depth_wrong, before)  # the prediction itself is left as it was
    still = _with_true(depth_wrong, truth, slice(0, 2))
    assert torch.equal(still[..., 2], depth_wrong[..., 2]) and torch.equal(
        still[..., :2], truth[..., :2]
    )
    err, m = pa_errors(still, truth)
    assert m.all() and err.mean() > 0.05


def test_location_read_out_and_wide_3d_weight():
    g = torch.Generator().manual_seed(1)
    maps = PoseMaps(
        torch.randn(2, 3, 8, 8, generator=g),
        torch.randn(2, 6, 8, 8, generator=g),
        torch.randn(2, 9, 8, 8, generator=g),
    )
    uv, _, xyz = decode(maps)
    torch.testing.assert_close(read_at(maps, uv), xyz)
    # the 3D terms of a location map that is right only at the keypoint's cell: zero error
    # with the narrow weight hardly changes; a wide weight sees the wrong cells around it
    t = PoseTargets(
        uv=torch.full((2, 3, 2), 4.5),
        valid2d=torch.ones(2, 3, dtype=torch.bool),
        xyz=torch.ones(2, 3, 3),
        has3d=torch.ones(2, dtype=torch.bool),
    )
    L = torch.zeros(2, 3, 3, 8, 8)
    L[..., 4, 4] = 1.0
    m = PoseMaps(maps.K, torch.zeros(2, 6, 8, 8), L.reshape(2, 9, 8, 8))
    bones = torch.tensor([[1, 0], [2, 0]])
    narrow = posenet_loss(m, t, bones, sigma=1.0)["l"]
    wide = posenet_loss(m, t, bones, sigma=1.0, sigma_3d=3.0)["l"]
    assert wide > 3 * narrow


def test_hand_auc():
    valid = torch.ones(2, 21, dtype=torch.bool)
    assert auc_pck(torch.zeros(2, 21), valid) == pytest.approx(1.0)
    assert auc_pck(torch.full((2, 21), 60.0), valid) == 0.0
    # errors of 35 mm: PCK is 0 below 35 and 1 from 35 on: area = half the range
    assert auc_pck(torch.full((2, 21), 35.0), valid, n=301) == pytest.approx(0.5, abs=0.01)
    # hand units -> mm: a prediction off by 0.1 wrist-middle1 lengths of 80 mm is 8 mm off
    pred = torch.zeros(1, 21, 3)
    pred[0, 1, 0] = 0.1
    e = root_aligned_errors(pred, torch.zeros(1, 21, 3), 9, torch.tensor([0.08])) * 1000
    assert float(e[0, 1]) == pytest.approx(8.0)


def test_collate_rejects_empty_and_bad_images(shard_dirs):
    with pytest.raises(ValueError, match="at least one"):
        collate([])
    r = open_sources([shard_dirs["h36m_like"]])[0]
    item = r[0] | {"image": torch.zeros(3, 64, 32, dtype=torch.uint8)}
    with pytest.raises(ValueError, match=r"\(3, A, A\)"):
        build_sample(item, r.spec, r.sets, detnet_config("lite", [r.spec]))


def test_neck_starts_as_the_identity_and_learns():
    """A neck added to trained weights changes no output at step 0 (zero-initialised last
    layers), yet every neck parameter gets a gradient; bad neck settings are refused."""
    torch.manual_seed(0)
    base_cfg = DetNetConfig.from_preset("lite", body_size=64, hand_size=32, face_size=32)
    base = DetNet(base_cfg)
    for m in base.modules():  # trained-looking batch-norm statistics, not the defaults
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    cfg = replace(base_cfg, neck_blocks=2, neck_attention=True, neck_layers=1)
    net = DetNet(cfg)
    missing, unexpected = net.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("neck.") for k in missing)
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    base.eval(), net.eval()
    with torch.no_grad():
        a, b = base(x), net(x)
    for name in ("K", "D", "L"):
        assert torch.equal(getattr(a.basic, name), getattr(b.basic, name))
    assert torch.equal(a.extended["humbi"].L, b.extended["humbi"].L)
    net.train()
    neck = dict(net.neck.named_parameters())
    assert len(neck) > 10
    opt = torch.optim.SGD(neck.values(), lr=0.1)
    for _ in range(2):  # the zero-initialised layers move first, then the rest follows
        opt.zero_grad()
        out = net(x)
        (out.basic.K.square().sum() + out.basic.L.square().sum()).backward()
        opt.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in neck.values()), [
        k for k, p in neck.items() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    # the transformer layer's learnt positions are resampled for a map of another size
    layer = net.neck.layers[0]
    assert layer.pos.shape[-2:] == (8, 8)
    assert layer(torch.randn(1, 128, 12, 12)).shape == (1, 128, 12, 12)
    bad_values = (dict(neck_blocks=-1), dict(neck_blocks=True), dict(neck_attention=1))
    for bad in (*bad_values, dict(neck_layers=-2), dict(neck_layers=1.5)):
        with pytest.raises(ValueError, match="neck"):
            replace(base_cfg, **bad)
    old = base_cfg.to_dict()
    del old["neck_blocks"], old["neck_attention"], old["neck_layers"]  # configs before the neck
    assert DetNetConfig.from_dict(old) == base_cfg


def test_widened_blocks_start_where_the_narrow_weights_were(shard_dirs, tmp_path, capsys):
    """--block-expand widens the inner channels of the backbone's last blocks and the neck's:
    narrower --init weights are embedded so that every output is what it was (the new
    channels' readers start at zero), the new channels get gradients, the training command
    takes the flag and a fine-tune inherits it; bad values are one-line errors."""
    from fullcap.cli import main
    from fullcap.commands.detnet import train as train_command
    from fullcap.train.detnet import _load_init

    torch.manual_seed(0)
    base_cfg = DetNetConfig.from_preset("lite", body_size=64, hand_size=32, face_size=32)
    base = DetNet(replace(base_cfg, neck_blocks=2, neck_attention=True))
    for m in base.modules():  # trained-looking batch-norm statistics, not the defaults
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    wide = DetNet(replace(base.config, block_expand=2))
    assert _load_init(wide, base.state_dict(), "base") == []
    block = wide.backbone.stage3[1]
    assert block.conv1[0].out_channels == 256 and block.conv2[0].in_channels == 256
    assert wide.neck.blocks[0].conv1[0].out_channels == 256
    assert wide.backbone.stage1[0].conv1[0].out_channels == 48  # the early stages as they were
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    base.eval(), wide.eval()
    with torch.no_grad():
        a, b = base(x), wide(x)
    assert torch.equal(a.features, b.features)
    for name in ("K", "D", "L"):
        assert torch.equal(getattr(a.basic, name), getattr(b.basic, name))
    # the new channels are alive: nonzero activations, and their readers get gradients
    wide.train()
    out = wide(x)
    (out.basic.K.square().sum() + out.basic.L.square().sum()).backward()
    new_in = block.conv2[0].weight.grad[:, 128:]
    assert new_in.abs().sum() > 0 and block.conv2[0].weight[:, 128:].abs().sum() == 0
    for bad in (0, 9, 1.5, True):
        with pytest.raises(ValueError, match="block_expand"):
            replace(base_cfg, block_expand=bad)
    with pytest.raises(ValueError, match="lite backbone only"):
        DetNetConfig.from_preset("paper", block_expand=2)
    old = base_cfg.to_dict()
    del old["block_expand"]  # configs up to preview 8
    assert DetNetConfig.from_dict(old) == base_cfg

    data = shard_dirs["h36m_like"]
    bad = tmp_path / "bad"
    argv = ["train", "detnet", "--data", data, "--val", data, "--out", str(bad), "--steps", "1"]
    assert main([*argv, "--block-expand", "0"]) == 1
    assert "block_expand must be" in capsys.readouterr().err and not bad.exists()
    kw = dict(steps=1, factor=1, seed=0, workers=0, eval_samples=2, image_size=128, body_size=64)
    out = tmp_path / "wide"
    assert train_command(str(out), "lite", [data], [data], block_expand=2, **kw) == 0
    assert load_detnet(out / "weights.safetensors").config.block_expand == 2
    init = str(out / "weights.safetensors")
    assert train_command(str(tmp_path / "ft"), "lite", [data], [data], init=init, **kw) == 0
    assert load_detnet(tmp_path / "ft" / "weights.safetensors").config.block_expand == 2


def test_train_command_body_size(shard_dirs, tmp_path, capsys, caplog):
    """--body-size, --hand-size and the neck flags set a new run's body input, hand crops and
    neck (the checkpoint's config says so); a size that does not fit the network's stride is
    a one-line error before anything is written."""
    from fullcap.cli import main
    from fullcap.commands.detnet import train as train_command
    from fullcap.models.weights import read_weights

    data = shard_dirs["h36m_like"]
    bad = tmp_path / "bad"
    argv = ["train", "detnet", "--data", data, "--val", data, "--out", str(bad)]
    assert main([*argv, "--body-size", "100", "--steps", "1"]) == 1
    assert "multiple of 8" in capsys.readouterr().err and not bad.exists()
    assert main([*argv, "--hand-size", "50", "--steps", "1"]) == 1
    assert "multiple of 4" in capsys.readouterr().err and not bad.exists()
    assert main([*argv, "--ema", "1.5", "--steps", "1"]) == 1
    assert "ema is a decay" in capsys.readouterr().err and not bad.exists()
    out = tmp_path / "run"
    kw = dict(steps=1, factor=1, seed=0, workers=0, eval_samples=2, image_size=128, body_size=96)
    kw |= dict(hand_size=48)
    kw |= dict(neck_blocks=1, neck_attention=True, neck_layers=1)
    assert train_command(str(out), "lite", [data], [data], **kw) == 0

    def run_config(run):
        return DetNetConfig.from_dict(torch.load(run / "last.pt", weights_only=True)["config"])

    cfg = run_config(out)
    assert (cfg.body_size, cfg.neck_blocks, cfg.neck_attention, cfg.neck_layers) == (96, 1, True, 1)
    assert cfg.hand_size == 48
    loaded = load_detnet(out / "weights.safetensors")
    assert (loaded.config.body_size, loaded.config.neck_blocks) == (96, 1)
    assert any(k.startswith("neck.blocks.0.") for k in loaded.state_dict())
    # a fine-tune keeps the neck of the weights it starts from, unless told otherwise
    kw = dict(steps=1, factor=1, seed=0, workers=0, eval_samples=2, image_size=128)
    init = str(out / "weights.safetensors")
    assert train_command(str(tmp_path / "ft"), "lite", [data], [data], init=init, **kw) == 0
    cfg = run_config(tmp_path / "ft")
    assert (cfg.neck_blocks, cfg.neck_attention, cfg.neck_layers) == (1, True, 1)
    caplog.clear()
    kw |= dict(init=init, neck_blocks=0, neck_attention=False, neck_layers=0)
    assert train_command(str(tmp_path / "ft0"), "lite", [data], [data], **kw) == 0
    cfg = run_config(tmp_path / "ft0")
    assert (cfg.neck_blocks, cfg.neck_attention) == (0, False)
    assert "not used from" in caplog.text and "neck.blocks" in caplog.text
    # --ema keeps a weight average, which the run's weights file and detnet-export take
    capsys.readouterr()
    kw = dict(steps=2, factor=1, seed=0, workers=0, eval_samples=2, image_size=128, eval_every=1)
    assert train_command(str(tmp_path / "avg"), "lite", [data], [data], ema=0.9, **kw) == 0
    assert "weight average:" in capsys.readouterr().out
    assert read_weights(tmp_path / "avg" / "weights.safetensors")[1]["info"]["ema"]["steps"] == 2
    raw, ckpt = tmp_path / "raw.safetensors", str(tmp_path / "avg" / "last.pt")
    assert main(["train", "detnet-export", ckpt, str(raw), "--raw"]) == 0
    assert "ema" not in read_weights(raw)[1]["info"]


# ----------------------------------------------------------------------------- refiner
def test_refiner_starts_as_the_identity_and_fits():
    """A refiner added to DetNet changes no 3D keypoint at first (zero last layer), reads the
    heads it names, learns a correction, and its settings are checked; old configs load."""
    from fullcap.models.refiner import KeypointRefiner

    torch.manual_seed(0)
    base_cfg = DetNetConfig.from_preset("lite", body_size=64, hand_size=32, face_size=32)
    cfg = replace(base_cfg, refiner_inputs=("basic", "humbi"), refiner_hidden=32)
    net = DetNet(cfg).eval()
    assert net.heads_for("humbi") == ("humbi",) and net.heads_for("basic") == ()
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        out = net(x, heads=net.heads_for("humbi"))
        uv, _, xyz = net.body_keypoints(out, "humbi")
        ref = decode(out.extended["humbi"])
        assert torch.equal(uv, ref[0]) and torch.equal(xyz, ref[2])
        assert net.refiner_features(out).shape == (2, 6 * (9 + 33))
        net.refiner.out.bias.fill_(0.01)
        moved = net.body_keypoints(out, "humbi")[2]
    torch.testing.assert_close(moved, ref[2] + 0.01)
    assert DetNetConfig.from_dict(cfg.to_dict()) == cfg
    hand_net = DetNet(replace(base_cfg, hand_refiner_hidden=16)).eval()
    crops = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    boxes = torch.tensor([[0, 0, 0, 20, 20], [1, 10, 10, 40, 40], [1, 5, 5, 30, 30.0]])
    with torch.no_grad():
        hmaps = hand_net(x, crops, boxes, torch.tensor([True, False, False]), heads=()).hands
        torch.testing.assert_close(hand_net.hand_keypoints(hmaps)[2], decode(hmaps)[2])
        hand_net.hand_refiner.out.bias.fill_(0.02)
        torch.testing.assert_close(hand_net.hand_keypoints(hmaps)[2], decode(hmaps)[2] + 0.02)
    old = base_cfg.to_dict()
    for k in ("refiner_inputs", "refiner_output", "refiner_hidden", "refiner_blocks"):
        del old[k]  # configs written before the refiners existed
    del old["hand_refiner_hidden"], old["hand_refiner_blocks"]
    assert DetNetConfig.from_dict(old) == base_cfg and DetNet(base_cfg).refiner is None
    for bad in (
        dict(refiner_inputs=("nope",)),
        dict(refiner_inputs=("basic",), refiner_output="basic"),
        dict(refiner_inputs=("basic",), refiner_hidden=0),
        dict(hand_refiner_hidden=-1),
    ):
        with pytest.raises(ValueError, match="refiner"):
            replace(base_cfg, **bad)
    # it learns: a fixed offset of the 3D keypoints that depends on the features
    r = KeypointRefiner(12, 4, hidden=32, blocks=1, dropout=0.0)
    feats, base = torch.randn(64, 12), torch.randn(64, 4, 3)
    target = base + 0.1 * feats[:, :1, None]
    r.set_normalisation(feats)
    with pytest.raises(ValueError, match="refiner expects"):
        r(feats[:, :5], base)
    opt = torch.optim.Adam(r.parameters(), 1e-2)
    before = (r(feats, base) - target).norm(dim=-1).mean().item()
    for _ in range(150):
        opt.zero_grad()
        loss = (r(feats, base) - target).norm(dim=-1).mean()
        loss.backward()
        opt.step()
    assert loss.item() < before / 4, (before, loss.item())


def test_train_refiner_resumes_exports_and_is_used(trained, shard_dirs, tmp_path, caplog):
    """``fullcap train refiner``'s loop: a run stopped after one epoch and resumed ends where
    an unbroken run does, reuses its stored features, writes a DetNet with the refiner that
    loads, is evaluated (``refined_*``) and is what capture reads."""
    from fullcap.capture.estimators import DetNetEstimator
    from fullcap.train.refiner import RefinerTrainConfig, train_refiner

    a, _, _ = trained
    weights = export(a / "last.pt", tmp_path / "w.safetensors")
    data = (shard_dirs["mtc_like"], shard_dirs["h36m_like"])
    tc = RefinerTrainConfig(
        weights=str(weights), data=data, val=data, hidden=16, passes=1, epochs=2,
        batch_size=4, val_samples=8, image_size=128,
    )  # fmt: skip
    straight = train_refiner(tmp_path / "a", tc)
    assert train_refiner(tmp_path / "b", tc, run_epochs=1) is None
    stored = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "b" / "features").iterdir()}
    assert len(stored) == 4  # two training folders x one pass, two validation folders
    resumed = train_refiner(tmp_path / "b", RefinerTrainConfig())  # settings from the checkpoint
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "b" / "features").iterdir()} == stored
    sa = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert sa["epoch"] == sb["epoch"] == 2
    for k, v in sa["refiner"].items():
        torch.testing.assert_close(sb["refiner"][k], v, msg=k)
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all(0 <= r["mtc_refined"] <= 1 and 0 <= r["h36m_basic"] <= 1 for r in rows)
    net, plain = load_detnet(resumed), load_detnet(weights)
    assert straight.is_file() and net.refiner is not None and net.config.refiner_hidden == 16
    for k, v in plain.state_dict().items():  # DetNet itself stayed frozen
        torch.testing.assert_close(net.state_dict()[k], v, msg=k)
    report = evaluate(net, [shard_dirs["mtc_like"]], samples=8, image_size=128)["mtc_like"]
    assert 0 <= report["refined_pck150_pa"] <= 1 and 0 <= report["refined_eval14_pck150_pa"] <= 1
    assert (
        "refined_pck150_pa" not in evaluate(plain, [shard_dirs["mtc_like"]], 8, 8, 128)["mtc_like"]
    )
    with torch.no_grad():
        net.refiner.out.bias.fill_(0.05)  # a visible correction: capture must carry it
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    box = np.array([20.0, 10.0, 100.0, 90.0])
    got = DetNetEstimator(net, hands=False, face=False)(image, box)
    ref = DetNetEstimator(plain, hands=False, face=False)(image, box)
    np.testing.assert_allclose(got.body.uv, ref.body.uv, atol=1e-3)
    assert not np.allclose(got.body.xyz, ref.body.xyz, atol=1e-3)
    with pytest.raises(ValueError, match="training"):
        train_refiner(tmp_path / "c", RefinerTrainConfig(weights=str(weights)))
    # the hand refiner, trained on the body-refined weights, keeps the body refiner; hand
    # features made with the plain weights serve (they do not depend on any refiner)
    hands = (shard_dirs["hand_like"], shard_dirs["mtc_like"])
    htc = replace(tc, weights=str(weights), part="hand", data=hands, val=hands, epochs=1)
    train_refiner(tmp_path / "h0", htc)
    shutil.copytree(tmp_path / "h0" / "features", tmp_path / "h" / "features")
    stored = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "h" / "features").iterdir()}
    both = load_detnet(train_refiner(tmp_path / "h", replace(htc, weights=str(resumed))))
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "h" / "features").iterdir()} == stored
    assert both.hand_refiner is not None and both.config.refiner_inputs == net.config.refiner_inputs
    for k, v in load_detnet(resumed).refiner.state_dict().items():
        torch.testing.assert_close(both.refiner.state_dict()[k], v, msg=k)
    rows = [json.loads(x) for x in (tmp_path / "h" / "metrics.jsonl").read_text().splitlines()]
    assert 0 <= rows[0]["hand_refined"] <= 1 and 0 <= rows[0]["hand_hand"] <= 1
    report = evaluate(both, [shard_dirs["hand_like"]], samples=8, image_size=128)["hand_like"]
    assert 0 <= report["refined_hand_auc_20_50"] <= 1 and report["refined_hand_epe_mm"] > 0
    with torch.no_grad():
        both.hand_refiner.out.bias.fill_(0.05)
    # detnet-export --refiners-from: the checkpoint the refiners were trained on takes both; one
    # whose hand branch moved on keeps the body refiner only; one whose body moved on, none
    refined = tmp_path / "h" / "detnet_refined.safetensors"
    same = load_detnet(export(a / "last.pt", tmp_path / "g.safetensors", refiners_from=refined))
    for k, v in load_detnet(refined).state_dict().items():
        torch.testing.assert_close(same.state_dict()[k], v, msg=k)
    state = torch.load(a / "last.pt", weights_only=True)
    for part in ("hand_net.", "backbone."):
        moved = {
            k: v + 0.01 if k.startswith(part) and v.is_floating_point() else v
            for k, v in state["model"].items()
        }
        torch.save(dict(state, model=moved), tmp_path / "moved.pt")
        out = tmp_path / f"moved-{part}safetensors"
        if part == "backbone.":
            with pytest.raises(ValueError, match="no keypoint refiner"):
                export(tmp_path / "moved.pt", out, refiners_from=refined)
            continue
        with caplog.at_level(logging.WARNING):
            kept = load_detnet(export(tmp_path / "moved.pt", out, refiners_from=refined))
        assert "hand refiner not copied" in caplog.text
        assert kept.hand_refiner is None and kept.config.hand_refiner_hidden == 0
        for k, v in same.refiner.state_dict().items():
            torch.testing.assert_close(kept.refiner.state_dict()[k], v, msg=k)
    est = DetNetEstimator(both, face=False)(image, box)
    plain_hands = DetNetEstimator(plain, face=False)(image, box)
    np.testing.assert_allclose(est.left_hand.uv, plain_hands.left_hand.uv, atol=1e-2)
    assert not np.allclose(est.right_hand.xyz, plain_hands.right_hand.xyz, atol=1e-3)
    # a DetNet fine-tune from refined weights drops the refiner (it fits those weights only)
    ft = DetNetTrainConfig(
        data=data, val=data, steps=1, eval_every=1, val_batches=1, image_size=128, overrides=TINY
    )
    with caplog.at_level(logging.WARNING):
        train(tmp_path / "ft", ft, workers=0, init=str(resumed))
    assert "keypoint refiner: dropped" in caplog.text
    state = torch.load(tmp_path / "ft" / "last.pt", weights_only=True)
    assert not state["config"]["refiner_inputs"] and not any("refiner" in k for k in state["model"])


def test_mirror_maps_swaps_sides_and_negates_x():
    """Maps of a mirrored image put back: a left-wrist peak at column 3 becomes a right-wrist
    peak at the mirrored column with its camera x negated (delta maps likewise, per bone);
    mirroring twice gives the maps back; a head without left/right partners has none."""
    from fullcap.models.detnet import bones_of, mirror_maps, mirror_permutations

    names = BASIC9
    bones = bones_of(names)
    kp, bone = mirror_permutations(names, bones)
    lw, rw = names.index("left_wrist"), names.index("right_wrist")
    le, re_ = names.index("left_elbow"), names.index("right_elbow")
    pairs = [tuple(b) for b in bones.tolist()]
    lbone, rbone = pairs.index((lw, le)), pairs.index((rw, re_))
    K = torch.zeros(1, len(names), 16, 16)
    D = torch.zeros(1, 3 * len(pairs), 16, 16)
    L = torch.zeros(1, 3 * len(names), 16, 16)
    K[0, lw, 5, 3] = 1.0
    L[0, 3 * lw : 3 * lw + 3, 5, 3] = torch.tensor([0.2, -0.1, 0.3])
    D[0, 3 * lbone : 3 * lbone + 3, 5, 3] = torch.tensor([0.05, 0.25, -0.1])
    maps = PoseMaps(K, D, L)
    m = mirror_maps(maps, kp, bone)
    uv, conf, xyz = decode(m)
    torch.testing.assert_close(uv[0, rw], torch.tensor([16 - 3.5, 5.5]))
    torch.testing.assert_close(xyz[0, rw], torch.tensor([-0.2, -0.1, 0.3]))
    assert conf[0, rw] == 1 and conf[0, lw] == 0
    torch.testing.assert_close(
        m.D[0, 3 * rbone : 3 * rbone + 3, 5, 12], torch.tensor([-0.05, 0.25, -0.1])
    )
    assert m.D[0, 3 * lbone : 3 * lbone + 3].abs().sum() == 0
    back = mirror_maps(m, kp, bone)
    for a, b in zip((back.K, back.D, back.L), (K, D, L), strict=True):
        assert torch.equal(a, b)
    assert mirror_permutations(("pelvis", "left_hip"), bones_of(("pelvis", "left_hip"))) is None


def test_flip_test_is_mirror_symmetric_and_leaves_hands_alone():
    """With the flip test a crop and its mirror image give mirrored maps (each is the average
    of the two views); the maps differ from the plain run's, the hand maps do not; a head
    that is not left/right symmetric is refused."""
    from fullcap.models.detnet import mirror_maps

    torch.manual_seed(0)
    cfg = DetNetConfig.from_preset("lite", **{k: TINY[k] for k in ("body_size", "hand_size")})
    net = DetNet(cfg).eval()
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    crops = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    boxes, left = torch.tensor([[0.0, 10, 10, 30, 30]]), torch.tensor([True])
    with torch.no_grad():
        a = net(x, crops, boxes, left, flip_test=True)
        b = net(x.flip(-1), flip_test=True)
        plain = net(x, crops, boxes, left)
    for head, maps, other in (
        ("basic", a.basic, b.basic),
        ("humbi", a.extended["humbi"], b.extended["humbi"]),
    ):
        back = mirror_maps(other, *net._mirror[head])
        for t, u in zip((maps.K, maps.D, maps.L), (back.K, back.D, back.L), strict=True):
            torch.testing.assert_close(t, u, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a.basic.K, plain.basic.K)
    torch.testing.assert_close(a.features, plain.features)
    torch.testing.assert_close(a.hands.L, plain.hands.L)
    odd = replace(cfg, extended=(("humbi", BODY33), ("solo", ("pelvis", "left_hip"))))
    with pytest.raises(ValueError, match=r"symmetric heads; \['solo'\]"):
        DetNet(odd).eval()(x, flip_test=True)
    assert DetNet(odd).eval()(x, heads=("humbi",), flip_test=True).basic.K.shape[0] == 2


def test_feature_mirror_is_the_refiner_input_of_mirrored_maps():
    """FeatureMirror turns the refiner's input and the output head's 3D keypoints into those
    of the mirrored maps (exactly: decoding commutes with mirroring), and is its own inverse;
    a DetNet whose refiner is averaged with its mirror image is left/right equivariant."""
    from fullcap.models.detnet import mirror_maps, refiner_mirror
    from fullcap.models.refiner import keypoint_features

    torch.manual_seed(1)
    cfg = DetNetConfig.from_preset("lite", body_size=64, hand_size=32, face_size=32)
    cfg = replace(cfg, refiner_inputs=("basic", "humbi"), refiner_hidden=16)
    net = DetNet(cfg).eval()
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        out = net(x, heads=net.heads_for("humbi"))
    mirrored = replace(
        out,
        basic=mirror_maps(out.basic, *net._mirror["basic"]),
        extended={h: mirror_maps(m, *net._mirror[h]) for h, m in out.extended.items()},
    )
    m = refiner_mirror(cfg)
    f, fm = net.refiner_features(out), net.refiner_features(mirrored)
    torch.testing.assert_close(m.features(f), fm, atol=1e-5, rtol=1e-5)
    xyz, xyz_m = decode(out.extended["humbi"])[2], decode(mirrored.extended["humbi"])[2]
    torch.testing.assert_close(m.xyz(xyz), xyz_m, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(m.features(m.features(f)), f)
    known = torch.rand(3, 33) < 0.5
    assert torch.equal(m.mask(m.mask(known)), known) and not torch.equal(m.mask(known), known)
    # a mirrored refiner (refiner_mirror) treats the two sides alike: the mirror image's 3D is
    # the mirror image of the 3D; a plain refiner (random weights) does not
    sym = DetNet(replace(cfg, refiner_mirror=True)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(net.refiner.out.weight, std=0.05)
        sym.load_state_dict(net.state_dict())
        a, b = (sym.body_keypoints(o, "humbi")[2] for o in (out, mirrored))
        torch.testing.assert_close(m.xyz(a), b, atol=1e-5, rtol=1e-5)
        pa, pb = (net.body_keypoints(o, "humbi")[2] for o in (out, mirrored))
        assert not torch.allclose(m.xyz(pa), pb, atol=1e-3)
        torch.testing.assert_close((pa + m.xyz(pb)) / 2, a, atol=1e-5, rtol=1e-5)
    # two peaks per keypoint mirror the same way
    m2 = refiner_mirror(replace(cfg, refiner_peaks=2))
    f2, f2m = (
        torch.cat(
            [keypoint_features(o.basic, 2)[0], keypoint_features(o.extended["humbi"], 2)[0]], 1
        )
        for o in (out, mirrored)
    )
    assert f2.shape == (3, 12 * (9 + 33))
    torch.testing.assert_close(m2.features(f2), f2m, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="needs a body refiner"):
        replace(cfg, refiner_inputs=(), refiner_mirror=True)
    with pytest.raises(ValueError, match="refiner_peaks"):
        replace(cfg, refiner_peaks=3)
    odd = replace(cfg, extended=(("humbi", BODY33), ("solo", ("pelvis", "left_hip"))))
    with pytest.raises(ValueError, match="symmetric"):
        DetNet(replace(odd, refiner_inputs=("basic", "solo"), refiner_mirror=True))
    with pytest.raises(ValueError, match="body refiner"):
        from fullcap.train.refiner import RefinerTrainConfig

        RefinerTrainConfig(part="hand", mirror=True)


def test_mirrored_refiner_run_resumes_and_writes_a_mirrored_refiner(shard_dirs, trained, tmp_path):
    """A body refiner run with --mirror (and two peaks per keypoint): resumed after one
    epoch it ends where an unbroken
    run does (the mirrored rows are drawn from the epoch's seed); its weights average the
    refiner with its mirror image, and its ledger reports that score and the refiner's alone."""
    from fullcap.train.refiner import RefinerTrainConfig, train_refiner

    a, _, _ = trained
    weights = export(a / "last.pt", tmp_path / "w.safetensors")
    data = (shard_dirs["mtc_like"], shard_dirs["h36m_like"])
    tc = RefinerTrainConfig(
        weights=str(weights), data=data, val=data, hidden=16, passes=1, epochs=2,
        batch_size=4, val_samples=8, image_size=128, mirror=True, peaks=2,
    )  # fmt: skip
    train_refiner(tmp_path / "a", tc)
    train_refiner(tmp_path / "b", tc, run_epochs=1)
    shutil.copytree(tmp_path / "b" / "features", tmp_path / "c" / "features")
    train_refiner(tmp_path / "b", RefinerTrainConfig())
    plain = replace(tc, mirror=False)
    train_refiner(tmp_path / "c", plain)
    sa, sb, sc = (torch.load(tmp_path / r / "last.pt", weights_only=True) for r in "abc")
    assert sb["train_config"]["mirror"] and not sc["train_config"]["mirror"]
    for k, v in sa["refiner"].items():
        torch.testing.assert_close(sb["refiner"][k], v, msg=k)
    assert any(not torch.equal(sc["refiner"][k], v) for k, v in sa["refiner"].items())
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["mtc_refined_unmirrored"] <= 1 for r in rows)
    plain_rows = (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()
    assert not any("unmirrored" in k for k in json.loads(plain_rows[0]))
    # the weights average the refiner with its mirror image, and their score is the ledger's
    net = load_detnet(tmp_path / "a" / "detnet_refined.safetensors")
    assert net.config.refiner_peaks == 2 and net.refiner.mean.shape == (12 * (9 + 33),)
    assert (
        net.config.refiner_mirror
        and not load_detnet(tmp_path / "c" / "detnet_refined.safetensors").config.refiner_mirror
    )
    report = evaluate(net, [shard_dirs["mtc_like"]], samples=8, image_size=128)["mtc_like"]
    # (the weights are stored in float16: one keypoint of the 8 images may cross 150 mm)
    assert report["refined_pck150_pa"] == pytest.approx(rows[-1]["mtc_refined"], abs=0.02)


def test_refiner_second_peak_is_the_next_maximum_outside_the_first():
    """keypoint_features(maps, peaks=2): the second peak skips the 3x3 cells around the first
    (a neighbour of the maximum is not a second limb) and reads the 3D at its own cell; a
    refiner that reads two peaks takes twice the inputs."""
    from fullcap.models.posenet import PoseMaps
    from fullcap.models.refiner import keypoint_features

    K = torch.zeros(1, 1, 8, 8)
    K[0, 0, 2, 2], K[0, 0, 2, 3], K[0, 0, 6, 5] = 1.0, 0.9, 0.6
    L = torch.zeros(1, 3, 8, 8)
    L[0, :, 6, 5] = torch.tensor([0.1, 0.2, 0.3])
    f, (_, conf, _) = keypoint_features(PoseMaps(K, torch.zeros(1, 0, 8, 8), L), peaks=2)
    expect = torch.tensor([5.5 / 8 - 0.5, 6.5 / 8 - 0.5, 0.6, 0.1, 0.2, 0.3])
    torch.testing.assert_close(f[0, 6:], expect)
    one = keypoint_features(PoseMaps(K, torch.zeros(1, 0, 8, 8), L))[0]
    torch.testing.assert_close(f[0, :6], one[0])
    assert conf[0, 0] == 1.0
    with pytest.raises(ValueError, match="peaks"):
        keypoint_features(PoseMaps(K, torch.zeros(1, 0, 8, 8), L), peaks=3)
    cfg = DetNetConfig.from_preset("lite", body_size=64, hand_size=32, face_size=32)
    net = DetNet(
        replace(cfg, refiner_inputs=("basic", "humbi"), refiner_hidden=16, refiner_peaks=2)
    )
    assert net.refiner.mean.shape == (12 * (9 + 33),)
    with torch.no_grad():
        out = net.eval()(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8), heads=("humbi",))
        assert net.body_keypoints(out, "humbi")[2].shape == (2, 33, 3)
