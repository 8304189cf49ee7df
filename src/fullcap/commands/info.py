"""``fullcap info``: versions, device, packaged assets (checked against the manifest), renderer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from fullcap import __version__
from fullcap.commands.common import BUILD_CMD, rich_console

__all__ = ["cmd_info", "collect_info"]

# Distribution names reported by `fullcap info` (display name -> candidates).
_PACKAGES = {
    "torch": ("torch",),
    "numpy": ("numpy",),
    "roma": ("roma",),
    "safetensors": ("safetensors",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "moderngl": ("moderngl",),
    "rich": ("rich",),
    "anny": ("anny",),
}


def _dist_version(candidates: Sequence[str]) -> str | None:
    for name in candidates:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def collect_info() -> dict[str, Any]:
    """Versions, device, assets and renderer status as a JSON-ready dict."""
    import platform

    import torch

    from fullcap.assets import load_manifest, packaged_asset_dir, sha256_file

    info: dict[str, Any] = {
        "fullcap": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _dist_version(c) for name, c in _PACKAGES.items()},
    }
    cuda = torch.cuda.is_available()
    info["device"] = {
        "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "torch_threads": torch.get_num_threads(),
    }

    root = packaged_asset_dir()
    manifest = load_manifest()
    assets = []
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []
    for path in files:
        name = path.relative_to(root).as_posix()
        if name == "manifest.json" or path.name.startswith(".") or "__pycache__" in name:
            continue
        digest = sha256_file(path)
        entry = manifest.get(name)
        if entry is None:
            status = "unregistered"
        elif str(entry.get("sha256", "")).lower() == digest:
            status = "ok"
        else:
            status = "mismatch"
        assets.append(
            {"name": name, "size": path.stat().st_size, "sha256": digest, "manifest": status}
        )
    listed = {a["name"] for a in assets}
    for name, entry in sorted(manifest.items()):
        if name not in listed:
            assets.append(
                {"name": name, "size": None, "sha256": entry.get("sha256"), "manifest": "missing"}
            )
    info["asset_dir"] = str(root)
    info["assets"] = assets

    from fullcap.render import Renderer, RenderUnavailable

    try:
        renderer = Renderer(8, 8)
    except RenderUnavailable as exc:
        info["render"] = {"egl_available": False, "detail": str(exc)}
    else:
        renderer.release()
        info["render"] = {"egl_available": True, "detail": "headless EGL OpenGL 3.3 context"}
    return info


def cmd_info(as_json: bool) -> int:
    """``fullcap info``: print :func:`collect_info` as tables or JSON."""
    info = collect_info()
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.table import Table

    console = rich_console()
    env = Table(title="fullcap", show_header=False, title_justify="left")
    env.add_row("fullcap", info["fullcap"])
    env.add_row("python", f"{info['python']} ({info['platform']})")
    for name, version in info["packages"].items():
        env.add_row(name, version or "[dim]not installed[/dim]")
    dev = info["device"]
    env.add_row("cuda", dev["cuda_device"] if dev["cuda_available"] else "not available")
    env.add_row("torch threads", str(dev["torch_threads"]))
    render = info["render"]
    env.add_row("EGL rendering", "available" if render["egl_available"] else render["detail"])
    console.print(env)

    table = Table(title=f"assets ({info['asset_dir']})", title_justify="left")
    for col, justify in (("file", "left"), ("bytes", "right"), ("sha256", "left")):
        table.add_column(col, justify=justify)
    table.add_column("manifest")
    styles = {"ok": "green", "unregistered": "yellow", "mismatch": "red", "missing": "red"}
    for a in info["assets"]:
        size = "-" if a["size"] is None else f"{a['size']:,}"
        status = f"[{styles[a['manifest']]}]{a['manifest']}[/]"
        table.add_row(a["name"], size, (a["sha256"] or "-")[:16], status)
    if not info["assets"]:
        table.add_row("(none)", "-", "-", f"build the body model with `{BUILD_CMD}`")
    console.print(table)
    return 0
