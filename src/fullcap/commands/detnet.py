"""``fullcap ... detnet``: training data, training, export, evaluation, cross-dataset table."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["cross_dataset", "data", "evaluate", "export", "train", "train_refiner"]

ALL_SOURCES = ("mtc_like", "h36m_like", "humbi_like", "coco_like", "hand_like", "face_like")
LAMBDAS = ("lambda_b", "lambda_h", "lambda_f")
VAL_SEED_OFFSET = 1000  # validation shards use seed + this: disjoint samples


def _print_metrics(report: dict[str, dict[str, float]]) -> None:
    """One row per metric, one column per source."""
    from rich.console import Console
    from rich.table import Table

    rows = list(dict.fromkeys(k for m in report.values() for k in m))
    table = Table(title="DetNet metrics (rows) per held-out source (columns)", title_justify="left")
    table.add_column("metric")
    for src in report:
        table.add_column(src.removesuffix("_like"), justify="right")
    for key in rows:
        cells = []
        for m in report.values():
            v = m.get(key)
            cells.append("-" if v is None or math.isnan(v) else f"{v:.3g}")
        table.add_row(key, *cells)
    Console(highlight=False).print(table)


def data(
    out: str,
    sources: Sequence[str] | None,
    n_train: int,
    n_val: int,
    size: int,
    workers: int,
    seed: int,
    shard_size: int = 256,
) -> int:
    """Render training and validation shards: ``OUT/<source>/train`` and ``OUT/<source>/val``
    (resumable; validation uses another seed)."""
    from fullcap.synth.shards import generate

    for src in sources or ALL_SOURCES:
        for split, n, s in (("train", n_train, seed), ("val", n_val, seed + VAL_SEED_OFFSET)):
            if n <= 0:
                continue
            r = generate(Path(out) / src / split, src, n, s, shard_size, workers, size)
            print(
                f"{src}/{split}: {r['n']} samples, {r['written']} shards written, "
                f"{r['kept']} kept, {r['images_per_s']:.1f} images/s"
            )
    print(f"train with: fullcap train detnet --data {out}/*/train --val {out}/*/val")
    return 0


def train(
    out: str,
    preset: str,
    data: Sequence[str],
    val: Sequence[str],
    steps: int,
    factor: int,
    seed: int,
    workers: int,
    device: Any = "cpu",
    eval_every: int = 250,
    checkpoint_every: int = 100,
    time_limit_s: float | None = None,
    image_size: int = 256,
    eval_samples: int = 128,
    progress: bool = False,
    sigma_3d: float | None = None,
    lr: float | None = None,
    init: str | None = None,
    train_only: Sequence[str] = (),
    hand_w3d: float | None = None,
    counts: Sequence[str] = (),
    lambdas: Sequence[float] | None = None,
    body_size: int | None = None,
    hand_size: int | None = None,
    neck_blocks: int | None = None,
    neck_attention: bool | None = None,
    neck_layers: int | None = None,
    block_expand: int | None = None,
    cut: float | None = None,
    ema: float | None = None,
) -> int:
    """Train (or resume) DetNet in ``out``; when the run finishes, export the weights and
    evaluate them on the validation folders. ``sigma_3d``, ``lr``, ``init``, ``cut``, ``ema``: see
    :func:`fullcap.train.detnet.train`; ``train_only``, ``hand_w3d``: see
    :class:`fullcap.train.detnet.DetNetTrainConfig` (new runs); ``counts``: ``SOURCE=N``
    strings; ``lambdas``: (lambda_b, lambda_h, lambda_f); ``body_size``: the body input side
    of a new run (a multiple of 8; default the preset's); ``hand_size``: its hand crops' side
    (a multiple of 4); ``neck_blocks``, ``neck_attention``,
    ``neck_layers``: the new run's neck (:class:`fullcap.models.backbone.Neck`; default: the
    ``init`` weights', else the preset's); ``block_expand``: its residual blocks' inner width
    (:class:`fullcap.models.detnet.DetNetConfig`; default: as ``init``, else 1)."""
    from fullcap.models.detnet import PRESETS
    from fullcap.train.detnet import DetNetTrainConfig, export
    from fullcap.train.detnet import train as run

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tc = DetNetTrainConfig(
        preset=preset,
        data=tuple(str(d) for d in data),
        val=tuple(str(v) for v in val),
        steps=steps,
        factor=factor,
        seed=seed,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        image_size=image_size,
        train_only=tuple(train_only),
        counts=parse_counts(counts),
        overrides={
            k: v
            for k, v in (
                ("body_size", body_size),
                ("hand_size", hand_size),
                ("neck_blocks", neck_blocks),
                ("neck_attention", neck_attention),
                ("neck_layers", neck_layers),
                ("block_expand", block_expand),
            )
            if v is not None
        },
        **({} if hand_w3d is None else {"hand_w3d": float(hand_w3d)}),
        **({} if lambdas is None else dict(zip(LAMBDAS, lambdas, strict=True))),
    )
    summary = run(
        out,
        tc,
        device,
        workers,
        progress,
        time_limit_s=time_limit_s,
        sigma_3d=sigma_3d,
        lr=lr,
        init=init,
        cut=cut,
        ema=ema,
    )
    print(
        f"step {summary['step']}/{steps}: {summary['steps_per_s']:.2f} steps/s, "
        f"{summary['images_per_s']:.1f} images/s (batch {summary['batch_size']}), "
        f"lr {summary['lr']:.0e}, val loss {summary['val_loss']}"
        + (f" (weight average: {summary['ema_val_loss']})" if summary["ema_val_loss"] else "")
    )
    print(f"checkpoint: {summary['checkpoint']}")
    if not summary["finished"]:
        print(f"stopped early; continue with: fullcap train detnet --out {out} --steps {steps}")
        return 0
    weights = export(summary["checkpoint"], Path(out) / "weights.safetensors")
    print(f"weights:    {weights}")
    return evaluate(str(weights), summary["val"], eval_samples, device=device, as_json=False)


def train_refiner(
    out: str,
    weights: str,
    part: str,
    data: Sequence[str],
    val: Sequence[str],
    inputs: Sequence[str],
    output: str,
    hidden: int,
    blocks: int,
    passes: int,
    epochs: int,
    seed: int,
    device: Any = "cpu",
    progress: bool = False,
    mirror: bool = False,
    peaks: int = 1,
    cut: float = 0.0,
) -> int:
    """Train (or resume) the body or hand (``part``) keypoint refiner of DetNet ``weights`` in
    ``out`` (:mod:`fullcap.train.refiner`); writes ``OUT/detnet_refined.safetensors``."""
    from fullcap.train.refiner import RefinerTrainConfig
    from fullcap.train.refiner import train_refiner as run

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tc = RefinerTrainConfig(
        weights=str(weights),
        part=part,
        data=tuple(str(d) for d in data),
        val=tuple(str(v) for v in val),
        inputs=tuple(inputs),
        output=output,
        hidden=hidden,
        blocks=blocks,
        passes=passes,
        epochs=epochs,
        seed=seed,
        mirror=mirror,
        peaks=peaks,
        cut=cut,
    )
    run(out, tc, device, progress)
    return 0


def parse_counts(items: Sequence[str]) -> dict[str, int]:
    """``["hand_like=8", "mtc_like=4"]`` -> ``{"hand_like": 8, "mtc_like": 4}``."""
    counts: dict[str, int] = {}
    for item in items:
        name, sep, n = item.partition("=")
        if not sep or not name or not n.strip().isdigit():
            raise ValueError(f"--counts takes SOURCE=N (N >= 0), got {item!r}")
        counts[name] = int(n)
    return counts


def export(checkpoint: str, out: str, refiners_from: str | None = None, raw: bool = False) -> int:
    """Write a checkpoint's DetNet as a float16 safetensors weights file (``refiners_from``:
    copy the keypoint refiners of those weights where they fit; ``raw``: the trained weights,
    not the run's moving average of them)."""
    from fullcap.train.detnet import export as run

    print(f"weights: {run(checkpoint, out, refiners_from, raw)}")
    return 0


def evaluate(
    weights: str,
    data: Sequence[str],
    samples: int,
    device: Any = "cpu",
    as_json: bool = False,
    draw: str | None = None,
    image_size: int = 256,
    flip_test: bool = False,
    cut: bool = False,
) -> int:
    """Metrics of a DetNet weights file on held-out shard folders; ``draw``: also write a
    PNG of predictions on a few items per source; ``flip_test``: body maps averaged with those
    of the mirrored crops; ``cut``: every body shot cut below the chest (see
    :func:`fullcap.eval.detnet.evaluate`)."""
    from fullcap.eval.detnet import draw_predictions
    from fullcap.eval.detnet import evaluate as run
    from fullcap.models.weights import load_detnet

    if not data:
        raise ValueError("give held-out shard folders (e.g. runs/detnet_data/*/val)")
    net = load_detnet(weights, device)
    report = run(net, data, samples, image_size=image_size, flip_test=flip_test, cut=cut)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_metrics(report)
    if draw:
        from fullcap.io import save_png

        print(f"drawing: {save_png(draw, draw_predictions(net, data, image_size=image_size))}")
    return 0


def cross_dataset(
    models: Sequence[str],
    data: Sequence[str],
    samples: int,
    device: Any = "cpu",
    as_json: bool = False,
    image_size: int = 256,
) -> int:
    """Supplementary Table 1: ``models`` as ``NAME=WEIGHTS`` (one per training set and a
    combined one), each evaluated on every held-out folder; PCK@150mm after Procrustes on
    the basic keypoints."""
    from fullcap.eval.detnet import cross_dataset as run
    from fullcap.eval.detnet import format_table
    from fullcap.models.weights import load_detnet

    nets = {}
    for spec in models:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"models are NAME=WEIGHTS, got {spec!r}")
        nets[name] = load_detnet(path, device)
    table = run(nets, data, samples, image_size=image_size)
    if as_json:
        print(json.dumps(table, indent=2))
    else:
        print(format_table(table, "PCK@150mm after Procrustes, basic keypoints"))
    return 0
