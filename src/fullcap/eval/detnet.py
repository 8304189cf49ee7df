"""DetNet evaluation on held-out shards: per-source metrics, the cross-dataset table, drawings.

Protocol (decisions written here):
- Items are the shot's box centred with the training margin (1.25), no randomness
  (:data:`fullcap.data.mixer.EVAL_AUGMENT`); the first ``samples`` items of each source.
- Body 3D: basic keypoints (BASIC9) from the basic head, metres, pelvis-relative; a keypoint
  counts when it lies inside the image (as the HUMBI protocol ignores keypoints outside the
  image: their location maps are never read there) and the sample has 3D; a sample counts
  when at least 5 keypoints do. ``pck150_pa``: PCK at 150 mm after Procrustes alignment
  (rotation, translation, scale) over the counted keypoints; ``pa_mpjpe_mm`` likewise.
- ``eval14_*``: the HUMBI 14-keypoint protocol (EVAL14 taken from the ``humbi`` head's
  body33, keypoints outside the image ignored), for sources labelling body33.
- ``oracle2d_*``: the same with the location maps read at the true 2D positions instead of
  the detected ones: the 3D quality alone (L is trained only near the true keypoint, so 2D
  detection errors cost 3D accuracy; the gap between the two measures how much).
- ``truez_*`` and ``truexy_*``: the predictions with their depth (camera z), or their in-plane
  coordinates (camera x, y), replaced by the truth: which of the two limits the 3D accuracy.
- ``refined_*`` (and ``refined_eval14_*``, ``refined_hand_*``): the same with the 3D
  keypoints of the keypoint refiners (:mod:`fullcap.models.refiner`; what capture uses), for
  weights that have them.
- ``meanpose_*``: the baseline a network must beat: one constant pose (the mean of the
  evaluated targets, so slightly optimistic) predicted for every sample.
- Body 2D: ``pck2d`` on the basic keypoints inside the image, threshold 0.1 x the person
  box side (the crop side / 1.25, i.e. 0.08 x the body input side); ``err2d_px`` in
  body-input pixels.
- Hands: crops from the ground-truth body keypoints (or stored boxes), so the hand branch is
  measured on its own. ``hand_auc_20_50``: area under the 3D PCK curve over 20-50 mm of all
  21 keypoints after aligning the middle1 roots, predictions turned to mm with the true
  |wrist - middle1|; ``hand_epe_mm``; ``hand_err2d_px`` in hand-crop pixels. With the
  same ``oracle2d_`` and ``meanpose_`` prefixes as the body (location maps read at the true
  2D positions; one constant hand pose), ``truez_`` and ``truexy_`` as for the body, and
  ``meanuv_hand_err2d_px``: one constant 2D
  layout (the mean position of each keypoint in the crops), the 2D baseline.
- Face: ``face_err_px`` (face-crop pixels) and ``face_nme`` (divided by the inter-ocular
  distance, outer eye corners 36-45) over the landmarks inside the crop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fullcap.data.detnet_batches import DetNetBatch, build_sample, collate
from fullcap.data.mixer import EVAL_AUGMENT, Reader, open_sources
from fullcap.eval.metrics import auc_pck, mean_error, pa_errors, pck, root_aligned_errors
from fullcap.models.detnet import CROP_STRIDE, DetNet
from fullcap.models.posenet import PoseMaps, decode
from fullcap.skeletons import BODY33, EVAL14, HAND21, HAND21_SET, joint_map

log = logging.getLogger(__name__)

__all__ = ["cross_dataset", "draw_predictions", "evaluate", "evaluate_reader", "format_table"]

MARGIN = EVAL_AUGMENT.margin
_EVAL14 = joint_map(BODY33, EVAL14)
_MIDDLE1 = HAND21.index("middle1")


def _batches(reader: Reader, net: DetNet, samples: int, batch_size: int, keep_images: bool = False):
    n = min(samples, len(reader))
    reader.set_epoch(0)
    for s in range(0, n, batch_size):
        items = [reader[i] for i in range(s, min(n, s + batch_size))]
        yield collate(
            [
                build_sample(it, reader.spec, reader.sets, net.config, None, keep_images)
                for it in items
            ]
        )


def read_at(maps: PoseMaps, uv: torch.Tensor) -> torch.Tensor:
    """Location maps read (bilinearly) at given map-pixel positions uv (B, P, 2) -> (B, P, 3)."""
    b, p, h, w = maps.K.shape
    grid = torch.stack([uv[..., 0] / w * 2 - 1, uv[..., 1] / h * 2 - 1], -1)
    loc = maps.L.reshape(b * p, 3, h, w)
    out = F.grid_sample(loc, grid.reshape(b * p, 1, 1, 2), align_corners=False)
    return out.reshape(b, p, 3)


def _with_true(xyz: torch.Tensor, true: torch.Tensor, axes: slice) -> torch.Tensor:
    """``xyz`` with its coordinates ``axes`` (camera z: slice(2, 3); x, y: slice(0, 2)) taken
    from ``true``: how much of the error those coordinates carry."""
    out = xyz.clone()
    out[..., axes] = true[..., axes]
    return out


_TRUE_AXES = (("truez", slice(2, 3)), ("truexy", slice(0, 2)))


def _run(net: DetNet, batch: DetNetBatch, flip_test: bool = False) -> dict:
    """Decoded predictions of a batch: map-pixel uv and xyz per head, hands, face."""
    from fullcap.train.detnet import forward

    with torch.no_grad():
        out = forward(net, batch, flip_test)
    pred = {"basic": decode(out.basic), "basic_at_gt": read_at(out.basic, batch.basic.uv)}
    pred |= {f"ext/{k}": decode(v) for k, v in out.extended.items()}
    if net.refiner is not None:  # its 3D of the basic keypoints (and of EVAL14 if it has them)
        head = net.config.refiner_output
        names = dict(net.config.extended)[head]
        xyz = net.body_keypoints(out, head)[2]
        pred["refined"] = xyz[:, [names.index(n) for n in net.config.basic]]
        if set(EVAL14) <= set(names):
            pred["refined14"] = xyz[:, [names.index(n) for n in EVAL14]]
    if out.hands is not None:
        pred["hands"] = decode(out.hands)
        if net.hand_refiner is not None:
            pred["hands_refined"] = net.hand_keypoints(out.hands)[2]
        pred["hands_at_gt"] = read_at(out.hands, batch.hands.targets.uv)
    if out.face is not None:
        pred["face"] = decode(out.face)
    return pred


class _Acc:
    """Collects (errors, mask) pairs per metric family."""

    def __init__(self) -> None:
        self.parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def add(self, key: str, err: torch.Tensor, mask: torch.Tensor) -> None:
        self.parts.setdefault(key, []).append((err.detach().cpu(), mask.detach().cpu()))

    def get(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if key not in self.parts:
            return None
        e, m = zip(*self.parts[key], strict=True)
        return torch.cat(e), torch.cat(m)


def evaluate_reader(
    net: DetNet, reader: Reader, samples: int = 256, batch_size: int = 16, flip_test: bool = False
) -> dict[str, float]:
    """Metrics of ``net`` on the first ``samples`` items of one source (see module doc);
    ``flip_test``: body maps averaged with those of the mirrored crops (DetNet.forward)."""
    cfg, acc = net.config, _Acc()
    dev = next(net.parameters()).device
    body_px = cfg.body_size / cfg.body_map_size
    thr2d = 0.1 * cfg.body_size / MARGIN
    n_items = 0
    truth: list[tuple[torch.Tensor, torch.Tensor]] = []
    hand_truth: list[tuple[torch.Tensor, ...]] = []  # for the constant-hand baselines
    net.eval()
    for batch in _batches(reader, net, samples, batch_size):
        batch = batch.to(dev)
        pred = _run(net, batch, flip_test)
        n_items += len(batch)
        t = batch.basic
        uv, _, xyz = pred["basic"]
        acc.add("2d", (uv - t.uv).norm(dim=-1) * body_px, t.valid2d)
        valid3d = t.valid2d & t.has3d[:, None]
        acc.add("pa", *pa_errors(xyz, t.xyz, valid3d, min_points=5))
        acc.add("oracle", *pa_errors(pred["basic_at_gt"], t.xyz, valid3d, min_points=5))
        for key, axes in _TRUE_AXES:
            acc.add(key, *pa_errors(_with_true(xyz, t.xyz, axes), t.xyz, valid3d, min_points=5))
        truth.append((t.xyz, valid3d))
        if "refined" in pred:
            acc.add("refined", *pa_errors(pred["refined"], t.xyz, valid3d, min_points=5))
        ht = batch.extended.get("humbi")
        if ht is not None and "ext/humbi" in pred:
            tt = ht.targets
            v = (tt.valid2d & tt.has3d[:, None])[:, _EVAL14]
            heads = [("eval14", pred["ext/humbi"][2][:, _EVAL14])]
            if "refined14" in pred:
                heads.append(("refined_eval14", pred["refined14"]))
            for key, xyz14 in heads:
                acc.add(key, *pa_errors(xyz14[ht.rows], tt.xyz[:, _EVAL14], v, min_points=5))
        if batch.hands is not None and "hands" in pred:
            huv, _, hxyz = pred["hands"]
            ht = batch.hands.targets
            m3 = ht.labelled & ht.has3d[:, None]
            e3 = root_aligned_errors(hxyz, ht.xyz, _MIDDLE1, batch.hands.scale) * 1000.0
            acc.add("hand3d", e3, m3)
            if "hands_refined" in pred:
                e3 = root_aligned_errors(pred["hands_refined"], ht.xyz, _MIDDLE1, batch.hands.scale)
                acc.add("hand3d_refined", e3 * 1000.0, m3)
            at_gt = pred["hands_at_gt"]
            e3 = root_aligned_errors(at_gt, ht.xyz, _MIDDLE1, batch.hands.scale) * 1000.0
            acc.add("hand3d_oracle", e3, m3)
            for key, axes in _TRUE_AXES:
                e3 = root_aligned_errors(
                    _with_true(hxyz, ht.xyz, axes), ht.xyz, _MIDDLE1, batch.hands.scale
                )
                acc.add(f"hand3d_{key}", e3 * 1000.0, m3)
            px = cfg.hand_size / cfg.hand_map_size
            acc.add("hand2d", (huv - ht.uv).norm(dim=-1) * px, ht.valid2d)
            hand_truth.append((ht.xyz, m3, batch.hands.scale, ht.uv * px, ht.valid2d))
        if batch.face is not None and "face" in pred:
            fuv = pred["face"][0]
            ft = batch.face.targets
            e = (fuv - ft.uv).norm(dim=-1)
            acc.add("face", e * (cfg.face_size / cfg.face_map_size), ft.valid2d)
            acc.add("face_nme", e / batch.face.scale.clamp(min=1e-6)[:, None], ft.valid2d)
    out: dict[str, float] = {"items": float(n_items)}
    xyz, m = (torch.cat(x) for x in zip(*truth, strict=True)) if truth else (None, None)
    if m is not None and m.all(-1).any():  # the baseline: one constant pose for every sample
        mean = xyz[m.all(-1)].mean(0, keepdim=True).expand_as(xyz)
        acc.add("mean", *pa_errors(mean, xyz, m, min_points=5))
    if hand_truth:  # the baselines: one constant hand pose, one constant 2D layout
        xyz, m3, scale, uv, v2 = (torch.cat(x) for x in zip(*hand_truth, strict=True))
        if m3.all(-1).any():
            mean = xyz[m3.all(-1)].mean(0, keepdim=True).expand_as(xyz)
            acc.add("hand3d_mean", root_aligned_errors(mean, xyz, _MIDDLE1, scale) * 1000.0, m3)
        w = v2[..., None].to(uv.dtype)
        mean_uv = ((uv * w).sum(0) / w.sum(0).clamp(min=1)).expand_as(uv)
        acc.add("hand2d_mean", (mean_uv - uv).norm(dim=-1), v2)
    if (r := acc.get("2d")) is not None and r[1].any():
        out["pck2d"] = pck(r[0], thr2d, r[1])
        out["err2d_px"] = mean_error(*r)
    families = (
        ("pa", ""),
        ("oracle", "oracle2d_"),
        *((key, f"{key}_") for key, _ in _TRUE_AXES),
        ("mean", "meanpose_"),
        ("eval14", "eval14_"),
        ("refined", "refined_"),
        ("refined_eval14", "refined_eval14_"),
    )
    for key, name in families:
        r = acc.get(key)
        if r is not None and r[1].any():
            out[f"{name}pck150_pa"] = pck(r[0], 0.150, r[1])
            out[f"{name}pa_mpjpe_mm"] = mean_error(*r) * 1000.0
            if key in ("pa", "eval14"):
                out[f"{name}samples"] = float(r[1].any(1).sum())
    hand_families = (
        ("hand3d", ""),
        ("hand3d_oracle", "oracle2d_"),
        *((f"hand3d_{key}", f"{key}_") for key, _ in _TRUE_AXES),
        ("hand3d_mean", "meanpose_"),
        ("hand3d_refined", "refined_"),
    )
    for key, name in hand_families:
        if (r := acc.get(key)) is not None and r[1].any():
            out[f"{name}hand_auc_20_50"] = auc_pck(r[0], r[1], 20.0, 50.0)
            out[f"{name}hand_epe_mm"] = mean_error(*r)
            if key == "hand3d":
                out["hands"] = float(r[1].any(1).sum())
    for key, name in (("hand2d", "hand_err2d_px"), ("hand2d_mean", "meanuv_hand_err2d_px")):
        if (r := acc.get(key)) is not None and r[1].any():
            out[name] = mean_error(*r)
    if (r := acc.get("face")) is not None and r[1].any():
        out["face_err_px"] = mean_error(*r)
        out["face_nme"] = mean_error(*acc.get("face_nme"))
        out["faces"] = float(r[1].any(1).sum())
    return out


def _readers(roots: Sequence[str | Path], image_size: int, cut: bool = False) -> list[Reader]:
    augment = replace(EVAL_AUGMENT, out_size=image_size, p_cut=1.0 if cut else 0.0)
    return open_sources(roots, augment=augment)


def evaluate(
    net: DetNet,
    roots: Sequence[str | Path],
    samples: int = 256,
    batch_size: int = 16,
    image_size: int = 256,
    flip_test: bool = False,
    cut: bool = False,
) -> dict[str, dict[str, float]]:
    """Metrics per source (source name -> metrics) of ``net`` on held-out shard folders;
    ``cut``: every body shot seen as a webcam cuts it, black below a line between the
    shoulders and the knees (:class:`fullcap.synth.shards.Augment`'s ``p_cut``; the line
    drawn per image, the same in every run); the keypoints below it still count."""
    return {
        r.spec.name: evaluate_reader(net, r, samples, batch_size, flip_test)
        for r in _readers(roots, image_size, cut)
    }


def cross_dataset(
    nets: Mapping[str, DetNet],
    roots: Sequence[str | Path],
    samples: int = 256,
    batch_size: int = 16,
    image_size: int = 256,
    metric: str = "pck150_pa",
) -> dict[str, dict[str, float]]:
    """Supplementary Table 1: ``metric`` of every model (rows, by name) on every source's
    held-out folders (columns, by source); NaN where a source cannot give the metric."""
    readers = _readers(roots, image_size)
    table: dict[str, dict[str, float]] = {}
    for name, net in nets.items():
        table[name] = {}
        for r in readers:
            m = evaluate_reader(net, r, samples, batch_size)
            table[name][r.spec.name] = m.get(metric, math.nan)
            log.info("%s on %s: %s = %.3f", name, r.spec.name, metric, table[name][r.spec.name])
    return table


def format_table(table: Mapping[str, Mapping[str, float]], title: str = "") -> str:
    """Plain-text matrix: rows = training set, columns = test set, two decimals."""
    cols = list(dict.fromkeys(c for row in table.values() for c in row))
    w0 = max([len("train \\ test"), *(len(r) for r in table)])
    ws = [max(len(c), 5) for c in cols]
    lines = [title] if title else []
    lines.append(
        "  ".join(["train \\ test".ljust(w0), *(c.rjust(w) for c, w in zip(cols, ws, strict=True))])
    )
    for name, row in table.items():
        cells = []
        for c, w in zip(cols, ws, strict=True):
            v = row.get(c, math.nan)
            cells.append(("-" if v is None or math.isnan(v) else f"{v:.2f}").rjust(w))
        lines.append("  ".join([name.ljust(w0), *cells]))
    return "\n".join(lines)


def _crop_to_image(uv: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor):
    """Crop pixels (N, P, 2) of (size x size) crops at ``boxes`` (N, 4) -> image pixels
    (the inverse of :func:`fullcap.models.crops.to_box`)."""
    u = torch.where(flip[:, None], size - uv[..., 0], uv[..., 0])
    scale = (boxes[:, 2:] - boxes[:, :2]) / size
    return torch.stack([u, uv[..., 1]], -1) * scale[:, None] + boxes[:, None, :2]


def draw_predictions(
    net: DetNet,
    roots: Sequence[str | Path],
    per_source: int = 4,
    image_size: int = 256,
    stride: int = 7,
) -> np.ndarray:
    """Contact sheet of held-out items with predictions drawn: body skeleton of the source's
    head (else ``humbi``, else the basic keypoints) in green, ground-truth basic keypoints as
    small red dots, hands (from their crops) in cyan, face landmarks in yellow.
    Items ``0, stride, 2 * stride, ...`` of each source."""
    from fullcap.data.heads import HEADS
    from fullcap.render import contact_sheet, draw_keypoints
    from fullcap.skeletons import BASIC9_SET

    tiles, titles = [], []
    net.eval()
    dev = next(net.parameters()).device
    for r in _readers(roots, image_size):
        r.set_epoch(0)
        idx = [(k * stride) % len(r) for k in range(per_source)]
        batch = collate(
            [build_sample(r[i], r.spec, r.sets, net.config, None, True) for i in idx]
        ).to(dev)
        pred = _run(net, batch)
        a = batch.image_size
        to_img = a / net.config.body_map_size
        head = r.spec.head if f"ext/{r.spec.head}" in pred else "humbi"
        for b in range(len(batch)):
            img = batch.images[b].permute(1, 2, 0).cpu().numpy()
            if f"ext/{head}" in pred:
                uv, edges = pred[f"ext/{head}"][0][b] * to_img, None
                parents = HEADS[head].parents
                edges = [(p, c) for c, p in enumerate(parents) if p >= 0]
            else:
                uv, edges = pred["basic"][0][b] * to_img, BASIC9_SET.edges
            img = draw_keypoints(img, uv, edges, color=(40, 230, 40), radius=2, thickness=1)
            gt = batch.basic.uv[b] * to_img
            gt_ok = batch.basic.valid2d[b].cpu().numpy()
            img = draw_keypoints(img, gt[gt_ok], color=(235, 40, 40), radius=1.5)
            for part, size, col, edges_p in (
                ("hands", net.config.hand_size, (0, 230, 255), HAND21_SET.edges),
                ("face", net.config.face_size, (255, 230, 0), None),
            ):
                pb = batch.hands if part == "hands" else batch.face
                if pb is None or part not in pred:
                    continue
                rows = (pb.boxes[:, 0] == b).nonzero()[:, 0]
                if len(rows) == 0:
                    continue
                cuv = pred[part][0][rows] * CROP_STRIDE
                iuv = _crop_to_image(cuv, pb.image_boxes[rows], size, pb.is_left[rows])
                for k in range(len(rows)):
                    img = draw_keypoints(img, iuv[k], edges_p, color=col, radius=1, thickness=1)
            tiles.append(img)
            titles.append(f"{r.spec.name} #{idx[b]}")
    return contact_sheet(tiles, cols=per_source, titles=titles)


def hand_crop_targets_in_image(batch: DetNetBatch) -> torch.Tensor:
    """Ground-truth hand keypoints (N, 21, 2) of a batch's hand crops back in item-image
    pixels (inverse of the crop and mirror), for checks and drawings."""
    h = batch.hands
    size = h.crops.shape[-1]
    uv = h.targets.uv * CROP_STRIDE
    return _crop_to_image(uv, h.image_boxes, size, h.is_left)
