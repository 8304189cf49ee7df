"""Helpers shared by the ``fullcap`` subcommands: the user-facing error type, the device
choice, loading the body model, printing reports."""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = [
    "BUILD_CMD",
    "CliError",
    "load_body_model",
    "print_report",
    "resolve_device",
    "rich_console",
]

BUILD_CMD = "fullcap bodymodel build"


class CliError(Exception):
    """A user-facing runtime failure; its message is printed as is."""


def resolve_device(name: str) -> Any:
    """``"auto"`` -> CUDA if available else CPU; ``"cuda"`` fails clearly without CUDA."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def load_body_model(device: Any = "cpu") -> Any:
    """Load the packaged body model; asset errors always name the command that builds it."""
    from fullcap.assets import AssetError
    from fullcap.bodymodel.model import BodyModel

    try:
        return BodyModel.load(device=device)
    except AssetError as exc:
        msg = str(exc)
        if BUILD_CMD not in msg:
            msg = f"{msg}; build it with `{BUILD_CMD}`"
        raise AssetError(msg) from exc


def rich_console() -> Any:
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(", ", ": "), default=str)
    return "-" if value is None else str(value)


def print_report(title: str, report: dict[str, Any]) -> None:
    """Key/value table of a report; each list of row dicts becomes a table of its own."""
    from rich.table import Table

    console = rich_console()
    summary = Table(title=title, show_header=False, title_justify="left")
    tables = []
    for key, value in report.items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            columns = list(dict.fromkeys(k for row in value for k in row))
            table = Table(title=key, title_justify="left")
            for col in columns:
                table.add_column(col, justify="right")
            for row in value:
                table.add_row(*(_cell(row.get(col)) for col in columns))
            tables.append(table)
        else:
            summary.add_row(key, _cell(value))
    console.print(summary)
    for table in tables:
        console.print(table)
