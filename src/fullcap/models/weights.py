"""Shipped network weights: safetensors files whose metadata carries the model config.

A weights file rebuilds its network with nothing else (STYLE: checkpoints carry their
config). Packaged weights live in ``fullcap/assets/weights/`` and resolve like every asset
(explicit path > ``$FULLCAP_ASSET_DIR`` > package), checked against the manifest's hash.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from fullcap.assets import AssetError, MissingAsset, asset_path, load_manifest, load_safetensors
from fullcap.io import atomic_path

WEIGHTS = {
    "bodyiknet": "weights/bodyiknet.safetensors",
    "handiknet": "weights/handiknet.safetensors",
    "detnet_lite": "weights/detnet_lite.safetensors",
    "facenet": "weights/facenet.safetensors",
}
TRAIN_COMMANDS = {
    "bodyiknet": "fullcap train iknet --part body",
    "handiknet": "fullcap train iknet --part hand",
    "detnet_lite": "fullcap train detnet --preset lite",
    "facenet": "fullcap train facenet",
}


def save_weights(
    net: nn.Module,
    kind: str,
    config: dict,
    path: str | Path,
    info: dict | None = None,
    half: bool = False,
) -> Path:
    """Write ``net``'s parameters and buffers (float16 if ``half``) with its config."""
    from safetensors.torch import save_file

    tensors = {}
    for k, v in net.state_dict().items():
        v = v.detach().cpu().contiguous()
        tensors[k] = v.half() if half and v.is_floating_point() else v
    meta = {"kind": kind, "config": json.dumps(config), "info": json.dumps(info or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_weights(name_or_path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata (kind, config, info) of a weights file.

    ``name_or_path`` is a key of :data:`WEIGHTS` (packaged, hash-checked) or a file path.
    """
    from safetensors import safe_open

    if str(name_or_path) in WEIGHTS:
        name = WEIGHTS[str(name_or_path)]
        rebuild = TRAIN_COMMANDS[str(name_or_path)]
        try:
            path = asset_path(name)
        except MissingAsset as exc:
            raise MissingAsset(f"{exc}; train weights with `{rebuild}`") from None
        entry = load_manifest().get(name)
        tensors = load_safetensors(path, entry.get("sha256") if entry else None, rebuild=rebuild)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist")
        tensors = load_safetensors(path, None, rebuild="the training command that wrote it")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise AssetError(f"{path} has no model config in its metadata: not a fullcap weights file")
    return tensors, {
        "kind": meta.get("kind"),
        "config": json.loads(meta["config"]),
        "info": json.loads(meta.get("info", "{}")),
        "path": str(path),
    }


def load_iknet(name_or_path: str | Path, device: str | torch.device = "cpu"):
    """An :class:`fullcap.models.iknet.IKNet` from packaged weights or a file."""
    from fullcap.models.iknet import IKNet, IKNetConfig

    tensors, meta = read_weights(name_or_path)
    net = IKNet(IKNetConfig.from_dict(meta["config"]))
    net.load_state_dict({k: v.float() for k, v in tensors.items()})
    return net.to(device).eval()


def load_facenet(name_or_path: str | Path, device: str | torch.device = "cpu"):
    """A :class:`fullcap.models.facenet.FaceNet` (with its face model) from packaged weights
    or a file."""
    from fullcap.models.facenet import FaceNet, FaceNetConfig

    tensors, meta = read_weights(name_or_path)
    if meta["kind"] != "facenet":
        raise AssetError(f"{meta['path']} holds {meta['kind']!r} weights, not a FaceNet")
    net = FaceNet(FaceNetConfig.from_dict(meta["config"]))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    return net.to(device).eval()


def load_detnet(name_or_path: str | Path, device: str | torch.device = "cpu"):
    """A :class:`fullcap.models.detnet.DetNet` (eval mode, float32) from packaged weights
    (``detnet_lite``) or a weights file written by ``fullcap train detnet``."""
    from fullcap.models.detnet import DetNet, DetNetConfig

    tensors, meta = read_weights(name_or_path)
    if not str(meta.get("kind") or "").startswith("detnet"):
        raise AssetError(f"{meta['path']} holds a {meta.get('kind')!r} network, not a DetNet")
    net = DetNet(DetNetConfig.from_dict(meta["config"]))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    return net.to(device).eval()
