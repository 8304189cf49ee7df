"""Training of FaceNet (``fullcap train facenet``): self-supervised through the differentiable
image formation of :mod:`fullcap.face.render`, plus supervised terms where the data has ground
truth (synthetic crops, :class:`fullcap.train.face_data.FaceCrops`).

Loss (weights in :class:`FaceTrainConfig`):

- ``photo``: MoFA's robust photometric loss over the visible face vertices (rasterised
  visibility of the prediction; occluder pixels masked when the data has a part map and
  ``mask_occluders``);
- ``landmark``: squared reprojection error of the face68 vertices, in crop sides;
- ``reg_identity``, ``reg_albedo``, ``reg_expression``: the statistical priors;
- supervised, on samples with truth only: ``vertex`` (mean 3D distance of the face vertices,
  camera frame, metres), ``expression`` (squared error of the 52 weights), ``identity``
  (squared error of the coefficients), ``sh`` (squared error of the SH coefficients),
  ``albedo`` (mean absolute error of the linear per-vertex albedo). ``self_supervised`` turns
  them all off (for crops without ground truth: only photo, landmark and priors).

Adam, learning rate ``lr`` dropped tenfold at ``lr_drop`` of the steps; gradient clipping.
Resumable: a killed run continues from ``last.pt`` (the batches of step s depend only on
(seed, s), so a resumed run sees the data an uninterrupted one would have seen).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from fullcap.data.workers import init_worker
from fullcap.face.render import (
    FaceRasterizer,
    form_image,
    landmark_loss,
    photometric_loss,
    regularisers,
    sample_image,
)
from fullcap.models.facenet import FaceNet, FaceNetConfig, FaceNetOutput
from fullcap.train.checkpoint import Ledger, load_checkpoint, save_checkpoint
from fullcap.train.face_data import FaceData

log = logging.getLogger(__name__)

OCCLUDER = 255


@dataclass(frozen=True)
class FaceTrainConfig:
    steps: int = 3000
    batch_size: int = 16
    lr: float = 1e-3
    lr_drop: float = 0.8  # fraction of ``steps`` after which the rate is lr / 10
    seed: int = 0
    size: int = 64
    checkpoint_every: int = 250
    eval_every: int = 500
    val_samples: int = 128
    mask_occluders: bool = True
    self_supervised: bool = False
    w_photo: float = 1.0
    w_landmark: float = 100.0
    w_reg_identity: float = 1e-3
    w_reg_albedo: float = 1e-3
    w_reg_expression: float = 1e-3
    w_vertex: float = 10.0
    w_expression: float = 1.0
    w_identity: float = 0.1
    w_sh: float = 0.01
    w_albedo: float = 0.5


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-sample values x (B,) over mask (B,) bool (0 when empty)."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def face_losses(
    net: FaceNet,
    out: FaceNetOutput,
    batch: dict[str, torch.Tensor],
    rasterizer: FaceRasterizer,
    tc: FaceTrainConfig,
) -> dict[str, torch.Tensor]:
    """All terms and their weighted ``total`` for one batch (see the module docstring)."""
    fm, p = net.face, out.params
    K = batch["K"]
    img = form_image(fm, p, K, out.vertices)
    vis = rasterizer.visibility(img.vertices, fm.faces, K, img.normals)
    image = batch["image"].float() / 255.0
    if tc.mask_occluders and "part" in batch:
        s = image.shape[-1]
        px = img.uv.detach().floor().long().clamp(0, s - 1)
        part = batch["part"].long()
        hit = part[torch.arange(len(part))[:, None], px[..., 1], px[..., 0]]
        vis &= hit != OCCLUDER
    observed = sample_image(image, img.uv)
    terms: dict[str, torch.Tensor] = {
        "photo": photometric_loss(img.colors, observed, vis.float()),
        "landmark": landmark_loss(
            out.landmarks_uv, batch["landmarks"], batch["landmark_weight"], image.shape[-1]
        ),
    }
    terms.update(regularisers(p))
    weights = {
        "photo": tc.w_photo,
        "landmark": tc.w_landmark,
        "reg_identity": tc.w_reg_identity,
        "reg_albedo": tc.w_reg_albedo,
        "reg_expression": tc.w_reg_expression,
    }
    if not tc.self_supervised and "has_truth" in batch:
        has, has_alb = batch["has_truth"], batch["has_albedo"]
        terms["vertex"] = _masked_mean((img.vertices - batch["vertices"]).norm(dim=-1).mean(1), has)
        terms["expression"] = _masked_mean(((p.expression - batch["expression"]) ** 2).mean(1), has)
        terms["identity"] = _masked_mean(((p.identity - batch["identity"]) ** 2).mean(1), has)
        terms["sh"] = _masked_mean(((p.sh - batch["sh"]) ** 2).mean((1, 2)), has)
        terms["albedo"] = _masked_mean((img.albedo - batch["albedo"]).abs().mean((1, 2)), has_alb)
        weights |= {
            "vertex": tc.w_vertex,
            "expression": tc.w_expression,
            "identity": tc.w_identity,
            "sh": tc.w_sh,
            "albedo": tc.w_albedo,
        }
    terms["total"] = sum(weights[k] * terms[k] for k in weights)
    terms["visible_fraction"] = vis.float().mean().detach()
    return terms


class _Batches(torch.utils.data.IterableDataset):
    """Batches of training crops; batch ``s`` depends only on (seed, s) (sample indices and
    augmentation draws), so a resumed run sees the same data as an uninterrupted one."""

    def __init__(self, data: FaceData, tc: FaceTrainConfig, start: int):
        self.data, self.tc, self.start = data, tc, start

    def __iter__(self):
        torch.set_num_threads(1)
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        step = self.start + wid
        collate = torch.utils.data.default_collate
        while True:
            rng = np.random.default_rng([self.tc.seed, step])
            idx = rng.integers(0, len(self.data), self.tc.batch_size)
            self.data.set_epoch(step)
            yield collate([self.data[int(i)] for i in idx])
            step += nw


def _loader(data: FaceData, tc: FaceTrainConfig, start: int, workers: int):
    ds = _Batches(data, tc, start)
    if workers == 0:
        return iter(ds)
    return iter(
        torch.utils.data.DataLoader(
            ds, batch_size=None, num_workers=workers, prefetch_factor=2, worker_init_fn=init_worker
        )
    )


def new_network(tc: FaceTrainConfig, **overrides: Any) -> FaceNet:
    """A fresh FaceNet with a freshly built face model (deterministic)."""
    from fullcap.face.build import build_face_model

    face_model, report = build_face_model()
    torch.manual_seed(tc.seed)
    return FaceNet.create(face_model, report, input_size=tc.size, **overrides)


def train(
    out_dir: str | Path,
    data: Sequence[str | Path],
    tc: FaceTrainConfig,
    val: Sequence[str | Path] = (),
    progress: bool = True,
    workers: int = 1,
    net: FaceNet | None = None,
) -> Path:
    """Train (or resume) into ``out_dir``; returns the path of the last checkpoint.

    Args:
        out_dir: run folder: ``last.pt``, ``metrics.jsonl``, ``weights.safetensors``.
        data: training shard directories or folders of face crops (:class:`FaceData`);
            val: held-out ones (metrics rows in ``metrics.jsonl``).
        tc: the training config (on resume, the stored one is used except ``steps``).
        workers: data-loading processes (0: in this process).
        net: a fresh network to train (default: :func:`new_network`); ignored on resume.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "last.pt"
    ledger = Ledger(out_dir / "metrics.jsonl")
    step = 0
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        tc = FaceTrainConfig(**(state["train_config"] | {"steps": tc.steps}))
        net = FaceNet(FaceNetConfig.from_dict(state["config"]))
        net.load_state_dict(state["model"])
        step = int(state["step"])
        log.info("resumed %s at step %d", ckpt_path, step)
    else:
        state = None
        net = net if net is not None else new_network(tc)
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    train_data = FaceData(data, net.face, size=net.config.input_size, augment=True, seed=tc.seed)
    val_data = None
    if val:
        val_data = FaceData(val, net.face, size=net.config.input_size, augment=False)
    rasterizer = FaceRasterizer(net.config.input_size)
    batches = _loader(train_data, tc, step, workers)

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            dict(
                config=net.config.to_dict(),
                train_config=asdict(tc),
                model=net.state_dict(),
                optimizer=opt.state_dict(),
                step=step,
                data=[str(d) for d in data],
            ),
        )

    bar = _progress(tc.steps, step) if progress else None
    t0 = time.time()
    while step < tc.steps:
        lr = tc.lr if step < tc.lr_drop * tc.steps else tc.lr / 10
        for g in opt.param_groups:
            g["lr"] = lr
        net.train()
        batch = next(batches)
        losses = face_losses(net, net(batch["image"], batch["K"]), batch, rasterizer, tc)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        if bar is not None:
            bar.update(
                step, loss=float(losses["total"].detach()), photo=float(losses["photo"].detach())
            )
        if step % 50 == 0:
            row = {k: round(float(v.detach()), 6) for k, v in losses.items()}
            log.info("step %d %s (%.0f s)", step, json.dumps(row), time.time() - t0)
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            checkpoint()
        if val_data is not None and (step % tc.eval_every == 0 or step == tc.steps):
            from fullcap.eval.facenet import evaluate

            report = evaluate(net, val_data, n=tc.val_samples, rasterizer=rasterizer)
            ledger.write(
                step=step,
                checkpoint=str(ckpt_path),
                dataset=",".join(str(v) for v in val),
                **{k: v for k, v in report["facenet"].items() if isinstance(v, float)},
                **{f"expr_{k}": v for k, v in report.get("expression", {}).items()},
            )
            log.info("step %d val %s", step, json.dumps(report["facenet"]))
    if bar is not None:
        bar.close()
    export(ckpt_path, out_dir / "weights.safetensors")
    return ckpt_path


def export(checkpoint: str | Path, out: str | Path) -> Path:
    """Write a checkpoint's network (face model included) as a float16 weights file."""
    from fullcap.models.weights import save_weights

    state = load_checkpoint(Path(checkpoint))
    net = FaceNet(FaceNetConfig.from_dict(state["config"]))
    net.load_state_dict(state["model"])
    info = {"steps": state["step"], "train_config": state["train_config"], "data": state["data"]}
    return save_weights(net, "facenet", net.config.to_dict(), out, info=info, half=True)


def _progress(total: int, start: int):
    from fullcap.train.checkpoint import ProgressBar

    return ProgressBar(total, start, "train facenet")
