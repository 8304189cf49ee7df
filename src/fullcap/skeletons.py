"""Keypoint sets by name: the body, hand and face conventions fullcap uses everywhere.

Names are the exact strings of ``shared/method/METHOD.md``. Code maps between sets with
:func:`joint_map`, never with hand-written index lists.

Conventions:
- ``left``/``right`` are the person's own left and right.
- Hand keypoints are per hand (``wrist``, ``thumb1`` ... ``pinky4``, 4 = fingertip); the body
  model exposes them as ``left_hand`` and ``right_hand`` sets with the same names.
- Face landmarks follow the 68-point 300-W convention, named ``face00`` ... ``face67`` in
  300-W order (0-16 jaw from the person's right to left, 17-21 right brow, 22-26 left brow,
  27-30 nose bridge, 31-35 nostrils, 36-41 right eye, 42-47 left eye, 48-59 outer lip,
  60-67 inner lip).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

BODY33: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "head_top",
    "left_eye",
    "right_eye",
    "left_index1",
    "left_pinky1",
    "right_index1",
    "right_pinky1",
    "left_big_toe",
    "left_small_toe",
    "right_big_toe",
    "right_small_toe",
)

_BODY33_PARENT: dict[str, str | None] = {
    "pelvis": None,
    "left_hip": "pelvis",
    "right_hip": "pelvis",
    "spine1": "pelvis",
    "left_knee": "left_hip",
    "right_knee": "right_hip",
    "spine2": "spine1",
    "left_ankle": "left_knee",
    "right_ankle": "right_knee",
    "spine3": "spine2",
    "left_foot": "left_ankle",
    "right_foot": "right_ankle",
    "neck": "spine3",
    "left_collar": "spine3",
    "right_collar": "spine3",
    "head": "neck",
    "left_shoulder": "left_collar",
    "right_shoulder": "right_collar",
    "left_elbow": "left_shoulder",
    "right_elbow": "right_shoulder",
    "left_wrist": "left_elbow",
    "right_wrist": "right_elbow",
    "head_top": "head",
    "left_eye": "head",
    "right_eye": "head",
    "left_index1": "left_wrist",
    "left_pinky1": "left_wrist",
    "right_index1": "right_wrist",
    "right_pinky1": "right_wrist",
    "left_big_toe": "left_foot",
    "left_small_toe": "left_foot",
    "right_big_toe": "right_foot",
    "right_small_toe": "right_foot",
}

BASIC9: tuple[str, ...] = (
    "pelvis",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

EVAL14: tuple[str, ...] = (
    "pelvis",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "neck",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
)

FINGERS: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")
HAND21: tuple[str, ...] = ("wrist", *(f"{f}{i}" for f in FINGERS for i in range(1, 5)))
_HAND21_PARENT: dict[str, str | None] = {"wrist": None} | {
    f"{f}{i}": ("wrist" if i == 1 else f"{f}{i - 1}") for f in FINGERS for i in range(1, 5)
}

FACE68: tuple[str, ...] = tuple(f"face{i:02d}" for i in range(68))


def _face68_edges() -> tuple[tuple[int, int], ...]:
    chains = [
        range(0, 17),
        range(17, 22),
        range(22, 27),
        range(27, 31),
        range(31, 36),
        [*range(36, 42), 36],
        [*range(42, 48), 42],
        [*range(48, 60), 48],
        [*range(60, 68), 60],
    ]
    edges = []
    for chain in chains:
        chain = list(chain)
        edges += list(itertools.pairwise(chain))
    return tuple(edges)


def swap_side(name: str) -> str:
    """The mirror keypoint's name: ``left_x`` <-> ``right_x``; other names are unchanged."""
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    return name


def side_permutation(names: Sequence[str]) -> tuple[int, ...]:
    """Index permutation of ``names`` that swaps left and right (``left_x`` <-> ``right_x``);
    ValueError when a side's keypoint has no partner."""
    return tuple(list(names).index(swap_side(n)) for n in names)


@dataclass(frozen=True)
class KeypointSet:
    """A named keypoint set: ordered names, a parent per keypoint (None for roots), edges."""

    name: str
    names: tuple[str, ...]
    parents: tuple[int, ...]  # -1 for a root
    edges: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not a keypoint of the {self.name} set") from None

    def flip_permutation(self) -> tuple[int, ...]:
        """Index permutation that swaps left and right keypoints (for mirroring)."""

        if self.name == "face68":
            return tuple(_FACE68_FLIP)
        return side_permutation(self.names)


def _from_parents(name: str, names: tuple[str, ...], parent: dict[str, str | None]) -> KeypointSet:
    parents = tuple(-1 if parent[n] is None else names.index(parent[n]) for n in names)
    edges = tuple((p, i) for i, p in enumerate(parents) if p >= 0)
    return KeypointSet(name, names, parents, edges)


def _subset(name: str, names: tuple[str, ...], full: KeypointSet) -> KeypointSet:
    """A subset whose parent is the nearest ancestor inside the subset."""
    parents = []
    for n in names:
        p = full.parents[full.index(n)]
        while p >= 0 and full.names[p] not in names:
            p = full.parents[p]
        parents.append(-1 if p < 0 else names.index(full.names[p]))
    edges = tuple((p, i) for i, p in enumerate(parents) if p >= 0)
    return KeypointSet(name, names, tuple(parents), edges)


# 300-W mirror pairs (0-based): jaw, brows, nose, eyes, lips.
_FACE68_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)]
)
_FACE68_FLIP = list(range(68))
for _a, _b in _FACE68_PAIRS:
    _FACE68_FLIP[_a], _FACE68_FLIP[_b] = _b, _a

BODY33_SET = _from_parents("body33", BODY33, _BODY33_PARENT)
HAND21_SET = _from_parents("hand21", HAND21, _HAND21_PARENT)
BASIC9_SET = _subset("basic9", BASIC9, BODY33_SET)
EVAL14_SET = _subset("eval14", EVAL14, BODY33_SET)
FACE68_SET = KeypointSet("face68", FACE68, tuple([-1] * 68), _face68_edges())

KEYPOINT_SETS: dict[str, KeypointSet] = {
    s.name: s for s in (BODY33_SET, BASIC9_SET, EVAL14_SET, HAND21_SET, FACE68_SET)
}


def get_set(name: str) -> KeypointSet:
    """The keypoint set called ``name`` (body33, basic9, eval14, hand21, face68)."""
    try:
        return KEYPOINT_SETS[name]
    except KeyError:
        raise KeyError(f"unknown keypoint set {name!r}; known: {sorted(KEYPOINT_SETS)}") from None


def joint_map(src: KeypointSet | tuple[str, ...], dst: KeypointSet | tuple[str, ...]) -> list[int]:
    """Indices into ``src`` of each keypoint of ``dst``: ``x_dst = x_src[..., idx, :]``.

    Raises KeyError naming the keypoints of ``dst`` that ``src`` lacks.
    """
    src_names = src.names if isinstance(src, KeypointSet) else tuple(src)
    dst_names = dst.names if isinstance(dst, KeypointSet) else tuple(dst)
    missing = [n for n in dst_names if n not in src_names]
    if missing:
        raise KeyError(f"source keypoints lack {missing}")
    return [src_names.index(n) for n in dst_names]
