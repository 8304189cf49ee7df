"""``fullcap train facenet`` / ``fullcap eval facenet`` / ``fullcap bench facenet``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def train(
    data: Sequence[str],
    out: str | None = None,
    steps: int = 3000,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    size: int = 64,
    workers: int = 1,
    val: Sequence[str] = (),
    self_supervised: bool = False,
    init: str | None = None,
    w_expression: float | None = None,
) -> int:
    """Train (or resume) FaceNet on the face crops of ``data``: synthetic shard directories
    and/or folders of crops (:class:`fullcap.train.face_data.FaceData`). ``init``: start a
    new run from these FaceNet weights (fine-tuning; "facenet" = the packaged ones);
    ``w_expression``: weight of the supervised expression term (new runs)."""
    from fullcap.train.facenet import FaceTrainConfig
    from fullcap.train.facenet import train as run

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for d in [*data, *val]:
        if not Path(d).is_dir():
            print(
                f"error: {d} is not a directory: give synthetic shard directories (make one "
                f"with `fullcap synth generate --source face_like --out {d} ...`) or folders "
                "of face crops",
                file=sys.stderr,
            )
            return 2
    out_dir = Path(out or "runs/facenet")
    tc = FaceTrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        size=size,
        self_supervised=self_supervised,
        **({} if w_expression is None else {"w_expression": float(w_expression)}),
    )
    net = None
    if init is not None and not (out_dir / "last.pt").exists():
        from fullcap.models.weights import load_facenet

        net = load_facenet(init).train()
        if net.config.input_size != size:
            print(
                f"error: {init} takes {net.config.input_size}-px crops, not {size}", file=sys.stderr
            )
            return 2
    ckpt = run(out_dir, data, tc, val=val, progress=sys.stderr.isatty(), workers=workers, net=net)
    print(f"checkpoint: {ckpt}")
    print(f"weights:    {out_dir / 'weights.safetensors'}")
    print(f"metrics:    {out_dir / 'metrics.jsonl'}")
    return 0


def evaluate(
    data: Sequence[str],
    weights: str | None = None,
    samples: int | None = None,
    overlay: str | None = None,
    overlay_n: int = 8,
    as_json: bool = False,
) -> int:
    """Table-2 metrics (landmark and photometric error) of FaceNet weights on face crops."""
    from fullcap.eval.facenet import evaluate as run
    from fullcap.eval.facenet import save_overlay
    from fullcap.models.weights import load_facenet
    from fullcap.train.face_data import FaceData

    net = load_facenet(weights or "facenet")
    crops = FaceData(data, net.face, size=net.config.input_size, augment=False)
    report = run(net, crops, n=samples)
    report["data"] = [str(d) for d in data]
    if overlay:
        report["overlay"] = str(save_overlay(net, crops, overlay, n=overlay_n))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(f"FaceNet on {report['samples']} crops of {', '.join(report['data'])}")
        for group in ("facenet", "truth", "expression"):
            for k, v in report.get(group, {}).items():
                print(f"  {group:>8} {k:>20}: {v:.4f}")
        if overlay:
            print(f"overlay: {report['overlay']}")
    return 0


def bench(weights: str | None = None, n: int = 200, threads: int = 1, as_json: bool = False) -> int:
    """Milliseconds per crop (batch 1, CPU) of FaceNet weights (a fresh network when None)."""
    from fullcap.eval.facenet import benchmark

    if weights:
        from fullcap.models.weights import load_facenet

        net = load_facenet(weights)
    else:
        from fullcap.train.facenet import FaceTrainConfig, new_network

        net = new_network(FaceTrainConfig())
    report = benchmark(net, n=n, threads=threads)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report.items():
            print(f"{k:>18}: {v:.3f}" if isinstance(v, float) else f"{k:>18}: {v}")
    return 0
