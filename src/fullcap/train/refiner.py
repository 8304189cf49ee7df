"""Training the keypoint refiners (:mod:`fullcap.models.refiner`) of a trained DetNet.

DetNet stays frozen (and a refiner of the other part, if its weights have one, is kept).
Two stages, both resumable in the run folder:

1. Features: DetNet runs over the training shards (``passes`` times, each pass with fresh
   training augmentation and, for hands, freshly jittered hand boxes) and over the first
   ``val_samples`` validation images of each source (the images and crops of ``fullcap eval
   detnet``); per image (``part="body"``) or hand crop (``"hand"``) it keeps the refiner's
   input, the unrefined 3D keypoints and their truth. Written per source and pass to
   ``OUT/features/`` (safetensors), so a killed run loses at most one file's work.
2. Fit: the refiner on those features, ``epochs`` passes in a one-cycle schedule, the loss
   the mean 3D distance over keypoints with known 3D (hands: middle1 roots aligned). A
   checkpoint after every epoch (shuffling and dropout seeded by the epoch, so a resumed run
   does what an unbroken one does), a ledger row with the validation score per source
   (body: PCK@150mm-PA of the basic keypoints, refined, and the output head and the basic
   head unrefined; hands: AUC 20-50 mm refined and unrefined), then ``OUT/detnet_refined.
   safetensors``: the DetNet with its refiner (float16, like ``fullcap train detnet-export``).

Body truth: the output head's keypoints take their 3D from every head's targets that name
them (the basic head's for sources that label only those), so every source with 3D trains it.
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

from fullcap.data.detnet_batches import DetNetBatch, build_sample, collate
from fullcap.data.mixer import EVAL_AUGMENT, open_sources
from fullcap.eval.metrics import auc_pck, pa_errors, pck, root_aligned_errors
from fullcap.io import atomic_path
from fullcap.models.detnet import (
    REFINER_NAMES,
    REFINER_PREFIXES,
    DetNet,
    DetNetConfig,
    refiner_fields,
    refiner_mirror,
)
from fullcap.models.posenet import PoseTargets, decode
from fullcap.models.refiner import keypoint_features
from fullcap.skeletons import HAND21
from fullcap.synth.shards import Augment
from fullcap.train.checkpoint import Ledger, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

__all__ = ["RefinerTrainConfig", "collect", "train_refiner"]

MIN_POINTS = 5  # as fullcap eval detnet: a sample counts with at least 5 keypoints in view
_MIDDLE1 = HAND21.index("middle1")


@dataclass(frozen=True)
class RefinerTrainConfig:
    weights: str = "detnet_lite"
    part: str = "body"  # "body": the body refiner; "hand": the hand refiner
    data: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ("basic", "humbi")
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
    # body: train on half of each batch mirrored left/right, and average the refiner with its
    # mirror image in the weights (DetNetConfig.refiner_mirror)
    mirror: bool = False
    peaks: int = 1  # body: keypoint map peaks read per keypoint (DetNetConfig.refiner_peaks)
    cut: float = 0.0  # share of training body shots cut below the chest (Augment.p_cut)

    def __post_init__(self) -> None:
        for name in ("passes", "epochs", "batch_size", "val_samples", "hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"refiner {name} must be a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"refiner lr must be > 0, got {self.lr!r}")
        if self.part not in ("body", "hand"):
            raise ValueError(f"refiner part must be 'body' or 'hand', got {self.part!r}")
        if not 0.0 <= self.cut <= 1.0:
            raise ValueError(f"refiner cut is a share of the body shots, 0 to 1, got {self.cut!r}")
        if self.peaks not in (1, 2) or isinstance(self.peaks, bool):
            raise ValueError(f"refiner peaks must be 1 or 2, got {self.peaks!r}")
        if self.peaks != 1 and self.part != "body":
            raise ValueError("refiner peaks other than 1 are for the body refiner")
        if self.mirror and self.part != "body":
            raise ValueError("refiner mirroring is for the body refiner (hand crops are all "
                             "right hands already)")  # fmt: skip


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


def _body_rows(net: DetNet, batch: DetNetBatch, dev: torch.device) -> dict | None:
    """The body refiner's rows of a batch (its images with 3D labels)."""
    cfg = net.config
    out_names = dict(cfg.extended)[cfg.refiner_output]
    keep = batch.basic.has3d
    if not keep.any():
        return None
    b, p = len(batch), len(out_names)
    target = torch.zeros(b, p, 3)
    known = torch.zeros(b, p, dtype=torch.bool)
    valid = torch.zeros(b, p, dtype=torch.bool)
    for head, ht in batch.extended.items():
        names = dict(cfg.extended).get(head)
        if names is not None:
            _fill(target, known, valid, out_names, names, ht.targets, ht.rows)
    _fill(target, known, valid, out_names, cfg.basic, batch.basic, torch.arange(b))
    out = net(batch.body.to(dev), heads=net.heads_for(cfg.refiner_output))
    rows = {
        "features": net.refiner_features(out),
        "base": decode(out.extended[cfg.refiner_output])[2],  # unrefined
        "basic": decode(out.basic)[2],
        "target": target,
        "known": known,
        "valid": valid,
    }
    return {k: v.cpu()[keep] for k, v in rows.items()}


def _hand_rows(net: DetNet, batch: DetNetBatch, dev: torch.device) -> dict | None:
    """The hand refiner's rows of a batch (its hand crops with 3D labels)."""
    h = batch.hands
    if h is None or not h.targets.has3d.any():
        return None
    batch = batch.to(dev)
    h = batch.hands
    out = net(batch.body, h.crops, h.boxes, h.is_left, heads=())
    features, (_, _, xyz) = keypoint_features(out.hands)
    t = h.targets
    rows = {
        "features": features,
        "base": xyz,
        "target": t.xyz,
        "known": t.labelled & t.has3d[:, None],
        "scale": h.scale,
    }
    return {k: v.cpu()[t.has3d.cpu()] for k, v in rows.items()}


@torch.no_grad()
def collect(
    net: DetNet,
    roots: list[str],
    augment: Augment,
    epoch: int,
    samples: int | None = None,
    part: str = "body",
    batch_size: int = 32,
) -> dict[str, dict[str, torch.Tensor]]:
    """Per source, for the images (``part="body"``) or hand crops (``"hand"``) with 3D labels
    among the first ``samples`` (all by default) of each source, augmented as ``augment``
    does in ``epoch`` (hand boxes jittered too, unless ``samples`` is given: evaluation): the
    refiner's input ``features`` (N, F), the unrefined 3D ``base`` (N, P, 3), the ``target``
    3D and where it is ``known`` (N, P); body: also the keypoints ``valid`` for evaluation
    (in the image, with 3D) and the ``basic`` head's 3D (N, 9, 3); hands: ``scale`` (N,),
    |wrist - middle1| in metres."""
    rows_of = {"body": _body_rows, "hand": _hand_rows}[part]
    dev = next(net.parameters()).device
    result = {}
    for reader in open_sources(roots, augment=augment):
        reader.set_epoch(epoch)
        n = len(reader) if samples is None else min(samples, len(reader))
        parts: dict[str, list[torch.Tensor]] = {}
        for s in range(0, n, batch_size):
            g = None if samples is not None else torch.Generator().manual_seed(epoch * 7919 + s)
            items = [reader[i] for i in range(s, min(n, s + batch_size))]
            built = [build_sample(it, reader.spec, reader.sets, net.config, g) for it in items]
            rows = rows_of(net, collate(built), dev)
            for k, v in (rows or {}).items():
                parts.setdefault(k, []).append(v)
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
    part: str,
    path: Path,
    meta: dict,
) -> tuple[Features, str] | None:
    """:func:`collect` of one shard folder, read from ``path`` or made and written there."""
    got = _load_features(path, meta)
    if got is None:
        t0 = time.time()
        found = collect(net, [root], augment, epoch, samples, part)
        if not found:
            log.warning("%s has no %s with 3D labels: skipped", root, _WHAT[part])
            return None
        name, tensors = next(iter(found.items()))
        _save_features(path, tensors, meta, name)
        log.info("%s: %d %s in %.0f s", path.name, len(tensors["base"]), _WHAT[part],
                 time.time() - t0)  # fmt: skip
        got = tensors, name
    return got


_WHAT = {"body": "images", "hand": "hands"}


def _features(
    net: DetNet, tc: RefinerTrainConfig, folder: Path, weights_id: str
) -> tuple[Features, dict[str, Features]]:
    """Training features (all sources and passes concatenated) and validation features per
    source, read from ``folder`` or made there."""
    if tc.part == "body":
        base_meta, prefix = (
            {"weights": weights_id, "inputs": list(tc.inputs), "output": tc.output}
            | ({"peaks": tc.peaks} if tc.peaks != 1 else {})  # as before peaks existed
            | ({"cut": tc.cut} if tc.cut else {}),  # and before cuts
            "",
        )
    else:
        base_meta = {"weights": weights_id, "part": "hand"} | ({"cut": tc.cut} if tc.cut else {})
        prefix = "hand-"
    train_parts: list[Features] = []
    augment = Augment(out_size=tc.image_size, p_cut=tc.cut)
    for root in tc.data:
        for k in range(tc.passes):
            meta = base_meta | {"root": str(root), "pass": k, "image_size": tc.image_size}
            path = folder / f"{prefix}train-{_slug(root)}-pass{k}.safetensors"
            got = _features_of(net, root, augment, k, None, tc.part, path, meta)
            if got is not None:
                train_parts.append(got[0])
    if not train_parts:
        raise ValueError(f"no training {_WHAT[tc.part]} with 3D labels in the --data folders")
    train = {k: torch.cat([p[k] for p in train_parts]) for k in train_parts[0]}
    val: dict[str, Features] = {}
    eval_augment = replace(EVAL_AUGMENT, out_size=tc.image_size)
    for root in tc.val:
        meta = base_meta | {"root": str(root), "samples": tc.val_samples}
        path = folder / f"{prefix}val-{_slug(root)}.safetensors"
        got = _features_of(net, root, eval_augment, 0, tc.val_samples, tc.part, path, meta)
        if got is not None:
            val[got[1]] = got[0]
    if not val:
        raise ValueError(f"no validation {_WHAT[tc.part]} with 3D labels in the --val folders")
    return train, val


def _slug(root: str | Path) -> str:
    return "_".join(Path(root).parts[-3:]).replace(".", "_")


def basic_pck(xyz: torch.Tensor, d: Features, index: torch.Tensor) -> float:
    """PCK@150mm-PA of the basic keypoints (``index``: their rows in ``xyz``) as
    ``fullcap eval detnet`` computes it."""
    err, mask = pa_errors(xyz[:, index], d["target"][:, index], d["valid"][:, index], MIN_POINTS)
    return pck(err, 0.150, mask)


def hand_auc(xyz: torch.Tensor, d: Features) -> float:
    """Hand 3D PCK AUC over 20-50 mm, root middle1, as ``fullcap eval detnet`` computes it."""
    err = root_aligned_errors(xyz, d["target"], _MIDDLE1, d["scale"]) * 1000.0
    return auc_pck(err, d["known"], 20.0, 50.0)


def _scores(part: str, refined: torch.Tensor, d: Features, basic_index: torch.Tensor, output: str):
    """Validation row of one source: the refined score and the unrefined ones beside it."""
    if part == "hand":
        return {"refined": hand_auc(refined, d), "hand": hand_auc(d["base"], d)}
    err, mask = pa_errors(
        d["basic"], d["target"][:, basic_index], d["valid"][:, basic_index], MIN_POINTS
    )
    return {
        "refined": basic_pck(refined, d, basic_index),
        output: basic_pck(d["base"], d, basic_index),
        "basic": pck(err, 0.150, mask),
    }


def _detnet_id(tensors: dict[str, torch.Tensor], config: DetNetConfig) -> str:
    """A hash of what the features depend on: the DetNet's tensors and config without any
    refiner (so stored features stay valid when the other part's refiner is added)."""
    h = hashlib.sha256()
    defaults = DetNetConfig()
    bare = replace(
        config,
        **{f: getattr(defaults, f) for part in REFINER_NAMES for f in refiner_fields(part)},
    )
    h.update(json.dumps(bare.to_dict(), sort_keys=True).encode())
    for k in sorted(tensors):
        if not k.startswith(REFINER_PREFIXES):
            h.update(k.encode())
            h.update(tensors[k].reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _refined_config(config: DetNetConfig, tc: RefinerTrainConfig) -> DetNetConfig:
    if tc.part == "hand":
        return replace(config, hand_refiner_hidden=tc.hidden, hand_refiner_blocks=tc.blocks)
    return replace(
        config,
        refiner_inputs=tuple(tc.inputs),
        refiner_output=tc.output,
        refiner_hidden=tc.hidden,
        refiner_blocks=tc.blocks,
        refiner_mirror=tc.mirror,
        refiner_peaks=tc.peaks,
    )


def train_refiner(
    out_dir: str | Path,
    tc: RefinerTrainConfig | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    run_epochs: int | None = None,
) -> Path | None:
    """Train (or resume) a refiner run in ``out_dir``; returns the refined weights file, or
    None when it stopped (resumably) after ``run_epochs`` epochs before the last. The other
    part's refiner, if the weights have one, is kept."""
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
    config = _refined_config(DetNetConfig.from_dict(meta["config"]), tc)
    with torch.random.fork_rng(devices=[]):  # the refiner's initial weights: seeded
        torch.manual_seed(tc.seed)
        net = DetNet(config)
    prefix = f"{REFINER_NAMES[tc.part]}."
    if any(k.startswith(prefix) for k in tensors):
        log.warning("%s already has a %s refiner: training a new one", tc.weights, tc.part)
    own = {k for k in net.state_dict() if not k.startswith(prefix)}
    missing = own - set(tensors)
    if missing:
        raise ValueError(f"{tc.weights} does not fit its own config: lacks {sorted(missing)[:3]}")
    net.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in tensors.items() if k in own},
        strict=False,
    )
    net = net.to(device).eval()
    weights_id = _detnet_id(tensors, config)
    train, val = _features(net, tc, out_dir / "features", weights_id)
    basic_index = torch.zeros(0, dtype=torch.long)
    if tc.part == "body":
        out_names = dict(config.extended)[config.refiner_output]
        basic_index = torch.tensor([out_names.index(n) for n in config.basic])
    refiner = net.refiner if tc.part == "body" else net.hand_refiner
    assert refiner is not None
    dev = torch.device(device)
    mirror = refiner_mirror(config).to(dev) if tc.mirror else None
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
        f = train["features"]
        refiner.set_normalisation(f if mirror is None else torch.cat([f, mirror.features(f)]))
    ledger = Ledger(out_dir / "metrics.jsonl")

    def validate() -> dict[str, float]:
        refiner.eval()
        row = {}
        with torch.no_grad():
            for name, d in val.items():
                x, base = d["features"].to(dev), d["base"].to(dev)
                alone = refiner(x, base).cpu()
                # as the weights will compute it: with --mirror, averaged with the mirror images
                refined = alone if mirror is None else mirror.symmetric(refiner, x, base).cpu()
                scores = _scores(tc.part, refined, d, basic_index, tc.output)
                if mirror is not None:  # what the refiner alone gives, for comparison
                    scores["refined_unmirrored"] = basic_pck(alone, d, basic_index)
                short = name.removesuffix("_like")
                row |= {f"{short}_{k}": v for k, v in scores.items()}
        return row

    def loss_of(j: torch.Tensor) -> torch.Tensor:
        x, base, y, known = x_all[j], base_all[j], y_all[j], known_all[j]
        if mirror is not None:  # half the rows as their mirror images
            flip = torch.rand(len(j), device=dev) < 0.5
            x = torch.where(flip[:, None], mirror.features(x), x)
            base = torch.where(flip[:, None, None], mirror.xyz(base), base)
            y = torch.where(flip[:, None, None], mirror.xyz(y), y)
            known = torch.where(flip[:, None], mirror.mask(known), known)
        pred = refiner(x, base)
        if tc.part == "hand":  # hands are compared with their middle1 roots aligned
            pred = pred - pred[:, _MIDDLE1 : _MIDDLE1 + 1]
        err = (pred - y).norm(dim=-1)
        m = known.to(err.dtype)
        return (err * m).sum() / m.sum().clamp(min=1)

    bar = None
    if progress:
        from fullcap.train.checkpoint import ProgressBar

        bar = ProgressBar(tc.epochs, epoch, f"train {tc.part} refiner")
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
                    loss = loss_of(j)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    total += loss.item() * len(j)
            epoch += 1
            row = validate()
            ledger.write(epoch=epoch, train_loss=total / len(order), **row)
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
                log.info("epoch %d: loss %.4f, %s (%.0f s)", epoch, total / len(order), scores,
                         time.time() - t0)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    if epoch < tc.epochs:
        return None
    row = validate()
    info = dict(meta["info"])
    info[f"{tc.part}_refiner"] = {
        "train_config": asdict(tc),
        "epochs": epoch,
        "samples": len(x_all),
        "val": row,
    }
    path = save_weights(
        net.cpu(), meta["kind"], config.to_dict(), out_dir / "detnet_refined.safetensors", info,
        half=True,
    )  # fmt: skip
    metric = "PCK@150mm-PA of the basic keypoints" if tc.part == "body" else "hand AUC 20-50 mm"
    for name in val:
        short = name.removesuffix("_like")
        parts = [f"{v:.3f} ({k})" for k, v in row.items() if k.startswith(f"{short}_")]
        print(f"{short}: {metric} " + ", ".join(p.replace(f"({short}_", "(") for p in parts))
    print(f"wrote {path}")
    return path
