"""What each training source gives DetNet: its mini-batch group, its extended-keypoint head.

The paper splits body keypoints into the basic keypoints (BASIC9, shared by every dataset)
and dataset-specific extended keypoints, with one extended head per dataset. Decisions here:

- ``humbi_like`` and ``mtc_like`` both label fullcap's own ``body33`` set (the synthetic
  definitions are identical), so both train the ``humbi`` head: the 33 keypoints that feed
  BodyIKNet. (The paper's MTC has its own definition; a real MTC reader gets its own head.)
- ``h36m_like`` trains an ``h36m`` head on its ``h36m17`` set; ``coco_like`` a 2D-only ``coco``
  head on ``coco17``. Their names are not body33 names: each keypoint's parent comes from its
  anchors in :mod:`fullcap.synth.sources` (see :func:`parents_from_anchors`).
- ``hand_like`` and ``face_like`` have no body head: they train the hand and face branches.

Mini-batch groups (supplementary, Training Details): ``body_hands`` 2 samples, ``body3d`` 2,
``body2d`` 1, ``hand`` 1; fullcap adds ``face`` 1 (the face landmark term).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fullcap.models.detnet import DetNetConfig
from fullcap.skeletons import BODY33, BODY33_SET
from fullcap.synth.sources import COCO17, H36M17, ExtendedSet

__all__ = [
    "GROUP_COUNTS",
    "HEADS",
    "SOURCE_SPECS",
    "HeadDef",
    "SourceSpec",
    "detnet_config",
    "get_spec",
    "parents_from_anchors",
]

GROUP_COUNTS: dict[str, int] = {"body_hands": 2, "body3d": 2, "body2d": 1, "hand": 1, "face": 1}


@dataclass(frozen=True)
class HeadDef:
    """An extended head: its keypoint names and parents (-1 for roots); ``names[i]`` is read
    from the stored set ``set_name`` of a sample."""

    name: str
    set_name: str
    names: tuple[str, ...]
    parents: tuple[int, ...]


@dataclass(frozen=True)
class SourceSpec:
    """How DetNet trains on one source.

    group: mini-batch group (a key of :data:`GROUP_COUNTS`); head: extended head name or None.
    """

    name: str
    group: str
    head: str | None

    def __post_init__(self) -> None:
        if self.group not in GROUP_COUNTS:
            raise ValueError(f"source {self.name}: unknown group {self.group!r}")
        if self.head is not None and self.head not in HEADS:
            raise ValueError(f"source {self.name}: unknown head {self.head!r} ({sorted(HEADS)})")


_MESH_TO_BODY = {"mesh:nose": "head", "mesh:left_ear": "head", "mesh:right_ear": "head"}
_BODY_PARENT = {
    n: (None if p < 0 else BODY33[p]) for n, p in zip(BODY33, BODY33_SET.parents, strict=True)
}


def parents_from_anchors(es: ExtendedSet) -> tuple[int, ...]:
    """A parent per keypoint of an extended set, from its body33 anchors.

    Each keypoint covers the body33 keypoints it is made of (mesh landmarks count as
    ``head``), its heaviest anchor first; the first keypoint of the set to cover a body33 name
    owns it. A keypoint whose heaviest anchor another keypoint owns hangs from that owner (the
    h36m ``head`` from ``nose``); any other hangs from the owner of the nearest body33 ancestor
    of its heaviest anchor (the h36m shoulders from ``thorax``, which covers ``spine3``), or is
    a root when none is owned (coco17's shoulders and hips).
    """
    covers = []
    for anchor in es.anchors:
        ranked = sorted(anchor, key=lambda nw: -nw[1])  # stable: the first of equal weights
        covers.append([_MESH_TO_BODY.get(n, n) for n, _ in ranked])
    owner: dict[str, int] = {}
    for i, names in enumerate(covers):
        for n in names:
            owner.setdefault(n, i)
    parents = []
    for i, names in enumerate(covers):
        main = names[0]
        if owner[main] != i:
            parents.append(owner[main])
            continue
        p = _BODY_PARENT[main]
        while p is not None and owner.get(p, i) == i:
            p = _BODY_PARENT[p]
        parents.append(-1 if p is None else owner[p])
    return tuple(parents)


HEADS: dict[str, HeadDef] = {
    "humbi": HeadDef("humbi", "body33", BODY33, BODY33_SET.parents),
    "h36m": HeadDef("h36m", "h36m17", H36M17.names, parents_from_anchors(H36M17)),
    "coco": HeadDef("coco", "coco17", COCO17.names, parents_from_anchors(COCO17)),
}

SOURCE_SPECS: dict[str, SourceSpec] = {
    s.name: s
    for s in (
        SourceSpec("mtc_like", "body_hands", "humbi"),
        SourceSpec("humbi_like", "body3d", "humbi"),
        SourceSpec("h36m_like", "body3d", "h36m"),
        SourceSpec("coco_like", "body2d", "coco"),
        SourceSpec("hand_like", "hand", None),
        SourceSpec("face_like", "face", None),
    )
}


def get_spec(source: str) -> SourceSpec:
    """The spec of a known source; ValueError naming the known ones."""
    if source not in SOURCE_SPECS:
        raise ValueError(f"unknown source {source!r}; DetNet knows {sorted(SOURCE_SPECS)}")
    return SOURCE_SPECS[source]


def detnet_config(preset: str, specs: Iterable[SourceSpec], **overrides) -> DetNetConfig:
    """The DetNet config of ``preset`` with one extended head per head the sources train
    (in :data:`HEADS` order); heads whose names are not body33 names carry their parents."""
    wanted = {s.head for s in specs if s.head is not None}
    heads = [HEADS[h] for h in HEADS if h in wanted]
    extended = tuple((h.name, h.names) for h in heads)
    parents = tuple((h.name, h.parents) for h in heads if any(n not in BODY33 for n in h.names))
    return DetNetConfig.from_preset(
        preset, extended=extended, extended_parents=parents, **overrides
    )
