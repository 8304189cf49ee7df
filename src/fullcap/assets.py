"""One place where packaged asset files (body model, weights, ...) are found and checked.

Resolution order of :func:`asset_path`:

1. an explicit ``override`` (a file, or a directory holding the file) - authoritative: if it is
   given and the file is not there, that is an error, with no fallback;
2. the directory named by the environment variable ``FULLCAP_ASSET_DIR`` (if set and the file
   is there);
3. the packaged folder ``fullcap/assets/``.

The registry ``fullcap/assets/manifest.json`` maps asset name to
``{"sha256": <hex>, "size": <bytes>, "rebuild": <shell command that recreates the file>}``.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch

from fullcap.io import atomic_write_text

__all__ = [
    "DEFAULT_REBUILD",
    "AssetError",
    "MissingAsset",
    "asset_path",
    "load_manifest",
    "load_safetensors",
    "manifest_path",
    "packaged_asset_dir",
    "sha256_file",
    "update_manifest",
    "verify_asset",
]

DEFAULT_REBUILD = "fullcap bodymodel build"
_CHUNK = 1 << 20  # 1 MiB


class AssetError(RuntimeError):
    """A required asset file is missing, corrupt or from another version."""


class MissingAsset(AssetError):
    """The asset file is not there at all (as opposed to there but corrupt or mismatched)."""


def packaged_asset_dir() -> Path:
    """The ``fullcap/assets/`` folder shipped inside the package."""
    return Path(str(files("fullcap") / "assets"))


def manifest_path() -> Path:
    """Path of the packaged registry ``fullcap/assets/manifest.json``."""
    return packaged_asset_dir() / "manifest.json"


def load_manifest(path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """Read the asset registry (default: the packaged ``manifest.json``).

    Returns:
        ``{name: {"sha256": str, "size": int, "rebuild": str}}``; ``{}`` if the file is absent.
    """
    path = Path(path) if path is not None else manifest_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AssetError(f"asset manifest {path} is unreadable: {e}") from e
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise AssetError(f"asset manifest {path} must map asset names to objects")
    return data


def update_manifest(
    name: str,
    path: str | os.PathLike[str],
    rebuild: str,
    manifest: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Record ``path``'s hash and size under ``name`` in the registry (atomic rewrite).

    Args:
        name: asset name (file name as passed to :func:`asset_path`).
        path: the freshly built file.
        rebuild: shell command that recreates it, quoted in error messages.
        manifest: registry file to update (default: the packaged ``manifest.json``).

    Returns:
        The new entry ``{"sha256", "size", "rebuild"}``.
    """
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"cannot register asset {name!r}: {path} is not a file")
    target = Path(manifest) if manifest is not None else manifest_path()
    data = load_manifest(target)
    entry = {"sha256": sha256_file(path), "size": path.stat().st_size, "rebuild": rebuild}
    data[name] = entry
    atomic_write_text(target, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return entry


def _rebuild_hint(name: str) -> str:
    entry = load_manifest().get(name)
    if entry and entry.get("rebuild"):
        return f"create it with `{entry['rebuild']}`"
    return f"no command to create it is registered in {manifest_path()}"


def asset_path(
    name: str,
    override: str | os.PathLike[str] | None = None,
    env_var: str = "FULLCAP_ASSET_DIR",
) -> Path:
    """Locate the asset file ``name`` (see the module docstring for the order).

    Args:
        name: file name relative to an asset directory, e.g. ``"body_model.safetensors"``.
        override: explicit file, or directory containing ``name``; wins over everything.
        env_var: environment variable naming an asset directory searched before the package.

    Returns:
        Path of an existing file.

    Raises:
        AssetError: naming the file, every place looked at and the command that creates it.
    """
    rel = Path(name)
    if not name or rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"asset name must be a relative path inside an asset dir, got {name!r}")
    if override is not None:
        candidates = [Path(override) / rel if Path(override).is_dir() else Path(override)]
    else:
        candidates = []
        env_dir = os.environ.get(env_var)
        if env_dir:
            candidates.append(Path(env_dir) / rel)
        candidates.append(packaged_asset_dir() / rel)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    env_note = "" if override is not None or os.environ.get(env_var) else f" ({env_var} unset)"
    raise MissingAsset(
        f"asset {name!r} not found; looked at: {looked}{env_note}; {_rebuild_hint(name)}"
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_asset(
    path: str | os.PathLike[str],
    expected_sha256: str | None,
    rebuild_cmd: str = DEFAULT_REBUILD,
) -> Path:
    """Check that ``path`` exists and hashes to ``expected_sha256``.

    ``expected_sha256=None`` skips the hash check (only existence is checked); callers pass
    ``None`` explicitly for assets that are not in the manifest.

    Raises:
        AssetError: missing file or hash mismatch, quoting ``rebuild_cmd``.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingAsset(f"asset {path} does not exist; rebuild it with `{rebuild_cmd}`")
    if expected_sha256 is None:
        return path
    got = sha256_file(path)
    if got.lower() != expected_sha256.lower():
        raise AssetError(
            f"{path}: hash mismatch: expected {expected_sha256}, got {got}; the file is corrupt "
            f"or from another version; rebuild it with `{rebuild_cmd}`"
        )
    return path


def load_safetensors(
    path: str | os.PathLike[str],
    expected_sha256: str | None = None,
    rebuild: str = DEFAULT_REBUILD,
    device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Load a ``.safetensors`` file into a dict of tensors, with asset-style errors.

    Args:
        path: the file.
        expected_sha256: if given, verified before loading (see :func:`verify_asset`).
        rebuild: command quoted in error messages.
        device: where the tensors are loaded.

    Raises:
        AssetError: missing, hash-mismatched, truncated or otherwise unreadable file.
    """
    from safetensors.torch import load_file

    path = verify_asset(path, expected_sha256, rebuild)
    try:
        return load_file(path, device=str(device))
    except Exception as e:  # safetensors raises SafetensorError, OSError, ValueError, ...
        raise AssetError(
            f"cannot read {path} as safetensors ({type(e).__name__}: {e}); the file is corrupt "
            f"or truncated; rebuild it with `{rebuild}`"
        ) from e
