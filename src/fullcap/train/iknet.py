"""Training of BodyIKNet / HandIKNet (``fullcap train iknet --part body|hand``).

Loss (the paper's Eq. 15, terms as METHOD.md reads them):
    L = l_alpha L_alpha + l_beta L_beta + l_theta L_theta + l_chi L_chi + l_chibar L_chibar
- L_alpha: the raw 6D output's two columns kept unit and orthogonal (regulariser).
- L_beta: squared error of the shape coefficients.
- L_theta: squared Frobenius error of the IK bones' rotation matrices.
- L_chi: squared error of the keypoints re-posed by the body model with the predicted pose
  and shape against the clean keypoints; L_chibar: the same with the true shape (decouples
  pose from shape). Body keypoints in metres; hand keypoints in wrist-middle1 units.
Weights: body 0.1, 0.001, 1.0, 20.0, 0.1; hand the same with l_theta = 10.0. Adam, fixed
learning rate 1e-4. Resumable: a killed run continues from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fullcap.bodymodel.model import BodyModel
from fullcap.data.workers import init_worker
from fullcap.models.iknet import IKNet, IKNetConfig, IKOutput, preset
from fullcap.train.checkpoint import Ledger, load_checkpoint, save_checkpoint
from fullcap.train.ik_data import IKBatch, IKData, normalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IKTrainConfig:
    part: str = "body"
    steps: int = 20000
    batch_size: int = 256
    lr: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 500
    eval_every: int = 1000
    l_alpha: float = 0.1
    l_beta: float = 0.001
    l_theta: float | None = None  # 1.0 body, 10.0 hand
    l_chi: float = 20.0
    l_chibar: float = 0.1
    width: int = 512
    depth: int = 6
    num_betas: int = 16

    @property
    def theta_weight(self) -> float:
        if self.l_theta is not None:
            return self.l_theta
        return 10.0 if self.part == "hand" else 1.0


def make_config(model: BodyModel, part: str, **overrides) -> IKNetConfig:
    """The IKNet config for ``part`` with the model's reference-pose keypoints."""
    from fullcap.skeletons import BODY33_SET, HAND21_SET

    kp_set = BODY33_SET if part == "body" else HAND21_SET
    with torch.no_grad():
        out = model(return_vertices=False)
    set_name = "body33" if part == "body" else "right_hand"
    ref = normalise(out.keypoints[set_name] @ _model_to_camera(model), part, kp_set.names)[0]
    from fullcap.synth.samplers import ParamSampler

    examples = ParamSampler(model).sample(1024, torch.Generator().manual_seed(0)).betas
    return preset(part, ref, kp_set.parents, betas=examples, **overrides)


def _model_to_camera(model: BodyModel) -> torch.Tensor:
    from fullcap.train.ik_data import MODEL_TO_CAMERA

    return MODEL_TO_CAMERA.T.to(model.dtype)  # row vectors: x_cam = x @ M^T


def ik_losses(
    out: IKOutput, batch: IKBatch, data: IKData, tc: IKTrainConfig
) -> dict[str, torch.Tensor]:
    """The five terms and their weighted total."""
    a1, a2 = out.raw6d[..., :3], out.raw6d[..., 3:]
    l_alpha = (
        (a1.norm(dim=-1) - 1) ** 2 + (a2.norm(dim=-1) - 1) ** 2 + (a1 * a2).sum(-1) ** 2
    ).mean()
    l_beta = ((out.betas - batch.betas) ** 2).sum(-1).mean()
    l_theta = ((out.rotations - batch.rotations) ** 2).sum((-1, -2)).mean()
    go, pose = data.pose_from_rotations(out.rotations)
    kp_pred = data.keypoints(out.betas, pose, go)
    kp_true_shape = data.keypoints(batch.betas, pose, go)
    l_chi = ((kp_pred - batch.target) ** 2).sum(-1).mean()
    l_chibar = ((kp_true_shape - batch.target) ** 2).sum(-1).mean()
    total = (
        tc.l_alpha * l_alpha
        + tc.l_beta * l_beta
        + tc.theta_weight * l_theta
        + tc.l_chi * l_chi
        + tc.l_chibar * l_chibar
    )
    return dict(total=total, alpha=l_alpha, beta=l_beta, theta=l_theta, chi=l_chi, chibar=l_chibar)


def train(out_dir: Path, tc: IKTrainConfig, progress: bool = True, workers: int = 1) -> Path:
    """Train (or resume) into ``out_dir``; returns the path of the last checkpoint."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = BodyModel.load()
    ckpt_path = out_dir / "last.pt"
    ledger = Ledger(out_dir / "metrics.jsonl")
    if ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        tc = IKTrainConfig(**(state["train_config"] | {"steps": tc.steps}))
        config = IKNetConfig.from_dict(state["config"])
    else:
        state = None
        config = make_config(model, tc.part, width=tc.width, depth=tc.depth, num_betas=tc.num_betas)
    torch.manual_seed(tc.seed)  # the initial weights of a fresh run
    net = IKNet(config)
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr)
    step = 0
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        log.info("resumed %s at step %d", ckpt_path, step)
    data = IKData(model, config)
    val = data.batch(512, torch.Generator().manual_seed(10_000 + tc.seed))
    batches = iter(_loader(config, tc, step, workers))

    def checkpoint():
        save_checkpoint(
            ckpt_path,
            dict(
                config=config.to_dict(),
                train_config=asdict(tc),
                model=net.state_dict(),
                optimizer=opt.state_dict(),
                step=step,
            ),
        )

    bar = _progress(tc.steps, step) if progress else None
    t0 = time.time()
    while step < tc.steps:
        net.train()
        batch = IKBatch(*next(batches))
        losses = ik_losses(net(batch.inputs), batch, data, tc)
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        step += 1
        if bar is not None:
            bar.update(step, loss=float(losses["total"]))
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            checkpoint()
        if step % tc.eval_every == 0 or step == tc.steps:
            net.eval()
            with torch.no_grad():
                v = ik_losses(net(val.inputs), val, data, tc)
            row = {k: float(x) for k, x in v.items()}
            ledger.write(step=step, checkpoint=str(ckpt_path), dataset="synthetic-val", **row)
            log.info("step %d val %s (%.0f s)", step, json.dumps(row), time.time() - t0)
    if bar is not None:
        bar.close()
    export(ckpt_path, out_dir / "weights.safetensors")
    return ckpt_path


def export(checkpoint: Path, out: Path) -> Path:
    """Write a checkpoint's network as a float16 weights file with its config and training info."""
    from fullcap.models.weights import save_weights

    state = load_checkpoint(checkpoint)
    config = IKNetConfig.from_dict(state["config"])
    net = IKNet(config)
    net.load_state_dict(state["model"])
    kind = "bodyiknet" if config.part == "body" else "handiknet"
    info = {"steps": state["step"], "train_config": state["train_config"]}
    return save_weights(net, kind, config.to_dict(), out, info=info, half=True)


def _progress(total: int, start: int):
    from fullcap.train.checkpoint import ProgressBar

    return ProgressBar(total, start, "train iknet")


class _Batches(torch.utils.data.IterableDataset):
    """Training batches; batch ``s`` depends only on (seed, s), so a resumed run sees the same
    data as an uninterrupted one."""

    def __init__(self, config: IKNetConfig, tc: IKTrainConfig, start: int):
        self.config, self.tc, self.start = config, tc, start

    def __iter__(self):
        torch.set_num_threads(1)
        data = IKData(BodyModel.load(), self.config)
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        step = self.start + wid
        while True:
            g = torch.Generator().manual_seed(self.tc.seed * 1_000_003 + step)
            b = data.batch(self.tc.batch_size, g)
            yield (b.inputs, b.target, b.rotations, b.betas, b.pose, b.global_orient)
            step += nw


def _loader(config: IKNetConfig, tc: IKTrainConfig, start: int, workers: int):
    ds = _Batches(config, tc, start)
    if workers == 0:
        return ds
    return torch.utils.data.DataLoader(
        ds,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4,
        persistent_workers=False,
        worker_init_fn=init_worker,
    )
