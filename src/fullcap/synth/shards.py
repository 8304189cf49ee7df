"""Sharded storage of synthetic samples: a resumable, deterministic writer and readers.

Layout of ``out_dir``::

    index.json                  what the dataset is, and the complete shards with their sha256
    shard-00000.safetensors     samples [0, shard_size)
    shard-00001.safetensors     ...

A shard is one safetensors file: ``jpeg`` (uint8, the JPEG files concatenated) with
``jpeg_offsets`` (int64, n + 1), optionally ``part_png``/``part_offsets`` (PNG part maps),
and one stacked array per label (``kp2d/body33`` (n, P, 2), ``vis/body33`` (n, P), ...; see
:class:`fullcap.synth.engine.SynthSample`). Its metadata holds one key, ``fullcap``, a JSON
object with the pose archetypes (safetensors writes metadata keys in a random order, so a
single key keeps the bytes reproducible).

Determinism: sample ``i`` depends only on ``(seed, source, i, size)``, so the same call gives
the same bytes, and a resumed run rewrites exactly what a fresh run writes. Resume: shards in
the index whose file hash matches are kept; any other shard (missing, partial, corrupt, or
written but not yet indexed) is rendered again. Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.utils.data
from safetensors.numpy import save

from fullcap.io import atomic_write_bytes, atomic_write_text
from fullcap.skeletons import swap_side
from fullcap.synth.engine import SynthEngine, SynthSample
from fullcap.synth.sources import get_source

__all__ = [
    "FORMAT",
    "INDEX",
    "Augment",
    "ShardDataset",
    "ShardStream",
    "augment_sample",
    "decode_shard",
    "encode_shard",
    "flip_permutation",
    "generate",
    "shard_name",
]

logger = logging.getLogger(__name__)

FORMAT = "fullcap-synth-shards/1"
INDEX = "index.json"


def shard_name(k: int) -> str:
    """File name of shard ``k``."""
    return f"shard-{k:05d}.safetensors"


def _concat(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    return np.frombuffer(b"".join(blobs), np.uint8).copy(), offsets


def encode_shard(samples: list[SynthSample]) -> bytes:
    """Serialise samples (all with the same label keys and shapes) to safetensors bytes."""
    if not samples:
        raise ValueError("samples must not be empty")
    tensors: dict[str, np.ndarray] = {}
    tensors["jpeg"], tensors["jpeg_offsets"] = _concat([s.jpeg for s in samples])
    if all(s.part_png is not None for s in samples):
        tensors["part_png"], tensors["part_offsets"] = _concat([s.part_png for s in samples])
    for key in samples[0].labels:
        tensors[key] = np.ascontiguousarray(np.stack([s.labels[key] for s in samples]))
    info_keys = sorted(samples[0].info)
    meta = {k: [s.info.get(k, "") for s in samples] for k in info_keys}
    return save(tensors, metadata={"fullcap": json.dumps(meta, sort_keys=True)})


def decode_shard(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All arrays of a shard file and its metadata (for tests and inspection)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        arrays = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads((f.metadata() or {}).get("fullcap", "{}"))
    return arrays, meta


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_args(out_dir: Any, n: int, seed: int, shard_size: int, workers: int, size: int) -> Path:
    for name, val, lo in (
        ("n", n, 1),
        ("shard_size", shard_size, 1),
        ("size", size, 1),
        ("workers", workers, 0),
        ("seed", seed, 0),
    ):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"out_dir {str(out)!r} is not a writable directory ({exc})") from exc
    return out


# ------------------------------------------------------------------------- writing
_ENGINES: dict[tuple[str, int, int], SynthEngine] = {}  # one per process and configuration


def _engine(source: str, seed: int, size: int) -> SynthEngine:
    key = (source, seed, size)
    if key not in _ENGINES:
        _ENGINES.clear()  # one GL framebuffer set at a time
        _ENGINES[key] = SynthEngine(source, seed=seed, size=size)
    return _ENGINES[key]


def _init_worker(source: str, seed: int, size: int) -> None:
    """Pool initializer: one torch thread and one llvmpipe raster thread per process (one
    process per core scales better than threads here), then the engine and its GL context."""
    os.environ.setdefault("LP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    _engine(source, seed, size)


def _make_shard(job: tuple[str, str, int, int, int, int, int]) -> tuple[int, int, str, int]:
    """Render and write one shard; returns (k, count, sha256, bytes)."""
    out_dir, source, seed, size, k, start, count = job
    data = encode_shard(_engine(source, seed, size).render(range(start, start + count)))
    atomic_write_bytes(Path(out_dir) / shard_name(k), data)
    return k, count, _sha256(data), len(data)


def _describe(source: str, seed: int, size: int) -> dict[str, Any]:
    """Dataset-level metadata for the index: keypoint sets, 3D availability, source config."""
    engine = _engine(source, seed, size)
    src = engine.source
    return {
        "keypoint_sets": {s: engine.set_names(s) for s in engine.labelled_sets},
        "has_3d": src.has_3d,
        "part_names": list(engine.model.part_names),
        "source_config": json.loads(json.dumps(asdict(src), default=str)),
    }


def generate(
    out_dir: str | Path,
    source: str,
    n: int,
    seed: int = 0,
    shard_size: int = 256,
    workers: int = 2,
    size: int = 256,
) -> dict[str, Any]:
    """Render ``n`` samples of ``source`` into shards under ``out_dir`` (resumable).

    Args:
        out_dir: output directory (created if needed).
        source: a name from :data:`fullcap.synth.sources.SOURCES`.
        n: number of samples (>= 1); seed: dataset seed (>= 0); shard_size: samples per shard;
        workers: processes (0 or 1: render in this process); size: image side in pixels.
            Worker processes are spawned, so a calling script needs the usual
            ``if __name__ == "__main__":`` guard.
    Returns:
        Summary dict: out_dir, n, shards, written, kept, seconds, images_per_s (of the shards
        written by this call).
    Raises:
        ValueError naming the argument for a bad source, n, seed, shard_size, workers, size
        or an unwritable out_dir, or when out_dir holds a different dataset.
    """
    src = get_source(source)
    out = _check_args(out_dir, n, seed, shard_size, workers, size)
    n_shards = -(-n // shard_size)
    cfg = (str(out), src.name, int(seed), int(size))
    jobs = [(*cfg, k, k * shard_size, min(shard_size, n - k * shard_size)) for k in range(n_shards)]
    header = {
        "format": FORMAT,
        "source": src.name,
        "seed": int(seed),
        "size": int(size),
        "shard_size": int(shard_size),
    }
    index_path = out / INDEX
    done: dict[int, dict[str, Any]] = {}
    if index_path.exists():
        old = json.loads(index_path.read_text())
        if {k: old.get(k) for k in header} != header:
            raise ValueError(
                f"out_dir {str(out)!r} holds a different dataset "
                f"({ {k: old.get(k) for k in header} }); use another out_dir"
            )
        for e in old.get("shards", []):
            k = e["shard"]
            if k < n_shards and (e["start"], e["count"]) == jobs[k][5:]:
                f = out / e["file"]
                if f.exists() and _sha256(f.read_bytes()) == e["sha256"]:
                    done[k] = e
    todo = [j for j in jobs if j[4] not in done]
    logger.info("%s: %d shards kept, %d to render", out, len(done), len(todo))
    t0 = time.perf_counter()
    written: list[int] = []

    def write_index(meta: dict[str, Any]) -> None:
        index = {
            **header,
            **meta,
            "n": n,
            "num_shards": n_shards,
            "shards": [done[j] for j in sorted(done)],
        }
        atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True) + "\n")

    def record(res: tuple[int, int, str, int], meta: dict[str, Any]) -> None:
        k, count, sha, nbytes = res
        done[k] = {
            "shard": k,
            "file": shard_name(k),
            "start": k * shard_size,
            "count": count,
            "sha256": sha,
            "bytes": nbytes,
        }
        write_index(meta)
        written.append(count)
        logger.info("shard %d written (%d/%d)", k, len(done), n_shards)

    if workers <= 1 or len(todo) <= 1:
        meta = _describe(*cfg[1:])
        for job in todo:
            record(_make_shard(job), meta)
        write_index(meta)
    else:
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(workers, len(todo)), _init_worker, cfg[1:]) as pool:
            meta = pool.apply(_describe, cfg[1:])
            for res in pool.imap_unordered(_make_shard, todo):
                record(res, meta)
    dt = time.perf_counter() - t0
    return {
        "out_dir": str(out),
        "n": n,
        "shards": n_shards,
        "written": len(written),
        "kept": n_shards - len(written),
        "seconds": dt,
        "images_per_s": sum(written) / dt if dt > 0 else 0.0,
    }


# ------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Augment:
    """Training augmentation of :class:`ShardDataset` / :class:`ShardStream`.

    The crop is a square around the person's box (the shot's box: body, the hand of a hand
    shot, the face of a face shot; clipped to the image), ``margin`` times its longer side,
    scaled by a factor in ``scale``, shifted by up to ``shift`` of its side, rotated by up to
    ``rotate_deg`` (with probability ``p_rotate``), then mirrored with probability ``p_flip``
    (left/right keypoints, sets and boxes swapped), and colour-jittered.

    With probability ``p_cut`` a body shot is then *cut*: every row of the crop below a line
    drawn between the shoulders and the knees (at ``cut_range`` of the way down, uniformly)
    is set to black, as a webcam's frame ends at the desk and capture pads the rest of the
    person's box with black (the upper-body framings of :mod:`fullcap.capture.detector`).
    The keypoints below the line keep their labels (the network learns to place them, as
    it does occluded ones) but lose ``vis``; a hand or face mostly below it loses its box.
    """

    out_size: int = 256
    margin: float = 1.25
    scale: tuple[float, float] = (0.8, 1.25)
    shift: float = 0.1
    rotate_deg: float = 30.0
    p_rotate: float = 0.5
    p_flip: float = 0.5
    color: float = 0.2  # amplitude of brightness / contrast / saturation jitter
    p_cut: float = 0.0  # probability of a cut body shot (0 draws nothing: old runs unchanged)
    cut_range: tuple[float, float] = (0.3, 1.0)  # shoulders (0) -> knees (1)


def flip_permutation(set_name: str, names: list[str]) -> list[int]:
    """Left/right permutation of a stored set: ``fullcap.skeletons`` for sets it knows (face68
    mirror pairs), otherwise by ``left_``/``right_`` names."""
    from fullcap.skeletons import KEYPOINT_SETS

    ks = KEYPOINT_SETS.get(set_name)
    if ks is not None and list(ks.names) == list(names):
        return list(ks.flip_permutation())
    return [names.index(swap_side(n)) for n in names]


def augment_sample(
    image: np.ndarray,
    labels: dict[str, np.ndarray],
    sets: dict[str, list[str]],
    rng: np.random.Generator,
    cfg: Augment,
    part: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """Crop, rotate, scale, flip and colour-jitter one sample with consistent labels.

    Args:
        image: (H, W, 3) uint8 RGB. labels: one sample's labels (``kp2d/<set>``, ``vis/<set>``,
            optional ``kp3d/<set>``, ``boxes``, ``box_valid``, ``K``, ``shot``, ``shot_side``).
        sets: stored set name -> keypoint names. part: optional (H, W) uint8 part map.
    Returns:
        (crop (S, S, 3) uint8, new labels, warped part map or None). New labels: keypoints in
        crop pixels, ``vis`` cleared outside the crop, ``kp3d`` rotated about the camera's z
        axis by the image rotation (x negated when flipped), ``K`` such that ``K @ kp3d``
        projects onto the crop keypoints, boxes (bounding boxes of the moved corners),
        ``affine`` (2, 3) image -> crop pixels (before the flip), ``flip`` and ``rot_deg``.
    """
    H, W = image.shape[:2]
    S = cfg.out_size
    lab = {k: np.array(v, copy=True) for k, v in labels.items()}
    shot = int(lab.get("shot", 0))
    side = int(lab.get("shot_side", 0))
    k_box = {2: side if side in (1, 2) else 1, 3: 3}.get(shot, 0)  # hand -> its hand, face -> 3
    box = np.array(lab["boxes"][k_box], np.float64)
    box = np.clip(box, 0, [W, H, W, H])
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        box = np.array([0.0, 0.0, W, H])
    side_px = cfg.margin * max(box[2] - box[0], box[3] - box[1]) * rng.uniform(*cfg.scale)
    c = (box[:2] + box[2:]) / 2 + rng.uniform(-cfg.shift, cfg.shift, 2) * side_px
    rot = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg) if rng.random() < cfg.p_rotate else 0.0
    s = S / side_px
    a = np.radians(rot)
    R2 = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    A = np.zeros((2, 3))
    A[:, :2] = s * R2
    A[:, 2] = S / 2 - A[:, :2] @ c  # the box centre goes to the crop centre
    flip = bool(rng.random() < cfg.p_flip)
    Af = A.copy()
    if flip:
        Af = np.array([[-1.0, 0.0, S], [0.0, 1.0, 0.0]]) @ np.vstack([A, [0, 0, 1]])
    M = Af.copy()  # corner convention -> OpenCV's pixel-centre convention
    M[:, 2] += Af[:, :2] @ np.array([0.5, 0.5]) - 0.5
    crop = cv2.warpAffine(image, M, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if part is not None:
        part = cv2.warpAffine(part, M, (S, S), flags=cv2.INTER_NEAREST, borderValue=0)
    # keypoints
    for name in sets:
        uv = lab[f"kp2d/{name}"].astype(np.float64) @ Af[:, :2].T + Af[:, 2]
        inside = (uv >= 0).all(1) & (uv < S).all(1)
        lab[f"kp2d/{name}"] = uv.astype(np.float32)
        lab[f"vis/{name}"] = (lab[f"vis/{name}"].astype(bool) & inside).astype(np.uint8)
        if f"kp3d/{name}" in lab:
            Rz = np.eye(3)
            Rz[:2, :2] = R2
            p = lab[f"kp3d/{name}"].astype(np.float64) @ Rz.T
            if flip:
                p[:, 0] = -p[:, 0]
            lab[f"kp3d/{name}"] = p.astype(np.float32)
    K = lab["K"].astype(np.float64)
    Kn = np.array([[s * K[0, 0], 0, 0], [0, s * K[1, 1], 0], [0, 0, 1.0]])
    Kn[:2, 2] = A[:, :2] @ K[:2, 2] + A[:, 2]
    if flip:
        Kn[0, 2] = S - Kn[0, 2]
    lab["K"] = Kn.astype(np.float32)
    corners = lab["boxes"].reshape(-1, 2, 2)
    pts = np.stack(
        [corners[:, 0], corners[:, 1], corners[:, [0, 1], [0, 1]], corners[:, [1, 0], [0, 1]]], 1
    )  # (4 boxes, 4 corners, 2)
    moved = pts @ Af[:, :2].T + Af[:, 2]
    lab["boxes"] = np.concatenate([moved.min(1), moved.max(1)], 1).astype(np.float32)
    if flip:
        for name in list(sets):
            if name.startswith("left_"):
                other = swap_side(name)
                for pre in ("kp2d/", "vis/", "kp3d/"):
                    if pre + name in lab:
                        lab[pre + name], lab[pre + other] = lab[pre + other], lab[pre + name]
        for name, names in sets.items():
            perm = flip_permutation(name, names)
            for pre in ("kp2d/", "vis/", "kp3d/"):
                if pre + name in lab:
                    lab[pre + name] = lab[pre + name][perm]
        lab["boxes"] = lab["boxes"][[0, 2, 1, 3]]
        lab["box_valid"] = lab["box_valid"][[0, 2, 1, 3]]
        if part is not None:  # part ids are 1 + index into part_names: swap the hands
            lh, rh = 3, 4  # body, head, left_hand, right_hand, eyes -> 1..5
            part = np.where(part == lh, rh, np.where(part == rh, lh, part)).astype(np.uint8)
    if cfg.color > 0:
        crop = _color_jitter(rng, crop, cfg.color)
    if cfg.p_cut > 0 and shot not in (2, 3) and rng.random() < cfg.p_cut:
        row = _cut_below(crop.shape[0], lab, sets, float(rng.uniform(*cfg.cut_range)))
        if row is not None:  # black below, and no part seen there
            crop = crop.copy()
            crop[row:] = 0
            if part is not None:
                part = part.copy()
                part[row:] = 0
    lab["affine"] = A.astype(np.float32)
    lab["flip"] = np.uint8(flip)
    lab["rot_deg"] = np.float32(rot)
    return crop, lab, part


_CUT_FROM = ("left_shoulder", "right_shoulder")
_CUT_TO = ("left_knee", "right_knee")
_PART_BOXES = {"left_hand": 1, "right_hand": 2, "face68": 3}


def _cut_below(
    size: int, lab: dict[str, np.ndarray], sets: dict[str, list[str]], at: float
) -> int | None:
    """:class:`Augment`'s cut of a ``size``-pixel crop, on ``lab`` in place: the line ``at``
    of the way from the shoulders' mean height down to the knees' (those of the first stored
    set that has them: ``body33``, ``h36m17``, ...); the keypoints below it lose ``vis``, a
    hand or face mostly below it its box. Returns the first crop row below the line, or None
    (no cut: no such keypoints, the knees not below the shoulders, or the line below the
    crop)."""
    found = [k for k, names in sets.items() if all(n in names for n in _CUT_FROM + _CUT_TO)]
    if not found:
        return None
    names, uv = sets[found[0]], lab[f"kp2d/{found[0]}"]
    top = float(np.mean([uv[names.index(n), 1] for n in _CUT_FROM]))
    bottom = float(np.mean([uv[names.index(n), 1] for n in _CUT_TO]))
    if bottom <= top:
        return None
    y = top + at * (bottom - top)
    row = max(0, int(np.ceil(y - 0.5)))  # first pixel row whose centre is below the line
    if row >= size:
        return None
    for name in sets:
        below = lab[f"kp2d/{name}"][:, 1] >= y
        lab[f"vis/{name}"] = (lab[f"vis/{name}"].astype(bool) & ~below).astype(np.uint8)
        k = _PART_BOXES.get(name)
        if k is not None and below.mean() > 0.5:  # lab holds augment_sample's own copies
            lab["box_valid"][k] = 0
    return row


def _color_jitter(rng: np.random.Generator, img: np.ndarray, amp: float) -> np.ndarray:
    gain = 1 + rng.uniform(-amp, amp, 3) * np.array([1.0, 0.5, 0.5]) + rng.uniform(-amp, amp)
    mean = float(np.mean(cv2.mean(img)[:3]))
    x = np.arange(256, dtype=np.float64)[:, None] * gain
    x = (x - mean) * (1 + rng.uniform(-amp, amp)) + mean
    img = cv2.LUT(img, np.clip(x + 0.5, 0, 255).astype(np.uint8).reshape(1, 256, 3))
    sat = 1 + rng.uniform(-amp, amp) * 2
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(img, sat, grey, 1 - sat, 0)


class _ShardFiles:
    """Lazy, per-process access to the shards listed in an index (memory-mapped)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        path = self.root / INDEX
        if not path.exists():
            raise FileNotFoundError(f"no {INDEX} in {self.root}: generate the dataset first")
        self.index = json.loads(path.read_text())
        if self.index.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} index")
        self.shards = self.index["shards"]
        self.starts = np.array([e["start"] for e in self.shards], np.int64)
        self.counts = np.array([e["count"] for e in self.shards], np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])  # over listed shards
        self.sets: dict[str, list[str]] = self.index["keypoint_sets"]
        self._open: dict[int, Any] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def handle(self, s: int) -> Any:
        from safetensors import safe_open

        if os.getpid() != self._pid:  # forked worker: do not share handles
            self._open, self._pid = {}, os.getpid()
        if s not in self._open:
            if len(self._open) >= 8:
                self._open.pop(next(iter(self._open)))
            self._open[s] = safe_open(str(self.root / self.shards[s]["file"]), framework="numpy")
        return self._open[s]

    def read(self, s: int, j: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
        """Sample j of listed shard s: image (H, W, 3) RGB, labels, part map or None."""
        f = self.handle(s)
        labels = {}
        for key in f.keys():
            if key in ("jpeg", "jpeg_offsets", "part_png", "part_offsets"):
                continue
            labels[key] = f.get_slice(key)[j : j + 1][0]
        off = f.get_slice("jpeg_offsets")[j : j + 2]
        jpg = f.get_slice("jpeg")[int(off[0]) : int(off[1])]
        img = cv2.cvtColor(cv2.imdecode(np.asarray(jpg), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        part = None
        if "part_png" in f.keys():
            off = f.get_slice("part_offsets")[j : j + 2]
            png = f.get_slice("part_png")[int(off[0]) : int(off[1])]
            part = cv2.imdecode(np.asarray(png), cv2.IMREAD_UNCHANGED)
        return img, labels, part


def _to_item(
    img: np.ndarray,
    labels: dict[str, np.ndarray],
    part: np.ndarray | None,
    sets: dict[str, list[str]],
    has_3d: bool,
) -> dict[str, Any]:
    item: dict[str, Any] = {"image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))}
    for name, names in sets.items():
        key = f"kp3d/{name}"
        if key not in labels:  # 2D-only source: zeros, flagged by has_3d
            labels[key] = np.zeros((len(names), 3), np.float32)
    for k, v in labels.items():
        item[k] = torch.from_numpy(np.asarray(v).copy())
    item["has_3d"] = torch.tensor(has_3d)
    if part is not None:
        item["part"] = torch.from_numpy(part.copy())
    return item


class _ShardReader:
    """Shared part of the readers: index, files, augmentation, item assembly."""

    def __init__(self, root: str | Path, augment: Augment | None = None, seed: int = 0):
        self.files = _ShardFiles(root)
        self.augment, self.seed, self.epoch = augment, int(seed), 0
        self.has_3d = bool(self.files.index.get("has_3d", True))

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (and the stream's order) for a new epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def _item(self, s: int, j: int) -> dict[str, Any]:
        img, labels, part = self.files.read(s, j)
        if self.augment is not None:
            g = int(self.files.starts[s] + j)
            rng = np.random.default_rng([self.seed, self.epoch, g])
            img, labels, part = augment_sample(
                img, labels, self.files.sets, rng, self.augment, part
            )
        return _to_item(img, labels, part, self.files.sets, self.has_3d)


class ShardDataset(_ShardReader, torch.utils.data.Dataset):
    """Map-style dataset over a shard directory.

    Items are dicts of tensors: ``image`` (3, S, S) uint8 RGB, ``kp2d/<set>`` (P, 2) pixels,
    ``vis/<set>`` (P,) uint8, ``kp3d/<set>`` (P, 3) camera-frame metres (zeros when
    ``has_3d`` is False), ``boxes`` (4, 4), ``box_valid``, ``K``, the stored parameters, and
    with augmentation ``affine``, ``flip``, ``rot_deg`` (see :func:`augment_sample`); ``part``
    (S, S) uint8 when shards hold part maps. Augmentation is deterministic given
    ``(seed, epoch, index)``; call :meth:`set_epoch` each epoch.
    """

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        s = int(np.searchsorted(self.files.offsets, i, side="right") - 1)
        return self._item(s, int(i - self.files.offsets[s]))


class ShardStream(_ShardReader, torch.utils.data.IterableDataset):
    """Streaming dataset with the items of :class:`ShardDataset`: each DataLoader worker (and
    each of ``world_size`` ranks) reads whole shards ``k`` with ``k % (workers * world_size)``
    equal to its id, in an order shuffled per epoch, samples shuffled within a shard."""

    def __init__(
        self,
        root: str | Path,
        augment: Augment | None = None,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(root, augment, seed)
        self.shuffle, self.rank, self.world_size = shuffle, rank, world_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        part, parts = self.rank * nw + wid, self.world_size * nw
        order = np.arange(len(self.files.shards))
        rng = np.random.default_rng([self.seed, self.epoch, 1])
        if self.shuffle:
            rng.shuffle(order)
        for s in order[part::parts]:
            inner = np.arange(int(self.files.counts[s]))
            if self.shuffle:
                rng.shuffle(inner)
            for j in inner:
                yield self._item(int(s), int(j))
