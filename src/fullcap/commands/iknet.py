"""``fullcap train iknet`` and ``fullcap eval iknet``: BodyIKNet / HandIKNet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fullcap.commands.common import CliError, load_body_model, print_report

__all__ = ["cmd_eval_iknet", "cmd_train_iknet"]


def cmd_train_iknet(
    part: str, out: str | None, steps: int, batch_size: int, seed: int, workers: int
) -> int:
    """``fullcap train iknet``: train (or resume) BodyIKNet / HandIKNet."""
    import logging

    from fullcap.train.iknet import IKTrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out_dir = Path(out or f"runs/iknet_{part}")
    tc = IKTrainConfig(part=part, steps=steps, batch_size=batch_size, seed=seed)
    ckpt = train(out_dir, tc, progress=sys.stderr.isatty(), workers=workers)
    print(f"checkpoint: {ckpt}")
    print(f"weights:    {out_dir / 'weights.safetensors'}")
    return 0


def cmd_eval_iknet(part: str, weights: str | None, samples: int, as_json: bool) -> int:
    """``fullcap eval iknet``: metrics of an IKNet and of the optimisation baseline."""
    from fullcap.eval.iknet import evaluate
    from fullcap.models.weights import load_iknet
    from fullcap.train.ik_data import IKData

    net = load_iknet(weights or ("bodyiknet" if part == "body" else "handiknet"))
    if net.config.part != part:
        raise CliError(f"{weights} holds a {net.config.part} IKNet, not a {part} one")
    report = evaluate(net, IKData(load_body_model(), net.config), n=samples)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print_report(f"{part} IKNet", report)
    return 0
