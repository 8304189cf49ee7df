"""Evaluation of FaceNet (``fullcap eval facenet``): the two metrics of the paper's
supplementary Table 2, on face crops, plus a speed benchmark and overlay pictures.

- Landmark error: mean 2D distance between the projected face68 vertices of the fit and the
  labelled landmarks, in crop pixels (all 68, hidden ones too: the labels are projections of
  the landmark vertices), and the same divided by the inter-ocular distance (outer eye
  corners, landmarks 36 and 45) of the labels.
- Photometric error after projection: the fitted face rendered with its own colours (the
  image formation of :mod:`fullcap.face.render`, rasterised) over the crop; mean absolute RGB
  difference in [0, 1] over the face pixels it covers (``photometric_px``; occluder pixels
  excluded when the data has a part map, ``photometric_px_all`` keeps them), and over the
  visible vertices sampled at their projections (``photometric_vertex``).

The same metrics are given for the ground truth (true geometry, albedo and SH-projected
lighting) as a reference: the engine's camera degradations keep even the truth from a perfect
photometric fit, and a fit can absorb part of them.
Table 2 (EHF, full images): FaceNet 5.64 px / 0.0468, Tewari et al. 5.81 px / 0.2482.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from fullcap.face.render import FaceRasterizer, form_image, sample_image
from fullcap.models.facenet import FaceNet
from fullcap.synth.samplers import visible_action_names
from fullcap.synth.scene import vertex_normals

__all__ = [
    "benchmark",
    "evaluate",
    "landmark_errors",
    "overlay_sheet",
    "photometric_errors",
    "save_overlay",
]

OCCLUDER = 255
EYE_OUTER = (36, 45)


def landmark_errors(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mean landmark error (B,) in pixels and divided by the inter-ocular distance
    (outer eye corners of ``target``). pred, target: (B, 68, 2); weight: (B, 68) or None.
    Samples without landmark labels (all weights zero, e.g. a folder of crops) get NaN."""
    d = (pred - target).norm(dim=-1)
    w = torch.ones_like(d) if weight is None else weight.to(d.dtype)
    px = (d * w).sum(1) / w.sum(1).clamp_min(1.0)
    px = torch.where(w.sum(1) > 0, px, torch.full_like(px, float("nan")))
    iod = (target[:, EYE_OUTER[0]] - target[:, EYE_OUTER[1]]).norm(dim=-1)
    return px, px / iod.clamp_min(1e-6)


def photometric_errors(
    rasterizer: FaceRasterizer,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    colors: torch.Tensor,
    image: torch.Tensor,
    part: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Rendered-pixel photometric errors of a batch.

    vertices (B, V, 3) camera frame; K (B, 3, 3); colors (B, V, 3) sRGB [0, 1]; image
    (B, 3, S, S) uint8; part (B, S, S) uint8 or None. Returns per-sample mean absolute errors
    in [0, 1] over covered non-occluder pixels (B,) and over all covered pixels (B,), and the
    renders (S, S, 3) uint8 over the crops (NaN errors where nothing is covered).
    """
    f = faces.cpu().numpy()
    err, err_all, renders = [], [], []
    for b in range(vertices.shape[0]):
        crop = np.ascontiguousarray(image[b].permute(1, 2, 0).cpu().numpy())
        r = rasterizer.render(
            vertices[b].detach().cpu().numpy(),
            f,
            K[b].detach().cpu().numpy(),
            colors[b].detach().clamp(0, 1).cpu().numpy(),
            background=crop,
        )
        covered = r.triangle_id >= 0
        diff = np.abs(r.rgb.astype(np.float32) - crop.astype(np.float32)).mean(-1) / 255.0
        keep = covered if part is None else covered & (part[b].cpu().numpy() != OCCLUDER)
        err.append(float(diff[keep].mean()) if keep.any() else float("nan"))
        err_all.append(float(diff[covered].mean()) if covered.any() else float("nan"))
        renders.append(r.rgb)
    return np.array(err), np.array(err_all), renders


def _vertex_error(
    rasterizer: FaceRasterizer, faces, K, verts, normals, colors, image
) -> np.ndarray:
    vis = rasterizer.visibility(verts, faces, K, normals)
    uv = verts @ K.transpose(1, 2)
    uv = uv[..., :2] / uv[..., 2:3]
    obs = sample_image(image.float() / 255.0, uv)
    d = (colors - obs).abs().mean(-1)
    w = vis.float()
    return ((d * w).sum(1) / w.sum(1).clamp_min(1.0)).cpu().numpy()


@torch.no_grad()
def evaluate(
    net: FaceNet,
    data: torch.utils.data.Dataset,
    n: int | None = None,
    batch_size: int = 32,
    rasterizer: FaceRasterizer | None = None,
) -> dict:
    """Metrics of the network (and of the ground truth, where known) on the first ``n`` crops
    of ``data`` (all when None). Returns ``{"samples", "facenet": {...}, "truth": {...}}``."""
    was_training = net.training
    net.eval()
    rast = rasterizer or FaceRasterizer(net.config.input_size)
    fm = net.face
    n = len(data) if n is None else min(n, len(data))
    rows: dict[str, list[np.ndarray]] = {}
    truth_rows: dict[str, list[np.ndarray]] = {}

    def add(d: dict, key: str, x) -> None:
        d.setdefault(key, []).append(np.asarray(x, dtype=np.float64).reshape(-1))

    pred_e: list[torch.Tensor] = []
    true_e: list[torch.Tensor] = []
    for start in range(0, n, batch_size):
        items = [data[i] for i in range(start, min(n, start + batch_size))]
        batch = torch.utils.data.default_collate(items)
        K, image, part = batch["K"], batch["image"], batch["part"]
        out = net(image, K)
        img = form_image(fm, out.params, K, out.vertices)
        px, iod = landmark_errors(out.landmarks_uv, batch["landmarks"], batch["landmark_weight"])
        add(rows, "landmark_px", px)
        add(rows, "landmark_iod", iod)
        e, e_all, _ = photometric_errors(rast, img.vertices, fm.faces, K, img.colors, image, part)
        add(rows, "photometric_px", e)
        add(rows, "photometric_px_all", e_all)
        add(rows, "photometric_vertex", _vertex_error(
            rast, fm.faces, K, img.vertices, img.normals, img.colors, image))  # fmt: skip
        has = batch["has_truth"]
        if has.any():
            v_err = (img.vertices - batch["vertices"]).norm(dim=-1).mean(1)[has]
            add(rows, "vertex_mm", v_err * 1000)
            add(rows, "expression_mae", (out.params.expression - batch["expression"]).abs()
                .mean(1)[has])  # fmt: skip
            pred_e.append(out.params.expression[has])
            true_e.append(batch["expression"][has])
        alb = batch["has_albedo"] & has
        if alb.any():
            from fullcap.face.render import shade

            tv = batch["vertices"][alb]
            tn = vertex_normals(tv, fm.faces)
            tc = shade(batch["albedo"][alb], tn, batch["sh"][alb])
            p = None if part is None else part[alb]
            e, e_all, _ = photometric_errors(rast, tv, fm.faces, K[alb], tc, image[alb], p)
            add(truth_rows, "photometric_px", e)
            add(truth_rows, "photometric_px_all", e_all)
            add(truth_rows, "photometric_vertex", _vertex_error(
                rast, fm.faces, K[alb], tv, tn, tc, image[alb]))  # fmt: skip
    net.train(was_training)

    def summary(d: dict[str, list[np.ndarray]]) -> dict[str, float]:
        out = {}
        for k, v in d.items():
            a = np.concatenate(v)
            if np.isfinite(a).any():  # e.g. no landmark error for unlabelled crops
                out[k] = float(np.nanmean(a))
        return out

    report = {"samples": n, "facenet": summary(rows), "truth": summary(truth_rows)}
    if true_e:
        report["expression"] = expression_report(
            torch.cat(pred_e), torch.cat(true_e), fm.expression_names
        )
    return report


EXPRESSION_KEYS = ("jawOpen", "mouthSmileLeft", "eyeBlinkLeft", "browInnerUp", "mouthPucker")


def expression_report(
    pred: torch.Tensor, true: torch.Tensor, names: list[str] | tuple[str, ...]
) -> dict[str, float]:
    """Expression accuracy against the baselines a network must beat: MAE of the network,
    of always predicting zeros (neutral) and of always predicting the mean; Pearson
    correlation per action (mean over actions that vary, over the visible ones
    (:func:`fullcap.synth.samplers.visible_action_names`), and a few named ones); MAE where a
    visible action is clearly on (truth >= 0.3) beside answering neutral there."""
    p, t = pred.double(), true.double()
    out = {
        "mae": float((p - t).abs().mean()),
        "mae_zeros": float(t.abs().mean()),
        "mae_mean": float((t - t.mean(0)).abs().mean()),
    }
    pc, tc = p - p.mean(0), t - t.mean(0)
    denom = (pc.norm(dim=0) * tc.norm(dim=0)).clamp_min(1e-12)
    corr = (pc * tc).sum(0) / denom
    varies = (t.std(0) > 1e-3) & (p.std(0) > 1e-6)
    out["corr_mean"] = float(corr[varies].mean()) if varies.any() else float("nan")
    # the actions a 64-pixel crop shows (jaw, smile, brows, lips, blinks): mean correlation,
    # and the error where they are clearly on (truth >= 0.3) against answering neutral there
    visible = set(visible_action_names())
    vis = torch.tensor([n in visible for n in names])
    sel = vis & varies
    out["corr_visible"] = float(corr[sel].mean()) if sel.any() else float("nan")
    strong = (t >= 0.3) & vis
    if strong.any():
        out["mae_strong"] = float((p - t).abs()[strong].mean())
        out["mae_strong_zeros"] = float(t[strong].mean())
    for k in EXPRESSION_KEYS:
        if k in names:
            i = list(names).index(k)
            out[f"corr_{k}"] = float(corr[i]) if varies[i] else float("nan")
    return out


@torch.no_grad()
def overlay_sheet(
    net: FaceNet, data: torch.utils.data.Dataset, indices: list[int], scale: int = 3
) -> np.ndarray:
    """A picture (H, W, 3) uint8: one row per crop: the crop, the fitted face rendered over
    it, and the crop with labelled (red) and fitted (green) landmarks; upscaled ``scale``x."""
    import cv2

    net.eval()
    rast = FaceRasterizer(net.config.input_size)
    batch = torch.utils.data.default_collate([data[i] for i in indices])
    out = net(batch["image"], batch["K"])
    img = form_image(net.face, out.params, batch["K"], out.vertices)
    _, _, renders = photometric_errors(
        rast, img.vertices, net.face.faces, batch["K"], img.colors, batch["image"]
    )
    rows = []
    for b in range(len(indices)):
        crop = np.ascontiguousarray(batch["image"][b].permute(1, 2, 0).numpy())
        big = [cv2.resize(x, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
               for x in (crop, renders[b], crop)]  # fmt: skip
        for pts, col in ((batch["landmarks"][b], (255, 0, 0)), (out.landmarks_uv[b], (0, 255, 0))):
            for u, v in (pts.numpy() * scale).tolist():
                cv2.circle(big[2], (int(u), int(v)), 1, col, -1, cv2.LINE_AA)
        rows.append(np.concatenate(big, 1))
    return np.concatenate(rows, 0)


@torch.no_grad()
def benchmark(net: FaceNet, n: int = 200, threads: int = 1, warmup: int = 20) -> dict:
    """Milliseconds per crop at batch 1 on the CPU: the network alone (parameters) and with
    the face model's posed vertices and landmarks (the full forward)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    net = net.eval().cpu()
    s = net.config.input_size
    x = torch.randint(0, 256, (1, 3, s, s), dtype=torch.uint8)
    K = net.default_K(1)
    times: dict[str, list[float]] = {"network_ms": [], "forward_ms": []}
    for i in range(warmup + n):
        t0 = time.perf_counter()
        raw = net.head(net.fc(net.features(net.normalise(x))))
        net.decode(raw, K)
        t1 = time.perf_counter()
        net(x, K)
        t2 = time.perf_counter()
        if i >= warmup:
            times["network_ms"].append((t1 - t0) * 1e3)
            times["forward_ms"].append((t2 - t1) * 1e3)
    torch.set_num_threads(old)
    report: dict = {"input_size": s, "threads": threads, "runs": n}
    for k, v in times.items():
        report[k] = float(np.median(v))
        report[k.replace("_ms", "_p90_ms")] = float(np.percentile(v, 90))
    report["parameters"] = sum(p.numel() for p in net.parameters())
    return report


def save_overlay(
    net: FaceNet, data: torch.utils.data.Dataset, path: str | Path, n: int = 8
) -> Path:
    """Write :func:`overlay_sheet` of the first ``n`` crops as a PNG."""
    from fullcap.io import save_png

    idx = list(range(min(n, len(data))))
    return save_png(path, overlay_sheet(net, data, idx))
