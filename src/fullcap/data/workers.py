"""Set-up of data-loading worker processes shared by every training loop."""

from __future__ import annotations

import signal

import torch

__all__ = ["init_worker"]


def init_worker(_: int = 0) -> None:
    """``worker_init_fn`` for training data loaders: one torch thread per worker, and
    SIGINT/SIGTERM ignored. Ctrl-C in a terminal signals the whole process group, and
    ``pkill -f`` matches the workers' command lines too; a worker killed mid-batch makes
    torch raise in the main process at an arbitrary point, so only the main process reacts:
    it finishes its step, checkpoints, and shuts the workers down itself."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
