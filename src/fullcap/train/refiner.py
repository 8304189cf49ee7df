"""Training the keypoint refiner (:mod:`fullcap.models.refiner`) of a trained DetNet.

DetNet stays frozen. Two stages, both resumable in the run folder:

1. Features: DetNet runs over the training shards (``passes`` times, each pass with fresh
   training augmentation) and over the first ``val_samples`` validation images of each source
   (the images and crops of ``fullcap eval detnet``); per image it keeps the refiner's input,
   the output head's 3D keypoints and their truth. Written per source and pass to
   ``OUT/features/`` (safetensors), so a killed run loses at most one file's work.
2. Fit: the refiner on those features, ``epochs`` passes in a one-cycle schedule, the loss
   the mean 3D distance over keypoints with known 3D. A checkpoint after every epoch (with
   the shuffling seeded by the epoch, a resumed run does what an unbroken one does), a ledger
   row with the validation PCK@150mm-PA of the basic keypoints per source (refined, and the
   output head and the basic head unrefined for comparison), then ``OUT/detnet_refined.
   safetensors``: the DetNet with its refiner (float16, like ``fullcap train detnet-export``).

Truth: the output head's keypoints take their 3D from every head's targets that name them
(the basic head's for sources that label only those), so every source with 3D trains it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from fullcap.data.detnet_batches import build_sample, collate
from fullcap.data.mixer import EVAL_AUGMENT, open_sources
from fullcap.eval.metrics import pa_errors, pck
from fullcap.io import atomic_path
from fullcap.models.detnet import DetNet, DetNetConfig
from fullcap.models.posenet import PoseTargets
from fullcap.synth.shards import Augment
from fullcap.train.checkpoint import Ledger, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

__all__ = ["RefinerTrainConfig", "collect", "train_refiner"]

MIN_POINTS = 5  # as fullcap eval detnet: a sample counts with at least 5 keypoints in view


@dataclass(frozen=True)
class RefinerTrainConfig:
    weights: str = "detnet_lite"
    data: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ("basic", "humbi", "h36m")
    output: str = "humbi"
    hidden: int = 512
    blocks: int = 2
    passes: int = 2
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_samples: int = 200
    image_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("passes", "epochs", "batch_size", "val_samples", "hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"refiner {name} must be a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"refiner lr must be > 0, got {self.lr!r}")


def _fill(
    target: torch.Tensor,
    known: torch.Tensor,
    valid: torch.Tensor,
    out_names: tuple[str, ...],
    names: tuple[str, ...],
    t: PoseTargets,
    rows: torch.Tensor,
) -> None:
    """Copy the 3D truth of a head (``names``, targets ``t`` of batch ``rows``) into the
    output head's arrays where its keypoints are named there and not yet known."""
    pairs = [(out_names.index(n), j) for j, n in enumerate(names) if n in out_names]
    if not pairs:
        return
    oi, hi = (torch.tensor(x) for x in zip(*pairs, strict=True))
    r = rows[t.has3d]
    new = ~known[r][:, oi]
    tgt = target[r][:, oi]
    tgt[new] = t.xyz[t.has3d][:, hi][new]
    target[r[:, None], oi] = tgt
    vis = valid[r][:, oi]
    vis[new] = t.valid2d[t.has3d][:, hi][new]
    valid[r[:, None], oi] = vis
    known[r[:, None], oi] = known[r][:, oi] | new


@torch.no_grad()
def collect(
    net: DetNet,
    roots: list[str],
    augment: Augment,
    epoch: int,
    samples: int | None = None,
    batch_size: int = 32,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per source: the refiner's input ``features`` (N, F), the output head's ``base`` 3D
    (N, P, 3), the ``target`` 3D and where it is ``known`` (N, P), the keypoints ``valid``
    for evaluation (in the image, with 3D), and the ``basic`` head's 3D (N, 9, 3), for the
    images with 3D labels among the first ``samples`` (all by default) of each source,
    augmented as ``augment`` does in ``epoch``."""
    cfg = net.config
    out_names = dict(cfg.extended)[cfg.refiner_output]
    heads = net.heads_for(cfg.refiner_output)
    dev = next(net.parameters()).device
    result = {}
    for reader in open_sources(roots, augment=augment):
        reader.set_epoch(epoch)
        n = len(reader) if samples is None else min(samples, len(reader))
        parts: dict[str, list[torch.Tensor]] = {}
        for s in range(0, n, batch_size):
            items = [reader[i] for i in range(s, min(n, s + batch_size))]
            batch = collate([build_sample(it, reader.spec, reader.sets, cfg) for it in items])
            if not batch.basic.has3d.any():
                continue
            b, p = len(batch), len(out_names)
            target = torch.zeros(b, p, 3)
            known = torch.zeros(b, p, dtype=torch.bool)
            valid = torch.zeros(b, p, dtype=torch.bool)
            every = torch.arange(b)
            for head, ht in batch.extended.items():
                names = dict(cfg.extended).get(head)
                if names is not None:
                    _fill(target, known, valid, out_names, names, ht.targets, ht.rows)
            _fill(target, known, valid, out_names, cfg.basic, batch.basic, every)
            out = net(batch.body.to(dev), heads=heads)
            keep = batch.basic.has3d
            rows = {
                "features": net.refiner_features(out).cpu(),
                "base": net.body_keypoints(out, cfg.refiner_output)[2].cpu(),
                "basic": net.body_keypoints(out, "basic")[2].cpu(),
                "target": target,
                "known": known,
                "valid": valid,
            }
            for k, v in rows.items():
                parts.setdefault(k, []).append(v[keep])
        if parts:
            result[reader.spec.name] = {k: torch.cat(v) for k, v in parts.items()}
    return result


Features = dict[str, torch.Tensor]


def _save_features(path: Path, tensors: Features, meta: dict, source: str) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    data = {k: v.contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), {"meta": json.dumps(meta), "source": source})


def _load_features(path: Path, meta: dict) -> tuple[Features, str] | None:
    """The tensors and source name of a features file written for the same ``meta``, else
    None (missing, unreadable, or made with other settings: made again)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            stored = f.metadata() or {}
            if json.loads(stored.get("meta", "null")) != meta:
                log.info("%s was made with other settings: making it again", path)
                return None
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            return tensors, stored.get("source", path.stem)
    except (SafetensorError, OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s): making it again", path, exc)
        return None


def _features_of(
    net: DetNet,
    root: str,
    augment: Augment,
    epoch: int,
    samples: int | None,
    path: Path,
    meta: dict,
) -> tuple[Features, str] | None:
    """:func:`collect` of one shard folder, read from ``path`` or made and written there."""
    got = _load_features(path, meta)
    if got is None:
        t0 = time.time()
        found = collect(net, [root], augment, epoch, samples)
        if not found:
            log.warning("%s has no images with 3D labels: skipped", root)
            return None
        name, tensors = next(iter(found.items()))
        _save_features(path, tensors, meta, name)
        log.info("%s: %d images in %.0f s", path.name, len(tensors["base"]), time.time() - t0)
        got = tensors, name
    return got


def _features(
    net: DetNet, tc: RefinerTrainConfig, folder: Path, weights_id: str
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Training features (all sources and passes concatenated) and validation features per
    source, read from ``folder`` or made there."""
    base_meta = {"weights": weights_id, "inputs": list(tc.inputs), "output": tc.output}
    train_parts: list[Features] = []
    augment = Augment(out_size=tc.image_size)
    for root in tc.data:
        for k in range(tc.passes):
            meta = base_meta | {"root": str(root), "pass": k, "image_size": tc.image_size}
            path = folder / f"train-{_slug(root)}-pass{k}.safetensors"
            got = _features_of(net, root, augment, k, None, path, meta)
            if got is not None:
                train_parts.append(got[0])
    if not train_parts:
        raise ValueError("no training images with 3D labels in the --data folders")
    train = {k: torch.cat([p[k] for p in train_parts]) for k in train_parts[0]}
    val: dict[str, Features] = {}
    eval_augment = replace(EVAL_AUGMENT, out_size=tc.image_size)
    for root in tc.val:
        meta = base_meta | {"root": str(root), "samples": tc.val_samples}
        path = folder / f"val-{_slug(root)}.safetensors"
        got = _features_of(net, root, eval_augment, 0, tc.val_samples, path, meta)
        if got is not None:
            val[got[1]] = got[0]
    if not val:
        raise ValueError("no validation images with 3D labels in the --val folders")
    return train, val


def _slug(root: str | Path) -> str:
    return "_".join(Path(root).parts[-3:]).replace(".", "_")


def basic_pck(xyz: torch.Tensor, d: dict[str, torch.Tensor], index: torch.Tensor) -> float:
    """PCK@150mm-PA of the basic keypoints (``index``: their rows in ``xyz``) as
    ``fullcap eval detnet`` computes it."""
    err, mask = pa_errors(xyz[:, index], d["target"][:, index], d["valid"][:, index], MIN_POINTS)
    return pck(err, 0.150, mask)


def train_refiner(
    out_dir: str | Path,
    tc: RefinerTrainConfig | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    run_epochs: int | None = None,
) -> Path | None:
    """Train (or resume) a refiner run in ``out_dir``; returns the refined weights file, or
    None when it stopped (resumably) after ``run_epochs`` epochs before the last."""
    from fullcap.models.weights import read_weights, save_weights

    out_dir = Path(out_dir)
    ckpt_path = out_dir / "last.pt"
    state = load_checkpoint(ckpt_path) if ckpt_path.is_file() else None
    if state is not None:  # the run's own settings (the schedule depends on them)
        saved = state["train_config"]
        tc = RefinerTrainConfig(**saved | {k: tuple(saved[k]) for k in ("data", "val", "inputs")})
        log.info("resuming %s at epoch %d of %d", ckpt_path, state["epoch"], tc.epochs)
    elif tc is None or not tc.data or not tc.val:
        raise ValueError("a new refiner run needs training (--data) and validation (--val) folders")
    tensors, meta = read_weights(tc.weights)
    config = DetNetConfig.from_dict(meta["config"])
    config = replace(
        config,
        refiner_inputs=tuple(tc.inputs),
        refiner_output=tc.output,
        refiner_hidden=tc.hidden,
        refiner_blocks=tc.blocks,
    )
    with torch.random.fork_rng(devices=[]):  # the refiner's initial weights: seeded
        torch.manual_seed(tc.seed)
        net = DetNet(config)
    own = {k for k in net.state_dict() if not k.startswith("refiner.")}
    net.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in tensors.items() if k in own},
        strict=False,
    )
    missing = own - set(tensors)
    if missing:
        raise ValueError(f"{tc.weights} lacks DetNet tensors {sorted(missing)[:3]}...")
    net = net.to(device).eval()
    weights_id = hashlib.sha256(Path(meta["path"]).read_bytes()).hexdigest()
    train, val = _features(net, tc, out_dir / "features", weights_id)
    out_names = dict(config.extended)[config.refiner_output]
    basic_index = torch.tensor([out_names.index(n) for n in config.basic])
    refiner = net.refiner
    assert refiner is not None
    dev = torch.device(device)
    x_all, base_all = train["features"].to(dev), train["base"].to(dev)
    y_all, known_all = train["target"].to(dev), train["known"].to(dev)
    steps_per_epoch = math.ceil(len(x_all) / tc.batch_size)
    opt = torch.optim.AdamW(refiner.parameters(), tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, tc.lr, total_steps=tc.epochs * steps_per_epoch)
    epoch = 0
    if state is not None:
        refiner.load_state_dict(state["refiner"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        epoch = state["epoch"]
    else:
        refiner.set_normalisation(train["features"])
    ledger = Ledger(out_dir / "metrics.jsonl")

    def validate() -> dict[str, float]:
        refiner.eval()
        row = {}
        with torch.no_grad():
            for name, d in val.items():
                refined = refiner(d["features"].to(dev), d["base"].to(dev)).cpu()
                short = name.removesuffix("_like")
                row[f"{short}_refined"] = basic_pck(refined, d, basic_index)
                row[f"{short}_{tc.output}"] = basic_pck(d["base"], d, basic_index)
                err, mask = pa_errors(
                    d["basic"], d["target"][:, basic_index], d["valid"][:, basic_index], MIN_POINTS
                )
                row[f"{short}_basic"] = pck(err, 0.150, mask)
        return row

    bar = None
    if progress:
        from fullcap.train.checkpoint import ProgressBar

        bar = ProgressBar(tc.epochs, epoch, "train refiner")
    t0 = time.time()
    try:
        stop = tc.epochs if run_epochs is None else min(tc.epochs, epoch + run_epochs)
        while epoch < stop:
            refiner.train()
            # order and dropout seeded by the epoch: a resumed run repeats an unbroken one
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                torch.manual_seed(tc.seed * 100003 + epoch)
                order = torch.randperm(len(x_all)).to(dev)
                total = 0.0
                for s in range(0, len(order), tc.batch_size):
                    j = order[s : s + tc.batch_size]
                    err = (refiner(x_all[j], base_all[j]) - y_all[j]).norm(dim=-1)
                    m = known_all[j].to(err.dtype)
                    loss = (err * m).sum() / m.sum().clamp(min=1)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += loss.item() * len(j)
            epoch += 1
            row = validate()
            ledger.write(epoch=epoch, train_loss_m=total / len(order), **row)
            save_checkpoint(
                ckpt_path,
                {
                    "train_config": asdict(tc),
                    "refiner": refiner.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "epoch": epoch,
                },
            )
            refined = {k: v for k, v in row.items() if k.endswith("_refined")}
            if bar is not None:
                bar.update(epoch, loss=total / len(order), **refined)
            else:
                scores = ", ".join(f"{k} {v:.3f}" for k, v in refined.items())
                log.info("epoch %d: loss %.4f m, %s (%.0f s)", epoch, total / len(order), scores,
                         time.time() - t0)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    if epoch < tc.epochs:
        return None
    row = validate()
    info = {
        "detnet": meta["info"],
        "refiner": {"train_config": asdict(tc), "epochs": epoch, "images": len(x_all), "val": row},
    }
    path = save_weights(
        net.cpu(), meta["kind"], config.to_dict(), out_dir / "detnet_refined.safetensors", info,
        half=True,
    )  # fmt: skip
    for name in val:
        short = name.removesuffix("_like")
        print(
            f"{short}: PCK@150mm-PA of the basic keypoints {row[f'{short}_basic']:.3f} (basic "
            f"head), {row[f'{short}_{tc.output}']:.3f} ({tc.output} head), "
            f"{row[f'{short}_refined']:.3f} (refined)"
        )
    print(f"wrote {path}")
    return path
