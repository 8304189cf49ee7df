"""DetNet training (``fullcap train detnet``): loss, plain loop, plateau schedule, resume.

Loss (the paper's Eq. 11 with the supplementary's weights):
    L = lambda_b L_body + lambda_h L_hand + lambda_f L_face,  lambda_b = 10, lambda_h = lambda_f = 1
- L_body = the basic PoseNet's loss (mean over the batch) + each sample's extended-head loss
  (the head of its source; summed over the samples of each head and divided by the batch size,
  so it is a mean over the batch of "the sample's own head's loss", 0 for headless sources).
- L_hand: the hand PoseNet's loss, mean over the batch's hand crops (0 without hands).
- L_face: the face PoseNet's keypoint-map loss, mean over the face crops (0 without faces).
Each PoseNet loss is ``w_k L_k + w_d L_d + w_l L_l`` with 1, 10, 10
(:func:`fullcap.models.posenet.posenet_loss`).

Optimiser: Adam, lr 1e-3, dropped to 1e-4 (factor 0.1, floor ``lr_low``) when the
validation loss has not improved (relative 1e-3) for ``patience`` evaluations in a row
(``torch.optim.lr_scheduler.ReduceLROnPlateau``; its state is in the checkpoint).

Weight average (``ema``, off by default): an exponential moving average of the weights and
batch-norm statistics (``torch.optim.swa_utils.AveragedModel``) kept beside the trained ones;
it is validated too (``ema_val_*`` in the ledger), saved in the checkpoint, and is what
:func:`export` and ``init`` take. Small batches make the weights wander about the minimum
they have found; their average sits nearer its middle.

Resume: ``out_dir/last.pt`` holds the model, optimiser, scheduler, step, data position and
configs; it is written every ``checkpoint_every`` steps and when the run stops (end,
Ctrl-C/SIGTERM, ``run_steps`` or ``time_limit_s``). Batches depend only on (seed, step)
(:class:`fullcap.data.mixer.Mixer`), so a resumed run follows the uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from fullcap.data.detnet_batches import DetNetBatch
from fullcap.data.heads import detnet_config
from fullcap.data.mixer import EVAL_AUGMENT, Mixer, make_loader, open_sources
from fullcap.models.detnet import (
    HAND_BONES,
    REFINER_NAMES,
    REFINER_PREFIXES,
    DetNet,
    DetNetConfig,
    DetNetOutput,
    refiner_fields,
)
from fullcap.models.posenet import PoseMaps, posenet_loss
from fullcap.synth.shards import Augment
from fullcap.train.checkpoint import Ledger, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

__all__ = ["DetNetTrainConfig", "detnet_loss", "export", "forward", "train"]


@dataclass(frozen=True)
class DetNetTrainConfig:
    """Everything a DetNet run needs besides the network config (saved in checkpoints).

    data / val: shard folders (any sources; folders of one source are concatenated).
    factor: multiplies the per-source batch counts. patience: evaluations without
    improvement before the lr drop. image_size: side of the augmented item images the hand
    and face crops are cut from.
    """

    preset: str = "lite"
    data: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    steps: int = 5000
    factor: int = 1
    lr: float = 1e-3
    lr_low: float = 1e-4
    patience: int = 4
    eval_every: int = 250
    val_batches: int = 8
    checkpoint_every: int = 100
    seed: int = 0
    image_size: int = 256
    lambda_b: float = 10.0
    lambda_h: float = 1.0
    lambda_f: float = 1.0
    clip_norm: float = 100.0
    sigma: float = 1.0  # keypoint-map Gaussians, map pixels
    sigma_3d: float | None = None  # weight of the 3D terms (None: sigma, as in the paper)
    hand_w3d: float = 10.0  # w_d = w_l of the hand PoseNet (the paper's 10)
    cut: float = 0.0  # share of body shots cut below the chest (Augment.p_cut; 0 before it)
    ema: float = 0.0  # decay of the moving average of the weights per step (0: none)
    train_only: tuple[str, ...] = ()  # parameter-name prefixes to train (empty: all)
    counts: dict = field(default_factory=dict)  # source -> samples per batch (empty: groups)
    overrides: dict = field(default_factory=dict)  # DetNetConfig fields (e.g. hidden)

    def __post_init__(self) -> None:
        for name in ("steps", "factor", "eval_every", "val_batches", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "steps" else 1):
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema is a decay per step, 0 (off) to below 1, got {self.ema!r}")

    @classmethod
    def from_dict(cls, d: dict) -> DetNetTrainConfig:
        d = dict(d)
        d["data"], d["val"] = tuple(d["data"]), tuple(d["val"])
        d["train_only"] = tuple(d.get("train_only", ()))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _sub(maps: PoseMaps, rows: torch.Tensor) -> PoseMaps:
    return PoseMaps(maps.K[rows], maps.D[rows], maps.L[rows])


def forward(net: DetNet, batch: DetNetBatch, flip_test: bool = False) -> DetNetOutput:
    """Run DetNet on a batch (all heads, the batch's hand and face crops; ``flip_test``: see
    :meth:`fullcap.models.detnet.DetNet.forward`)."""
    h, f = batch.hands, batch.face
    return net(
        batch.body,
        h.crops if h else None,
        h.boxes if h else None,
        h.is_left if h else None,
        f.crops if f else None,
        f.boxes if f else None,
        flip_test=flip_test,
    )


def detnet_loss(
    net: DetNet, out: DetNetOutput, batch: DetNetBatch, tc: DetNetTrainConfig
) -> dict[str, torch.Tensor]:
    """The weighted total and its terms (``body``, ``basic``, ``ext``, ``hand``, ``face``, and
    the basic head's ``k``, ``d``, ``l``), each a scalar tensor."""
    zero = out.basic.K.new_zeros(())
    b = len(batch)
    kw = {"sigma": tc.sigma, "sigma_3d": tc.sigma_3d}
    basic = posenet_loss(out.basic, batch.basic, net.bones("basic"), **kw)
    ext = zero
    for head, ht in batch.extended.items():
        if head in out.extended:
            lh = posenet_loss(_sub(out.extended[head], ht.rows), ht.targets, net.bones(head), **kw)
            ext = ext + lh["total"] * (len(ht.rows) / b)
    hand = zero
    if batch.hands is not None and out.hands is not None:
        bones = HAND_BONES.to(out.hands.K.device)
        w3 = {"w_d": tc.hand_w3d, "w_l": tc.hand_w3d}
        hand = posenet_loss(out.hands, batch.hands.targets, bones, **kw, **w3)["total"]
    face = zero
    if batch.face is not None and out.face is not None:
        no_bones = torch.zeros(0, 2, dtype=torch.long, device=out.face.K.device)
        face = posenet_loss(out.face, batch.face.targets, no_bones, **kw)["total"]
    body = basic["total"] + ext
    total = tc.lambda_b * body + tc.lambda_h * hand + tc.lambda_f * face
    return {
        "total": total,
        "body": body,
        "basic": basic["total"],
        "ext": ext,
        "hand": hand,
        "face": face,
        "k": basic["k"],
        "d": basic.get("d", zero),
        "l": basic.get("l", zero),
    }


class _StopFlag:
    """Set by SIGINT/SIGTERM while training (main thread only), checked once per step."""

    def __init__(self) -> None:
        self.set = False
        self._old: dict[int, object] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.set:  # second signal: stop now
            raise KeyboardInterrupt
        self.set = True
        log.warning("signal %d: stopping after this step (checkpoint first)", signum)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(
    out_dir: str | Path,
    tc: DetNetTrainConfig,
    device: str | torch.device = "cpu",
    workers: int = 1,
    progress: bool = False,
    run_steps: int | None = None,
    time_limit_s: float | None = None,
    sigma_3d: float | None = None,
    lr: float | None = None,
    init: str | Path | None = None,
    cut: float | None = None,
    ema: float | None = None,
) -> dict:
    """Train (or resume) a DetNet in ``out_dir``.

    A fresh run needs ``tc.data`` and ``tc.val``; a resumed run (``out_dir/last.pt`` exists)
    takes its configs from the checkpoint, except ``steps`` (so a run can be extended), and
    ``data``/``val`` when given (e.g. moved folders).
    Args:
        run_steps / time_limit_s: stop (with a checkpoint) after this many steps or seconds
            of this call; the run continues on the next call.
        sigma_3d: set ``tc.sigma_3d`` (also when resuming: widening it makes the location
            maps tolerate 2D errors). A change rescales the loss, so the plateau schedule
            starts counting afresh.
        lr: set the learning rate from this call on (e.g. to drop it by hand when resuming);
            the plateau schedule goes on from there.
        cut: set ``tc.cut`` (also when resuming): the share of body shots whose crop is black
            below a line between the shoulders and the knees (:class:`fullcap.synth.shards.
            Augment`'s ``p_cut``), as capture sees a person cut off by a webcam's frame.
        ema: set ``tc.ema`` (also when resuming; 0 turns it off): the decay per step of the
            moving average of the weights that is validated, saved and exported beside them
            (e.g. 0.999: about the last 1000 steps). It starts from the weights of the step it
            is switched on at, and restarts when the decay changes.
        init: a new run starts from these weights (a weights file, ``detnet_lite`` or a
            checkpoint): every tensor whose name and shape match is copied, the rest (e.g. a
            new hand encoder) starts fresh; tensors of the init that fit nowhere are named in
            a warning. The run keeps the init's extended heads and its neck
            (``neck_blocks``, ``neck_attention``, ``neck_layers``) unless ``tc.overrides``
            sets them. Ignored when resuming.
    Returns:
        Summary: checkpoint path, step, finished flag, lr, last validation loss, steps/s and
        images/s of this call, batch size, the validation folders.
    """
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "last.pt"
    state = load_checkpoint(ckpt_path) if ckpt_path.exists() else None
    if state is not None:
        saved = DetNetTrainConfig.from_dict(state["train_config"])
        tc = DetNetTrainConfig.from_dict(
            asdict(saved)
            | {"steps": tc.steps}
            | ({"data": tc.data} if tc.data else {})
            | ({"val": tc.val} if tc.val else {})
        )
    changed_loss = False
    if sigma_3d is not None:
        if sigma_3d <= 0:
            raise ValueError(f"sigma_3d must be > 0 (map pixels), got {sigma_3d}")
        changed_loss = state is not None and (tc.sigma_3d or tc.sigma) != sigma_3d
        tc = replace(tc, sigma_3d=float(sigma_3d))
    if cut is not None:
        if not 0.0 <= cut <= 1.0:
            raise ValueError(f"cut is a share of the body shots, 0 to 1, got {cut}")
        tc = replace(tc, cut=float(cut))
    if ema is not None:
        tc = replace(tc, ema=float(ema))
    if not tc.data or not tc.val:
        raise ValueError("a new DetNet run needs training (data) and validation (val) folders")
    augment = Augment(out_size=tc.image_size, p_cut=tc.cut)
    readers = open_sources(tc.data, augment=augment, seed=tc.seed)
    val_augment = replace(EVAL_AUGMENT, out_size=tc.image_size)
    val_readers = open_sources(tc.val, augment=val_augment, seed=tc.seed)
    if state is not None:
        config = DetNetConfig.from_dict(state["config"])
    else:
        config = detnet_config(tc.preset, [r.spec for r in readers], **tc.overrides)
    start = _read_init(init) if init is not None and state is None else None
    if start is not None:
        config = _like_init(config, start[1], tc.overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tc.seed)
    net = DetNet(config).to(device)
    _freeze(net, tc.train_only)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=tc.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=0.1, patience=tc.patience, threshold=1e-3, min_lr=tc.lr_low
    )
    step, trained_s = 0, 0.0
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, trained_s = int(state["step"]), float(state.get("trained_s", 0.0))
        log.info("resumed %s at step %d", ckpt_path, step)
        if changed_loss:
            sched.best, sched.num_bad_epochs = math.inf, 0
            log.info("sigma_3d is now %g: the plateau schedule starts afresh", tc.sigma_3d)
    elif start is not None:
        fresh = _load_init(net, start[0], init)
        log.info("started from %s; fresh: %s", init, ", ".join(fresh) or "nothing")
    if lr is not None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        for g in opt.param_groups:
            g["lr"] = float(lr)
        sched.num_bad_epochs = 0
        log.info("learning rate set to %g", lr)
    averaged = _averaged(net, tc.ema, state)
    counts = _check_counts(tc.counts, readers)
    mixer = Mixer(readers, config, factor=tc.factor, seed=tc.seed, counts=counts)
    val_counts = _check_counts(tc.counts, val_readers)
    val_mixer = Mixer(
        val_readers, config, factor=tc.factor, seed=tc.seed + 1, jitter=False, counts=val_counts
    )
    ledger = Ledger(out_dir / "metrics.jsonl")
    val_cache: list[DetNetBatch] = []
    last_val: float | None = state.get("last_val") if state else None
    last_ema_val: float | None = None

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                "config": config.to_dict(),
                "train_config": asdict(tc),
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "step": step,
                "data_position": mixer.position(step),
                "trained_s": trained_s,
                "last_val": last_val,
            }
            | _averaged_state(averaged, tc.ema),
        )

    def validate(model: DetNet) -> dict[str, float]:
        if not val_cache:
            val_cache.extend(val_mixer.batch(k) for k in range(tc.val_batches))
        model.eval()
        sums: dict[str, float] = {}
        with torch.no_grad():
            for vb in val_cache:
                vb = vb.to(device)
                for k, v in detnet_loss(model, forward(model, vb), vb, tc).items():
                    sums[k] = sums.get(k, 0.0) + v.item() / len(val_cache)
        _train_mode(net)
        return sums

    bar = None
    if progress:
        from fullcap.train.checkpoint import ProgressBar

        bar = ProgressBar(tc.steps, step, "train detnet")
    t_start, n_steps, n_images = time.perf_counter(), 0, 0
    run_mean: dict[str, float] = {}
    _train_mode(net)
    loader = make_loader(mixer, start=step, workers=workers, stop=tc.steps)
    stopped = False
    with _StopFlag() as stop:
        t_step = time.perf_counter()
        batches = iter(loader)
        while True:
            try:
                s, batch = next(batches)
            except StopIteration:
                break
            except Exception:
                if stop.set:  # Ctrl-C also reached the loader's workers
                    break
                raise
            if s != step:
                raise RuntimeError(f"data loader out of order: got step {s}, expected {step}")
            batch = batch.to(device)
            losses = detnet_loss(net, forward(net, batch), batch, tc)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(
                [p for p in net.parameters() if p.requires_grad], tc.clip_norm
            )
            opt.step()
            if averaged is not None:
                averaged.update_parameters(net)
            step += 1
            now = time.perf_counter()
            trained_s += now - t_step
            t_step = now
            n_steps += 1
            n_images += len(batch)
            for k, v in losses.items():
                x = v.item()
                run_mean[k] = 0.98 * run_mean.get(k, x) + 0.02 * x
            if bar is not None:
                bar.update(step, loss=run_mean["total"], lr=opt.param_groups[0]["lr"])
            if step % tc.eval_every == 0:
                val = validate(net)
                ema_val = validate(averaged.module) if averaged is not None else {}
                last_ema_val = ema_val.get("total", last_ema_val)
                last_val = val["total"]
                sched.step(last_val)
                elapsed = now - t_start
                ledger.write(
                    step=step,
                    checkpoint=str(ckpt_path),
                    dataset="val",
                    lr=opt.param_groups[0]["lr"],
                    **{f"val_{k}": v for k, v in val.items()},
                    **{f"ema_val_{k}": v for k, v in ema_val.items()},
                    **{f"train_{k}": v for k, v in run_mean.items()},
                    steps_per_s=n_steps / elapsed,
                    images_per_s=n_images / elapsed,
                )
                log.info(
                    "step %d val %.4g%s train %.4g lr %.0e (%.2f steps/s)",
                    step,
                    last_val,
                    f" (average {last_ema_val:.4g})" if ema_val else "",
                    run_mean["total"],
                    opt.param_groups[0]["lr"],
                    n_steps / elapsed,
                )
                t_step = time.perf_counter()  # validation time is not training time
            out_of_time = time_limit_s is not None and now - t_start >= time_limit_s
            if stop.set or out_of_time or (run_steps is not None and n_steps >= run_steps):
                stopped = step < tc.steps
                break
            if step % tc.checkpoint_every == 0:
                checkpoint()
        checkpoint()
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t_start
    return {
        "checkpoint": str(ckpt_path),
        "step": step,
        "finished": step >= tc.steps and not stopped,
        "lr": opt.param_groups[0]["lr"],
        "val_loss": last_val,
        "ema_val_loss": last_ema_val,
        "steps_per_s": n_steps / elapsed if elapsed > 0 else 0.0,
        "images_per_s": n_images / elapsed if elapsed > 0 else 0.0,
        "batch_size": mixer.batch_size,
        "val": list(tc.val),
    }


def _averaged(
    net: DetNet, decay: float, state: dict | None
) -> torch.optim.swa_utils.AveragedModel | None:
    """The moving average of ``net``'s weights and buffers (None when ``decay`` is 0), taken
    from the checkpoint ``state`` when it holds one of the same decay."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel

    def update(kept: list, current: list, _: torch.Tensor) -> None:
        # (called per dtype) indices such as the bone tables, and batch counts, are copied:
        # torch's get_ema_multi_avg_fn rounds their blend down, turning indices into others
        for k, c in zip(kept, current, strict=True):
            k.lerp_(c, 1.0 - decay) if k.is_floating_point() else k.copy_(c)

    averaged = AveragedModel(net, multi_avg_fn=update, use_buffers=True)
    saved = (state or {}).get("ema")
    if saved is not None and saved.get("decay") == decay:
        averaged.module.load_state_dict(saved["model"])
        averaged.n_averaged.fill_(int(saved["steps"]))
        log.info("weight average (decay %g) resumed: %d steps", decay, saved["steps"])
    else:
        log.info("weight average (decay %g) starts from this step's weights", decay)
    return averaged


def _averaged_state(averaged: torch.optim.swa_utils.AveragedModel | None, decay: float) -> dict:
    """The checkpoint entry of the moving average (nothing when there is none)."""
    if averaged is None or int(averaged.n_averaged) == 0:
        return {}
    return {
        "ema": {
            "decay": decay,
            "steps": int(averaged.n_averaged),
            "model": averaged.module.state_dict(),
        }
    }


def _checkpoint_model(state: dict, source: str | Path, raw: bool = False) -> dict:
    """A checkpoint's network tensors: its moving average of the weights when it has one
    (unless ``raw``), else the trained weights."""
    saved = state.get("ema")
    if saved is None or raw:
        return state.get("model")
    log.info("%s: using the weight average (decay %g, %d steps)", source, saved["decay"],
             saved["steps"])  # fmt: skip
    return saved["model"]


def _freeze(net: DetNet, train_only: tuple[str, ...]) -> None:
    """Train only parameters whose names start with one of ``train_only`` (empty: all)."""
    if not train_only:
        return
    names = [n for n, _ in net.named_parameters()]
    for prefix in train_only:
        if not any(n.startswith(prefix) for n in names):
            raise ValueError(f"train_only: no DetNet parameter starts with {prefix!r}")
    for n, p in net.named_parameters():
        p.requires_grad_(n.startswith(tuple(train_only)))


def _train_mode(net: DetNet) -> None:
    """Training mode, except batch norms of frozen parts, which keep their statistics."""
    net.train()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in m.parameters()
        ):
            m.eval()


def _check_counts(counts: dict, readers: list) -> dict[str, int] | None:
    """Per-source batch counts for these readers (None: the group counts)."""
    if not counts:
        return None
    names = [r.spec.name for r in readers]
    missing = [n for n in names if n not in counts]
    if missing:
        raise ValueError(f"batch counts name no count for {missing} (given: {sorted(counts)})")
    bad = {
        k: v for k, v in counts.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0
    }
    if bad:
        raise ValueError(f"batch counts must be integers >= 0, got {bad}")
    return {n: counts[n] for n in names}


def _read_init(source: str | Path) -> tuple[dict[str, torch.Tensor], DetNetConfig]:
    """Tensors and config of a weights file (or packaged name) or a training checkpoint."""
    from fullcap.models.weights import read_weights

    if Path(source).suffix == ".pt":
        state = load_checkpoint(Path(source))
        tensors, config = _checkpoint_model(state, source), state.get("config")
    else:
        tensors, meta = read_weights(source)
        config = meta.get("config")
    try:
        return tensors, DetNetConfig.from_dict(config)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source} does not fit this DetNet (not DetNet weights: {exc})") from None


# Architecture a fine-tune takes from its --init weights unless the run overrides it.
INHERITED = ("neck_blocks", "neck_attention", "neck_layers", "block_expand")


def _like_init(config: DetNetConfig, init: DetNetConfig, overrides: dict) -> DetNetConfig:
    """A fine-tune's config: ``config`` with the extended heads of the weights it starts from
    and their neck (:data:`INHERITED`, unless ``overrides`` sets it)."""
    kept = {k: getattr(init, k) for k in INHERITED if k not in overrides}
    return replace(_with_heads(config, init), **kept)


def _module_groups(keys) -> list[str]:
    """Sorted module names (the first two parts of each tensor name) of ``keys``."""
    return sorted({".".join(k.split(".")[:2]) for k in keys})


def _with_heads(config: DetNetConfig, other: DetNetConfig) -> DetNetConfig:
    """``config`` plus the extended heads of ``other`` that it lacks (after its own)."""
    extra = [(h, n) for h, n in other.extended if h not in dict(config.extended)]
    parents = dict(other.extended_parents)
    return replace(
        config,
        extended=config.extended + tuple(extra),
        extended_parents=config.extended_parents
        + tuple((h, parents[h]) for h, _ in extra if h in parents),
    )


def _widened(name: str, own: torch.Tensor, given: torch.Tensor) -> torch.Tensor | None:
    """``given``, a tensor of a residual block with a narrower inner width, embedded in this
    network's wider ``own`` so that the block computes what it did: the first convolution's
    and its batch norm's new channels keep their fresh values, the second convolution reads
    them with zero weights (trainable, so the new channels start to count as training moves
    those weights). None when ``name`` is no such tensor or the shapes do not fit so."""
    grown = [i for i, (a, b) in enumerate(zip(own.shape, given.shape, strict=False)) if a != b]
    if own.dim() != given.dim() or len(grown) != 1 or own.shape[grown[0]] < given.shape[grown[0]]:
        return None
    axis, n = grown[0], given.shape[grown[0]]
    out = own.clone()
    if axis == 0 and (name.endswith(".conv1.0.weight") or ".conv1.1." in name):
        out[:n] = given
    elif name.endswith(".conv2.0.weight") and axis == 1:
        out.zero_()
        out[:, :n] = given
    else:
        return None
    return out


def _load_init(net: DetNet, tensors: dict[str, torch.Tensor], source: str | Path) -> list[str]:
    """Copy the ``tensors`` (read from ``source``) whose names and shapes match, and those of
    residual blocks the network widened (:func:`_widened`); returns the names of the
    parameters left fresh (grouped by module)."""
    own = net.state_dict()
    take = {
        k: v.to(own[k].dtype) for k, v in tensors.items() if k in own and own[k].shape == v.shape
    }
    for k, v in tensors.items():
        if k in own and k not in take:
            w = _widened(k, own[k], v.to(own[k].dtype))
            if w is not None:
                take[k] = w
    if not any(k.startswith("backbone.") for k in take):
        raise ValueError(f"{source} does not fit this DetNet (no backbone tensor matches)")
    net.load_state_dict(take, strict=False)
    if any(k.startswith(REFINER_PREFIXES) for k in tensors):
        log.warning(
            "%s has a keypoint refiner: dropped, it fits those weights only; train one for "
            "this run's weights afterwards with `fullcap train refiner`",
            source,
        )
        tensors = {k: v for k, v in tensors.items() if not k.startswith(REFINER_PREFIXES)}
    unused = _module_groups(k for k in tensors if k not in take)
    if unused:
        log.warning("not used from %s (no such tensor here, or another shape): %s", source,
                    ", ".join(unused))  # fmt: skip
    fresh = [k for k in own if k not in take and not k.endswith("num_batches_tracked")]
    return _module_groups(fresh)


# what each keypoint refiner's input depends on (tensor-name prefixes): a refiner fits only
# the network whose outputs it was trained on
_REFINER_DEPENDS = {
    "body": ("backbone.", "neck.", "basic.", "extended."),
    "hand": ("backbone.", "neck.", "hand_encoder.", "hand_net."),
}


def export(
    checkpoint: str | Path,
    out: str | Path,
    refiners_from: str | Path | None = None,
    raw: bool = False,
) -> Path:
    """Write a checkpoint's DetNet as a float16 weights file with its config and training
    info (``kind`` = ``detnet_<preset>``): its moving average of the weights when the run kept
    one (``ema``), else (or with ``raw``) the trained weights.

    ``refiners_from``: DetNet weights (a file or ``detnet_lite``) whose keypoint refiners are
    copied where they still fit: the body refiner when the checkpoint's body network is the
    one it was trained on (tensor for tensor, at the file's precision), the hand refiner
    likewise for the hand branch (after a fine-tune of the hand branch alone, the body refiner
    is kept and the hand refiner dropped with a warning). None fitting is an error.
    """
    from fullcap.models.weights import read_weights, save_weights

    state = load_checkpoint(Path(checkpoint))
    config = DetNetConfig.from_dict(state["config"])
    model = dict(_checkpoint_model(state, checkpoint, raw))
    info = {"steps": state["step"], "train_config": state["train_config"]}
    if "ema" in state and not raw:
        info["ema"] = {k: state["ema"][k] for k in ("decay", "steps")}
    if refiners_from is not None:
        tensors, meta = read_weights(refiners_from)
        source = DetNetConfig.from_dict(meta["config"])
        kept = []
        for part, name in REFINER_NAMES.items():
            prefix = f"{name}."
            if not any(k.startswith(prefix) for k in tensors):
                continue
            names = [k for k in model if k.startswith(_REFINER_DEPENDS[part])]
            if not all(_same(model[k], tensors.get(k)) for k in names):
                log.warning(
                    "%s's %s refiner not copied: this network's %s part is not the one it was "
                    "trained on (train one: fullcap train refiner --part %s)",
                    refiners_from, part, part, part,
                )  # fmt: skip
                continue
            config = replace(config, **{f: getattr(source, f) for f in refiner_fields(part)})
            model |= {k: v.float() for k, v in tensors.items() if k.startswith(prefix)}
            info[f"{part}_refiner"] = meta.get("info", {}).get(f"{part}_refiner", {})
            kept.append(part)
        if not kept:
            raise ValueError(f"no keypoint refiner of {refiners_from} fits {checkpoint}")
    net = DetNet(config)
    net.load_state_dict(model)
    return save_weights(net, f"detnet_{config.preset}", config.to_dict(), out, info, half=True)


def _same(a: torch.Tensor, b: torch.Tensor | None) -> bool:
    """Whether checkpoint tensor ``a`` is weights-file tensor ``b`` at ``b``'s precision."""
    return b is not None and a.shape == b.shape and torch.equal(a.to(b.dtype), b)
