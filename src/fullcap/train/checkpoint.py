"""Checkpoints, the metrics ledger and the progress bar shared by every training loop."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from fullcap.io import atomic_path


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts only) atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: no unpickling of
    arbitrary objects)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise ValueError(f"{path} is not a readable fullcap checkpoint ({exc})") from exc


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


class Ledger:
    """Append-only JSONL metrics: one row per evaluation (time, git sha, and given fields)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.sha = git_sha()

    def write(self, **fields: Any) -> None:
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "git": self.sha, **fields}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()


class ProgressBar:
    """A rich progress bar showing steps, rate and the latest loss."""

    def __init__(self, total: int, start: int, description: str):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        )
        self._task = self._progress.add_task(description, total=total, completed=start, info="")
        self._progress.start()

    def update(self, step: int, **info: float) -> None:
        text = " ".join(f"{k}={v:.4g}" for k, v in info.items())
        self._progress.update(self._task, completed=step, info=text)

    def close(self) -> None:
        self._progress.stop()
