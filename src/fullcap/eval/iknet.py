"""Evaluation of the IKNets (``fullcap eval iknet``) against a per-frame optimisation baseline.

Metrics, on held-out synthetic bodies, with clean and with noisy (DetNet-like) keypoints:
- keypoint error after forward kinematics: the body model posed with the predicted pose and
  shape against the clean keypoints (mm; hands converted from wrist-middle1 units to mm);
- rotation error: mean geodesic angle of the IK bones' rotations (degrees), global rotation
  reported apart;
- shape error: mean distance between the predicted and true rest meshes (mm).
The baseline fits the same outputs (6D rotations and betas) to the same keypoints by Adam,
starting from the identity, and is timed the same way.
"""

from __future__ import annotations

import time

import torch

from fullcap.geometry.rotations import geodesic_distance, rot6d_to_rotmat
from fullcap.models.iknet import IKNet
from fullcap.train.ik_data import IKBatch, IKData


def _metrics(rotations, betas, batch: IKBatch, data: IKData) -> dict[str, float]:
    go, pose = data.pose_from_rotations(rotations)
    kp = data.keypoints(betas, pose, go)
    err = (kp - batch.target).norm(dim=-1)
    if data.config.part == "hand":  # units of |wrist - middle1| -> metres
        err = err * _hand_scale(batch, data)[:, None]
    ang = torch.rad2deg(geodesic_distance(rotations, batch.rotations))
    k = betas.shape[1]
    basis = data.model.shape_basis[:k]
    shape_err = torch.einsum("bk,kvd->bvd", betas - batch.betas, basis).norm(dim=-1).mean()
    return {
        "keypoint_mm": float(err.mean() * 1000),
        "rotation_deg": float(ang[:, 1:].mean()),
        "global_rotation_deg": float(ang[:, 0].mean()),
        "shape_mm": float(shape_err * 1000),
    }


def _hand_scale(batch: IKBatch, data: IKData) -> torch.Tensor:
    """Wrist-middle1 length (B,) in metres of each sample's true right hand."""
    names = data.config.keypoints
    out = data.model(
        betas=batch.betas, pose=batch.pose, global_orient=batch.global_orient, return_vertices=False
    )
    kp = out.keypoints["right_hand"]
    return (kp[:, names.index("wrist")] - kp[:, names.index("middle1")]).norm(dim=-1)


def optimise(
    data: IKData, keypoints: torch.Tensor, iters: int = 150, lr: float = 0.05
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame optimisation baseline: rotations (B, n, 3, 3) and betas (B, K) fitted to
    normalised keypoints (B, P, 3) by Adam from the identity pose and mean shape."""
    b = keypoints.shape[0]
    n_bones, k = len(data.config.bones), data.config.num_betas
    raw = torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(b, n_bones, 1).requires_grad_(True)
    betas = torch.zeros(b, k, requires_grad=True)
    opt = torch.optim.Adam([raw, betas], lr=lr)
    for _ in range(iters):
        go, pose = data.pose_from_rotations(rot6d_to_rotmat(raw))
        kp = data.keypoints(betas, pose, go)
        loss = ((kp - keypoints) ** 2).sum(-1).mean() + 1e-4 * (betas**2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return rot6d_to_rotmat(raw.detach()), betas.detach()


def evaluate(
    net: IKNet,
    data: IKData,
    n: int = 1024,
    seed: int = 123,
    baseline_n: int = 128,
    baseline_iters: int = 150,
) -> dict:
    """Metrics of the network and of the optimisation baseline, clean and noisy inputs."""
    net.eval()
    report: dict = {"part": data.config.part, "samples": n, "baseline_samples": baseline_n}
    for noisy in (False, True):
        g = torch.Generator().manual_seed(seed)
        batch = data.batch(n, g, noisy=noisy)
        with torch.no_grad():
            t0 = time.perf_counter()
            out = net(batch.inputs)
            t_net = time.perf_counter() - t0
            net_metrics = _metrics(out.rotations, out.betas, batch, data)
        sub = IKBatch(
            *(
                x[:baseline_n]
                for x in (
                    batch.inputs,
                    batch.target,
                    batch.rotations,
                    batch.betas,
                    batch.pose,
                    batch.global_orient,
                )
            )
        )
        t0 = time.perf_counter()
        rot, betas = optimise(data, sub.inputs, iters=baseline_iters)
        t_opt = time.perf_counter() - t0
        with torch.no_grad():
            opt_metrics = _metrics(rot, betas, sub, data)
        tag = "noisy" if noisy else "clean"
        report[tag] = {
            "iknet": net_metrics | {"us_per_sample_batched": t_net / n * 1e6},
            "optimisation": opt_metrics
            | {"ms_per_sample_batched": t_opt / baseline_n * 1e3, "iterations": baseline_iters},
        }
    return report
