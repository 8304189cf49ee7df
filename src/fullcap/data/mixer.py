"""Mini-batches mixed from several sources, as the paper composes DetNet's batches.

Every batch holds a fixed number of samples per source (:data:`fullcap.data.heads.
GROUP_COUNTS` times an integer ``factor``): 2 from the body+hands set, 2 from each 3D body
set, 1 from each 2D body set, 1 from each hand set, 1 from each face set.

Determinism and resume: batch ``step`` is a pure function of ``(seed, step)``. Source ``r``
takes its ``c_r`` samples at positions ``step * c_r ... step * c_r + c_r - 1`` of an endless
sequence of epochs; epoch ``e`` visits the reader in a permutation seeded by
``(seed, source, e)`` with the reader's augmentation drawn for epoch ``e``. A resumed run
therefore sees exactly the batches an uninterrupted run sees, with no skipping.

Readers: anything satisfying :class:`Reader` (map-style, items with the keys of
:class:`fullcap.synth.shards.ShardDataset`); :class:`ShardSource` adapts shard folders.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.utils.data

from fullcap.data.detnet_batches import DetNetBatch, build_sample, collate
from fullcap.data.heads import GROUP_COUNTS, SourceSpec, get_spec
from fullcap.data.workers import init_worker
from fullcap.models.detnet import DetNetConfig
from fullcap.synth.shards import INDEX, Augment, ShardDataset

__all__ = [
    "EVAL_AUGMENT",
    "Mixer",
    "MixerStream",
    "Reader",
    "ShardSource",
    "make_loader",
    "open_sources",
]

# Held-out evaluation: the shot's box centred with the training margin, nothing random.
EVAL_AUGMENT = Augment(scale=(1.0, 1.0), shift=0.0, p_rotate=0.0, p_flip=0.0, color=0.0)


@runtime_checkable
class Reader(Protocol):
    """A training source: ``spec`` says its group and head; ``sets`` maps each stored set to
    its keypoint names; items are dicts with the keys of
    :class:`fullcap.synth.shards.ShardDataset` (optionally ``labelled/<set>``);
    ``set_epoch(e)`` changes the augmentation draws."""

    spec: SourceSpec
    sets: Mapping[str, Sequence[str]]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> dict[str, Any]: ...

    def set_epoch(self, epoch: int) -> None: ...


def _source_of(root: Path) -> str:
    path = root / INDEX
    if not path.is_file():
        raise FileNotFoundError(
            f"{root} is not a shard folder (no {INDEX}); render one with "
            f"`fullcap synth generate --source SOURCE --out {root}`"
        )
    return str(json.loads(path.read_text())["source"])


class ShardSource:
    """One source's shard folders (one or more) as a :class:`Reader`."""

    def __init__(
        self, roots: Sequence[str | Path], augment: Augment | None = None, seed: int = 0
    ) -> None:
        if not roots:
            raise ValueError("ShardSource needs at least one shard folder")
        self.roots = [Path(r) for r in roots]
        names = {_source_of(r) for r in self.roots}
        if len(names) != 1:
            raise ValueError(f"shard folders {self.roots} hold different sources {names}")
        self.spec = get_spec(names.pop())
        self.parts = [ShardDataset(r, augment=augment, seed=seed) for r in self.roots]
        self.sets = self.parts[0].files.sets
        for p in self.parts[1:]:
            if p.files.sets != self.sets:
                raise ValueError(f"shard folders of {self.spec.name} label different sets")
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        if self.offsets[-1] == 0:
            raise ValueError(f"shard folders {self.roots} hold no samples")

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> dict[str, Any]:
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.parts[k][int(i - self.offsets[k])]

    def set_epoch(self, epoch: int) -> None:
        for p in self.parts:
            p.set_epoch(epoch)


def open_sources(
    roots: Sequence[str | Path], augment: Augment | None = None, seed: int = 0
) -> list[ShardSource]:
    """Group shard folders by the source their index names: one :class:`ShardSource` each,
    in the order sources first appear."""
    by_source: dict[str, list[Path]] = {}
    for r in roots:
        by_source.setdefault(_source_of(Path(r)), []).append(Path(r))
    return [ShardSource(rs, augment, seed) for rs in by_source.values()]


class Mixer:
    """Deterministic mixed batches from readers of different sources.

    Args:
        readers: one per source (names must differ).
        config: DetNet config (sizes, heads).
        factor: integer multiplier of the per-group counts.
        seed: order and box-jitter seed.
        jitter: jitter hand and face boxes (training).
        counts: optional source name -> samples per batch, instead of the group counts.
        keep_images: keep item images in the batches (evaluation, drawing).
    """

    def __init__(
        self,
        readers: Sequence[Reader],
        config: DetNetConfig,
        factor: int = 1,
        seed: int = 0,
        jitter: bool = True,
        counts: Mapping[str, int] | None = None,
        keep_images: bool = False,
    ) -> None:
        if not readers:
            raise ValueError("Mixer needs at least one reader")
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor!r}")
        names = [r.spec.name for r in readers]
        if len(set(names)) != len(names):
            raise ValueError(f"one reader per source, got {names}")
        self.readers = list(readers)
        self.config, self.seed, self.jitter, self.keep_images = config, seed, jitter, keep_images
        self.counts = {
            r.spec.name: int(counts[r.spec.name]) if counts else GROUP_COUNTS[r.spec.group] * factor
            for r in self.readers
        }
        self._perm: dict[tuple[str, int], np.ndarray] = {}

    @property
    def batch_size(self) -> int:
        return sum(self.counts.values())

    def _order(self, r: Reader, epoch: int) -> np.ndarray:
        key = (r.spec.name, epoch)
        if key not in self._perm:
            if len(self._perm) > 4 * len(self.readers):
                self._perm.clear()
            rng = np.random.default_rng([self.seed, zlib.crc32(r.spec.name.encode()), epoch])
            self._perm[key] = rng.permutation(len(r))
        return self._perm[key]

    def position(self, step: int) -> dict[str, dict[str, int]]:
        """Where each source stands before batch ``step``: epoch and offset in the epoch."""
        out = {}
        for r in self.readers:
            p = step * self.counts[r.spec.name]
            out[r.spec.name] = {"epoch": p // len(r), "offset": p % len(r)}
        return out

    def batch(self, step: int) -> DetNetBatch:
        """Batch number ``step`` (>= 0)."""
        samples = []
        for r in self.readers:
            c = self.counts[r.spec.name]
            src = zlib.crc32(r.spec.name.encode())
            for j in range(c):
                p = step * c + j
                epoch, off = divmod(p, len(r))
                r.set_epoch(epoch)
                item = r[int(self._order(r, epoch)[off])]
                g = None
                if self.jitter:
                    g = torch.Generator().manual_seed(
                        int(np.random.SeedSequence([self.seed, src, step, j]).generate_state(1)[0])
                    )
                samples.append(build_sample(item, r.spec, r.sets, self.config, g, self.keep_images))
        return collate(samples)


class MixerStream(torch.utils.data.IterableDataset):
    """Batches ``start, start + 1, ...`` of a mixer; DataLoader worker ``w`` of ``n`` builds
    the steps equal to ``start + w`` modulo ``n``, so the loader yields them in order."""

    def __init__(self, mixer: Mixer, start: int = 0, stop: int | None = None) -> None:
        self.mixer, self.start, self.stop = mixer, start, stop

    def __iter__(self) -> Iterator[tuple[int, DetNetBatch]]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        step = self.start + wid
        while self.stop is None or step < self.stop:
            yield step, self.mixer.batch(step)
            step += nw


def make_loader(
    mixer: Mixer, start: int = 0, workers: int = 1, stop: int | None = None
) -> torch.utils.data.DataLoader | MixerStream:
    """An iterable of ``(step, batch)`` from ``start``; ``workers`` background processes
    (0: build batches in this process)."""
    stream = MixerStream(mixer, start, stop)
    if workers <= 0:
        return stream
    return torch.utils.data.DataLoader(
        stream,
        batch_size=None,
        num_workers=workers,
        prefetch_factor=2,
        worker_init_fn=init_worker,
    )
