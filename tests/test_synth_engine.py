"""Synthetic data engine: determinism and resume, label geometry, visibility, shard round trip,
augmentation consistency, argument errors. Small images (64-96 px) keep it under a minute."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.synth import shards
from fullcap.synth.engine import OCCLUDER_PART, SURFACE_TOL, SynthEngine
from fullcap.synth.shards import (
    Augment,
    ShardDataset,
    ShardStream,
    augment_sample,
    decode_shard,
    generate,
)
from fullcap.synth.sources import get_source


@pytest.fixture(scope="module")
def model() -> BodyModel:
    return BodyModel.load()


@pytest.fixture(scope="module")
def humbi(model) -> tuple[SynthEngine, list]:
    """humbi_like mixes body, hand and face shots: points in and out of the image, hidden
    face landmarks, 3D labels."""
    eng = SynthEngine("humbi_like", seed=5, size=96, model=model, keep_buffers=True)
    return eng, eng.render(range(16))


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith(".")}


# ------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes_across_resume(tmp_path):
    kw = dict(source="mtc_like", n=10, seed=3, shard_size=4, workers=0, size=64)
    a, b = tmp_path / "a", tmp_path / "b"
    r = generate(a, **kw)
    assert (r["shards"], r["written"]) == (3, 3)
    first = _files(a)
    assert sorted(first) == ["index.json", *(shards.shard_name(k) for k in range(3))]

    (a / shards.shard_name(2)).unlink()  # lost last shard
    (a / shards.shard_name(0)).write_bytes(first[shards.shard_name(0)][:100])  # torn shard
    r = generate(a, **kw)
    assert (r["written"], r["kept"]) == (2, 1)
    assert _files(a) == first

    shards._ENGINES.clear()  # a fresh engine, as in a new run
    generate(b, **kw)
    assert _files(b) == first

    generate(tmp_path / "c", **{**kw, "seed": 4})
    assert _files(tmp_path / "c")[shards.shard_name(0)] != first[shards.shard_name(0)]


def test_sample_bytes_independent_of_batching(model):
    eng = SynthEngine("coco_like", seed=11, size=64, model=model)
    one = eng.render([21])[0]
    many = eng.render(range(16, 24))
    assert many[5].index == 21
    assert one.jpeg == many[5].jpeg
    for k in one.labels:
        np.testing.assert_array_equal(one.labels[k], many[5].labels[k], err_msg=k)
    assert eng.render([20])[0].jpeg != one.jpeg


# ------------------------------------------------------------------------- label geometry
def test_projected_3d_equals_2d_and_matches_the_model(humbi, model):
    eng, samples = humbi
    for s in samples:
        K = s.labels["K"].astype(np.float64)
        for name in eng.labelled_sets:
            p3 = s.labels[f"kp3d/{name}"].astype(np.float64)
            uv = p3 @ K.T
            uv = uv[:, :2] / uv[:, 2:3]
            np.testing.assert_allclose(uv, s.labels[f"kp2d/{name}"], atol=2e-3, err_msg=name)
    s = samples[3]
    L = {k: torch.from_numpy(np.asarray(v))[None] for k, v in s.labels.items()}
    out = model(L["betas"], L["expression"], L["pose"], L["global_orient"], L["transl"])
    for name in ("body33", "left_hand"):
        cam = out.keypoints[name][0].numpy() @ s.labels["R"].T + s.labels["t"]
        np.testing.assert_allclose(cam, s.labels[f"kp3d/{name}"], atol=2e-4)


def test_visibility_agrees_with_depth_buffer(humbi):
    eng, samples = humbi
    n_vis_surface = n_on_surface = n_hidden = n_outside = 0
    for s in samples:
        depth, tri, occ = s.buffers.depth, s.buffers.triangle_id, s.occluder_mask
        for name in eng.model_sets:
            if name not in eng.labelled_sets:
                continue
            o = eng._slices[name]
            d = eng.kp_depth[o : o + eng._set_len[name]]
            uv, vis = s.labels[f"kp2d/{name}"], s.labels[f"vis/{name}"].astype(bool)
            z = s.labels[f"kp3d/{name}"][:, 2]
            inside = (uv >= 0).all(1) & (uv < eng.size).all(1) & (z > 0)
            assert not vis[~inside].any(), "a keypoint outside the image is visible"
            n_outside += int((~inside).sum())
            col, row = np.floor(uv[inside]).astype(int).T
            zd, hit = depth[row, col], tri[row, col]
            v, dk, zz = vis[inside], d[inside], z[inside]
            surface = dk <= 0.02
            tol = SURFACE_TOL + dk
            # Visible surface points are not behind the rendered surface, and most lie on it
            # (one on a silhouette may see a farther surface, or none, at its pixel centre).
            ok = v & surface
            assert np.all(zz[ok] <= zd[ok] + tol[ok] + 1e-5)
            ok &= np.isfinite(zd)
            n_on_surface += int((np.abs(zz[ok] - zd[ok]) <= tol[ok]).sum())
            n_vis_surface += int(ok.sum())
            # Hidden points (not under an occluder) are behind the rendered surface.
            hidden = ~v & ~occ[row, col] & surface
            assert np.all(zz[hidden] > zd[hidden] + tol[hidden])
            assert np.all(hit[hidden] >= 0)
            n_hidden += int(hidden.sum())
    assert n_vis_surface > 50 and n_hidden > 10 and n_outside > 10
    assert n_on_surface > 0.85 * n_vis_surface


def test_occluders_hide_keypoints(model):
    src = get_source("coco_like")
    src = dataclasses.replace(
        src, name="coco_occluded", scene=dataclasses.replace(src.scene, p_occluder=1.0)
    )
    eng = SynthEngine(src, seed=2, size=96, model=model, keep_buffers=True)
    covered = 0
    for s in eng.render(range(8)):
        uv, vis = s.labels["kp2d/coco17"], s.labels["vis/coco17"].astype(bool)
        inside = (uv >= 0).all(1) & (uv < 96).all(1)
        col, row = np.floor(uv[inside]).astype(int).T
        under = s.occluder_mask[row, col]
        assert not vis[inside][under].any()
        covered += int(under.sum())
        part = cv2.imdecode(np.frombuffer(s.part_png, np.uint8), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(part == OCCLUDER_PART, s.occluder_mask)
    assert covered > 0


# ------------------------------------------------------------------------- shards
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("humbi")
    generate(d, "humbi_like", n=12, seed=5, shard_size=5, workers=0, size=96)
    return d


def test_shard_round_trip(dataset, humbi):
    _, samples = humbi  # same source, seed and size as the dataset
    arrays, meta = decode_shard(dataset / shards.shard_name(1))
    off = arrays["jpeg_offsets"]
    assert len(off) == 6 and len(meta["archetype"]) == 5
    for j in range(5):
        s = samples[5 + j]
        assert arrays["jpeg"][off[j] : off[j + 1]].tobytes() == s.jpeg
        for k, v in s.labels.items():
            np.testing.assert_array_equal(arrays[k][j], v, err_msg=k)
    ds = ShardDataset(dataset)
    assert len(ds) == 12
    item = ds[7]
    img = cv2.cvtColor(cv2.imdecode(np.frombuffer(samples[7].jpeg, np.uint8), 1), 4)
    np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), img)
    np.testing.assert_array_equal(item["kp2d/body33"].numpy(), samples[7].labels["kp2d/body33"])


def test_stream_shards_split_over_workers(dataset, monkeypatch):
    seen = []
    for wid in range(2):
        info = SimpleNamespace(id=wid, num_workers=2)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda info=info: info)
        seen.append([int(it["index"]) for it in ShardStream(dataset, seed=1)])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(12))


def test_augmentation_moves_labels_with_the_image():
    """Coloured markers drawn at keypoints stay under the transformed keypoints (also after
    a flip, where left and right labels swap)."""
    H = 128
    sets = {"toy": ["left_a", "right_a", "mid"], "left_hand": ["wrist"], "right_hand": ["wrist"]}
    pts = {"toy": [[40, 50], [90, 52], [64, 80]], "left_hand": [[30, 95]], "right_hand": [[98, 96]]}
    colors = {
        ("toy", 0): (255, 0, 0),
        ("toy", 1): (0, 255, 0),
        ("toy", 2): (0, 0, 255),
        ("left_hand", 0): (255, 255, 0),
        ("right_hand", 0): (0, 255, 255),
    }
    img = np.zeros((H, H, 3), np.uint8)
    for (name, i), c in colors.items():
        cv2.circle(img, tuple(int(x) for x in pts[name][i]), 6, c, -1)
    labels = {
        "boxes": np.array([[20, 40, 110, 105]] * 4, np.float32),
        "box_valid": np.ones(4),
        "K": np.array([[100, 0, 64], [0, 100, 64], [0, 0, 1]], np.float32),
        "shot": np.uint8(0),
    }
    for name in sets:
        labels[f"kp2d/{name}"] = np.array(pts[name], np.float32) + 0.5
        labels[f"vis/{name}"] = np.ones(len(pts[name]), np.uint8)
    flips = 0
    for seed in range(12):
        cfg = Augment(out_size=96, rotate_deg=40, p_rotate=1.0, color=0.0)
        crop, lab, _ = augment_sample(img, labels, sets, np.random.default_rng(seed), cfg)
        flips += int(lab["flip"])
        for (name, i), c in colors.items():
            if lab["flip"]:  # the marker of the person's left is now their right
                name = {"left_hand": "right_hand", "right_hand": "left_hand"}.get(name, name)
                i = {0: 1, 1: 0}.get(i, i) if name == "toy" else i
            u, v = lab[f"kp2d/{name}"][i]
            if lab[f"vis/{name}"][i]:
                np.testing.assert_allclose(crop[int(v), int(u)], c, atol=60)
    assert 0 < flips < 12


def _cut_labels():
    """A toy body shot for the cut: shoulders at y 40, knees at y 100 of a 128-px image, the
    left hand up at the head, the right hand down by the knees."""
    names = ["left_shoulder", "right_shoulder", "left_knee", "right_knee", "left_ankle"]
    sets = {"body33": names, "left_hand": ["wrist", "tip"], "right_hand": ["wrist", "tip"]}
    pts = {
        "body33": [[50, 40], [78, 40], [54, 100], [74, 100], [54, 120]],
        "left_hand": [[40, 20], [38, 14]],
        "right_hand": [[90, 96], [92, 104]],
    }
    labels = {
        "boxes": np.array([[30, 10, 100, 125]] * 4, np.float32),
        "box_valid": np.ones(4, np.uint8),
        "K": np.array([[100, 0, 64], [0, 100, 64], [0, 0, 1]], np.float32),
        "shot": np.uint8(0),
    }
    for name in sets:
        labels[f"kp2d/{name}"] = np.array(pts[name], np.float32)
        labels[f"vis/{name}"] = np.ones(len(pts[name]), np.uint8)
    return sets, labels


def test_cut_blacks_out_below_the_chest_and_keeps_the_labels():
    """Augment's cut: the same crop as without it above a line between the shoulders and
    the knees, black below; keypoints unmoved, those below no longer visible, the hand below
    the line without its box; only body shots are cut."""
    sets, labels = _cut_labels()
    img = np.random.default_rng(0).integers(30, 255, (128, 128, 3), dtype=np.uint8)
    parts = np.ones((128, 128), np.uint8)
    plain = dict(out_size=128, margin=1.0, scale=(1.0, 1.0), shift=0.0, p_rotate=0.0, p_flip=0.0)
    cut_rows = []
    for seed in range(6):
        ref, ref_lab, _ = augment_sample(
            img, labels, sets, np.random.default_rng(seed), Augment(**plain)
        )
        crop, lab, part = augment_sample(
            img, labels, sets, np.random.default_rng(seed), Augment(**plain, p_cut=1.0), parts
        )
        uv = lab["kp2d/body33"]
        top, bottom = uv[:2, 1].mean(), uv[2:4, 1].mean()
        black = (crop == 0).all(axis=(1, 2))
        row = len(crop) - int(np.argmin(black[::-1]))  # the rows from here on are black
        assert row < len(crop) and not black[:row].any()
        assert top + 0.3 * (bottom - top) - 1 <= row <= bottom + 1
        np.testing.assert_array_equal(crop[:row], ref[:row])
        assert not part[row:].any() and part[:row].all()  # no part is seen below the line
        for name in sets:
            np.testing.assert_array_equal(lab[f"kp2d/{name}"], ref_lab[f"kp2d/{name}"])
            below = lab[f"kp2d/{name}"][:, 1] > row
            assert not lab[f"vis/{name}"][below].any()
            assert lab[f"vis/{name}"][lab[f"kp2d/{name}"][:, 1] < row - 1].all()
        assert lab["box_valid"][1] == 1  # the left hand, up at the head, keeps its box
        assert lab["box_valid"][2] == (0 if uv[2:4, 1].mean() - 4 > row else 1)
        cut_rows.append(row)
    assert len(set(cut_rows)) > 1  # the line moves from sample to sample
    hand_shot = labels | {"shot": np.uint8(2)}
    crop, _, _ = augment_sample(
        img, hand_shot, sets, np.random.default_rng(0), Augment(**plain, p_cut=1.0)
    )
    assert not (crop == 0).all(axis=(1, 2)).any()


def test_augmented_real_samples_stay_consistent(dataset):
    """After crop/rotation/flip, K @ kp3d still gives kp2d, and visible hand keypoints land
    on their own hand's pixels of the (equally warped, side-swapped) part map. Without
    augmentation about 75% do (the rest: silhouette fingertips on the background at 96 px,
    wrists on the forearm); a missed left/right swap would put half on the other hand."""
    ds = ShardDataset(dataset, augment=Augment(out_size=80, p_flip=0.5, p_rotate=1.0), seed=3)
    own = other = total = flips = 0
    for i in range(len(ds)):
        it = ds[i]
        flips += int(it["flip"])
        K = it["K"].double()
        for name in ("body33", "left_hand", "face68"):
            p = it[f"kp3d/{name}"].double() @ K.T
            uv = p[:, :2] / p[:, 2:3]
            torch.testing.assert_close(uv, it[f"kp2d/{name}"].double(), atol=5e-2, rtol=0)
        for side, pid in (("left_hand", 3), ("right_hand", 4)):  # 1 + index in part_names
            uv, vis = it[f"kp2d/{side}"], it[f"vis/{side}"].bool()
            cr = np.floor(uv[vis].numpy()).astype(int)
            part = it["part"].numpy()[cr[:, 1], cr[:, 0]]
            own += int((part == pid).sum())
            other += int((part == 7 - pid).sum())
            total += len(cr)
    assert flips > 0 and total > 50
    assert own > 0.65 * total and other < 0.05 * total


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"source": "no_such_source"}, "source"),
        ({"size": 0}, "size"),
        ({"shard_size": 0}, "shard_size"),
        ({"n": 0}, "n"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_value_error(tmp_path, kwargs, field):
    kw = dict(source="mtc_like", n=2, seed=0, shard_size=2, workers=0, size=32) | kwargs
    with pytest.raises(ValueError, match=field):
        generate(tmp_path / "out", **kw)
    assert not (tmp_path / "out" / "index.json").exists()


def test_unwritable_out_dir_and_bad_engine_size(tmp_path, model):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        generate(blocker / "sub", "mtc_like", n=2, shard_size=2, workers=0, size=32)
    with pytest.raises(ValueError, match="size"):
        SynthEngine("mtc_like", seed=0, size=-3, model=model)


def test_webcam_faces_are_frontal_and_fill_the_image(model):
    """webcam_face_like: face shots, the face box filling a good part of the image, both eyes
    in view, and less off-frontal than face_like on average."""
    from fullcap.skeletons import FACE68

    def stats(source: str) -> tuple[float, float]:
        eng = SynthEngine(source, seed=4, size=96, model=model)
        fills, asym = [], []
        for s in eng.render(range(12)):
            lab = s.labels
            box = lab["boxes"][3]
            fills.append((box[2] - box[0]) / 96)
            uv = lab["kp2d/face68"]
            nose, jl, jr = (
                uv[FACE68.index("face30")],
                uv[FACE68.index("face00")],
                uv[FACE68.index("face16")],
            )
            # yaw proxy: how far the nose tip sits from the middle of the jaw ends
            asym.append(abs(nose[0] - (jl[0] + jr[0]) / 2) / max(abs(jr[0] - jl[0]), 1e-6))
        return float(np.mean(fills)), float(np.mean(asym))

    fill, yaw = stats("webcam_face_like")
    _, yaw_wild = stats("face_like")
    assert fill > 0.25
    assert yaw < yaw_wild


# ------------------------------------------------------------------------- appearance


def test_clothes_and_hands_tell_front_from_back(model):
    """The front/back cues of the procedural appearance: necklines dip at the front (skin
    shows there, cloth at the same height on the back), prints and plackets sit on the front
    only, pockets on the back only, and palms are lighter than the backs of the hands."""
    from fullcap.synth.appearance import AppearanceModel, AppearanceStyle

    am = AppearanceModel(model)
    none = AppearanceStyle(p_top=1.0, p_gloves=0.0, p_neckline=0, p_print=0, p_pockets=0)
    z = am.pos[:, 2]
    chest = am.masks["torso"] & (z > am.z_neck - 0.09) & (z < am.z_neck - 0.06)
    hand_back = am.masks["hand"] & ~am.palm
    assert am.palm.sum() > 100 and hand_back.sum() > 100

    def bare(style: AppearanceStyle, seed: int) -> tuple[int, int]:
        """People (of 40) whose front / back chest band is mostly skin."""
        rng, n_front, n_back = np.random.default_rng(seed), 0, 0
        for _ in range(40):
            a = am.sample(rng, style)
            skin = a.albedo[am.masks["neck"]].mean(0)
            is_skin = np.abs(a.albedo - skin).max(1) < 0.06
            n_front += is_skin[chest & am.front].mean() > 0.5
            n_back += is_skin[chest & am.back].mean() > 0.5
            palm, hand = a.albedo[am.palm].mean(), a.albedo[hand_back].mean()
            assert palm > hand or (a.codes[0] < 150 and palm > 0.95 * hand), a.codes[0]
        return n_front, n_back

    front, back = bare(dataclasses.replace(none, p_neckline=1.0), 0)
    assert front >= 20 and back <= 2, (front, back)
    assert bare(none, 0)[0] <= 2

    def changed(style: AppearanceStyle, seed: int) -> np.ndarray:
        """Vertices whose albedo ``style`` changes against ``none`` (same random draws up to
        the garment)."""
        a = am.sample(np.random.default_rng(seed), style).albedo
        b = am.sample(np.random.default_rng(seed), none).albedo
        return np.abs(a - b).max(1) > 1e-6

    upper = z > am.z_pelvis + 0.16  # above any waistband (the bottom's colours differ below)
    prints = [changed(dataclasses.replace(none, p_print=1.0), s) & upper for s in range(12)]
    assert sum(p.any() for p in prints) >= 10
    assert all(not (p & ~am.front).any() for p in prints)
    pockets = [changed(dataclasses.replace(none, p_pockets=1.0), s) for s in range(12)]
    hips = am.masks["hips"]
    assert sum((p & hips).any() for p in pockets) >= 3  # not under skirts
    assert all(not (p & hips & ~am.back).any() for p in pockets)
