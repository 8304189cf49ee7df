"""Body pose prior: archetypes made of keyframes, interpolated, perturbed, mirrored, clamped.

A keyframe names joint angles (degrees, the ``(flex, twist, side)`` convention of
:mod:`fullcap.synth.joint_limits`) of the left and centre bones, plus right-side bones whose
angles mean "the mirror image of that left-side rotation", so ``shoulder.L`` and
``shoulder.R`` equal give a symmetric pose. Aliases spread one angle over several bones:

- ``spine``: the whole back, shared spine05..spine01; ``neck``: neck01..03 and head;
- ``hip``/``knee``/``ankle``/``toes``, ``clav``/``shoulder``/``elbow``/``forearm``/``wrist``
  with ``.L``/``.R``; the shoulder's and hip's twist is shared with their twist bones
  (upperarm02, upperleg02), forearm pronation is the twist of lowerarm02.

Unnamed bones keep the relaxed standing pose :data:`BASE`. The fingers, eyes and the
rest of the head pose come from :mod:`fullcap.synth.hands` and :mod:`fullcap.synth.samplers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from fullcap.synth.joint_limits import JointLimits, default_limits

__all__ = ["ARCHETYPES", "BASE", "Archetype", "BodyPosePrior", "sample_body_pose"]

Angles = tuple[float, float, float]

# alias -> [(bone, weight)]: the alias's angles times weight go to each bone. Twist only is
# shared for the limbs (weights apply to all three angles; the twist bones' swings are 0).
# fmt: off
_SPREAD: dict[str, list[tuple[str, float]]] = {
    "spine": [("spine05", 0.15), ("spine04", 0.2), ("spine03", 0.25), ("spine02", 0.2),
              ("spine01", 0.2)],
    "neck": [("neck01", 0.3), ("neck02", 0.2), ("neck03", 0.2), ("head", 0.3)],
}
# fmt: on
_SIDE_ALIAS = {
    "clav": "clavicle",
    "scap": "shoulder01",
    "knee": "lowerleg01",
    "ankle": "foot",
    "elbow": "lowerarm01",
    "wrist": "wrist",
}


def expand(keyframe: dict[str, Angles]) -> dict[str, tuple[list[float], list[bool]]]:
    """Bone name -> ((flex, twist, side) degrees, which of the three the keyframe sets), with
    the aliases of the module resolved (angles set twice add up)."""
    out: dict[str, tuple[list[float], list[bool]]] = {}

    def add(bone: str, v: Angles, w: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
        acc, mask = out.setdefault(bone, ([0.0, 0.0, 0.0], [False, False, False]))
        for k in range(3):
            if w[k] != 0:
                acc[k] += v[k] * w[k]
                mask[k] = True

    for key, v in keyframe.items():
        base, _, side = key.partition(".")
        s = "." + side if side else ""
        if key in _SPREAD:
            for bone, w in _SPREAD[key]:
                add(bone, v, (w, w, w))
        elif base == "shoulder":
            add("upperarm01" + s, v, (1.0, 0.7, 1.0))
            add("upperarm02" + s, v, (0.0, 0.3, 0.0))
        elif base == "hip":
            add("upperleg01" + s, v, (1.0, 0.8, 1.0))
            add("upperleg02" + s, v, (0.0, 0.2, 0.0))
        elif base == "forearm":
            add("lowerarm02" + s, v, (0.0, 0.9, 0.0))
            add("wrist" + s, v, (0.0, 0.1, 0.0))
        elif base == "toes":
            for t in range(1, 6):
                add(f"toe{t}-1{s}", v)
        elif base in _SIDE_ALIAS:
            add(_SIDE_ALIAS[base] + s, v)
        else:
            add(key, v)
    return out


def both(**angles: Angles) -> dict[str, Angles]:
    """The same angles on both sides: ``both(knee=(30, 0, 0))`` sets knee.L and knee.R."""
    return {f"{k}.{s}": v for k, v in angles.items() for s in ("L", "R")}


# Relaxed standing: arms hanging, elbows slightly bent, knees almost straight.
BASE: dict[str, Angles] = both(
    shoulder=(3, 0, 12), elbow=(15, 0, 0), forearm=(0, 15, 0), wrist=(8, 0, -5), hip=(0, 0, 3),
    knee=(3, 0, 0),
)  # fmt: skip


@dataclass(frozen=True)
class Archetype:
    """Keyframes of one kind of pose.

    keyframes: joint angles (degrees, see the module docstring), on top of :data:`BASE`.
    chain: interpolate only between consecutive keyframes (cyclic: the last to the first),
        for motions like walking; otherwise between any two.
    weight: relative sampling frequency.
    hands: hand archetypes allowed for the (left, right) hand; empty: any.
    """

    keyframes: list[dict[str, Angles]]
    chain: bool = False
    weight: float = 1.0
    hands: tuple[tuple[str, ...], tuple[str, ...]] = field(default=((), ()))


def _mirror_kf(kf: dict[str, Angles]) -> dict[str, Angles]:
    """Swap the sides of a keyframe; centre bones' twist and side change sign."""
    out = {}
    for k, (f, t, s) in kf.items():
        if k.endswith(".L"):
            out[k[:-2] + ".R"] = (f, t, s)
        elif k.endswith(".R"):
            out[k[:-2] + ".L"] = (f, t, s)
        else:
            out[k] = (f, -t, -s)
    return out


# fmt: off
def _walk() -> list[dict[str, Angles]]:
    contact = {
        "hip.L": (25, 0, 3), "knee.L": (5, 0, 0), "ankle.L": (-10, 0, 0),
        "hip.R": (-12, 0, 3), "knee.R": (12, 0, 0), "ankle.R": (15, 0, 0), "toes.R": (-25, 0, 0),
        "shoulder.L": (-18, 0, 8), "elbow.L": (15, 0, 0),
        "shoulder.R": (22, 0, 8), "elbow.R": (35, 0, 0), "spine": (4, -6, 0),
    }
    passing = {
        "hip.L": (0, 0, 3), "knee.L": (10, 0, 0), "ankle.L": (5, 0, 0),
        "hip.R": (20, 0, 3), "knee.R": (60, 0, 0), "ankle.R": (10, 0, 0),
        "shoulder.L": (0, 0, 8), "elbow.L": (20, 0, 0),
        "shoulder.R": (2, 0, 8), "elbow.R": (25, 0, 0), "spine": (4, 0, 0),
    }
    return [contact, passing, _mirror_kf(contact), _mirror_kf(passing)]


def _run() -> list[dict[str, Angles]]:
    push = {
        "spine": (12, -5, 0), "neck": (-8, 4, 0),
        "hip.L": (35, 0, 3), "knee.L": (45, 0, 0), "ankle.L": (-5, 0, 0),
        "hip.R": (-20, 0, 3), "knee.R": (20, 0, 0), "ankle.R": (35, 0, 0), "toes.R": (-40, 0, 0),
        "shoulder.L": (-25, 0, 12), "elbow.L": (85, 0, 0),
        "shoulder.R": (30, 10, 10), "elbow.R": (90, 0, 0),
    }
    flight = {
        "spine": (12, -10, 0), "neck": (-8, 8, 0),
        "hip.L": (55, 0, 3), "knee.L": (70, 0, 0), "ankle.L": (0, 0, 0),
        "hip.R": (-15, 0, 3), "knee.R": (95, 0, 0), "ankle.R": (25, 0, 0),
        "shoulder.L": (-35, 0, 12), "elbow.L": (80, 0, 0),
        "shoulder.R": (45, 10, 10), "elbow.R": (95, 0, 0),
    }
    return [push, flight, _mirror_kf(push), _mirror_kf(flight)]
# fmt: on


FIST, OPEN, RELAX = ("fist",), ("open", "relaxed", "spread"), ("relaxed",)
GRIP = ("power_grip", "fist")

# fmt: off
ARCHETYPES: dict[str, Archetype] = {
    "walk": Archetype(_walk(), chain=True, weight=1.5),
    "run": Archetype(_run(), chain=True, weight=1.2, hands=(RELAX + FIST, RELAX + FIST)),
    "stand": Archetype([
        {},
        both(shoulder=(0, 10, 4), elbow=(10, 0, 0)),
        {**both(shoulder=(12, 15, 10), elbow=(30, 0, 0)), "spine": (4, 0, 0),
         "neck": (6, 0, 0)},
        {**both(shoulder=(-10, 0, 12), elbow=(10, 0, 0)), "spine": (-4, 0, 0)},
    ], weight=1.5),
    "contrapposto": Archetype([
        {"hip.R": (0, 0, -4), "hip.L": (10, 5, 6), "knee.L": (18, 0, 0),
         "ankle.L": (8, 0, 0), "spine": (0, 0, -6), "neck": (0, 5, 5)},
        {"hip.R": (0, 0, -2), "hip.L": (5, 10, 10), "knee.L": (10, 0, 0),
         "spine": (2, 5, -4), "shoulder.R": (5, 10, 12), "elbow.R": (25, 0, 0)},
    ]),
    "sit": Archetype([
        {**both(hip=(90, 0, 8), knee=(90, 0, 0), shoulder=(25, 15, 8), elbow=(55, 0, 0)),
         "spine": (5, 0, 0)},
        {**both(hip=(100, 0, 15), knee=(100, 0, 0), shoulder=(50, 20, 10),
         elbow=(100, 0, 0)), "spine": (35, 0, 0), "neck": (-20, 0, 0)},
        {**both(shoulder=(30, 30, 8), elbow=(70, 0, 0)), "hip.L": (100, 0, -12),
         "knee.L": (80, 0, 0), "hip.R": (85, 0, 5), "knee.R": (95, 0, 0),
         "spine": (5, 0, 0)},
        {**both(hip=(75, 0, 10), knee=(60, 0, 0), ankle=(10, 0, 0), shoulder=(10, 0, 15),
         elbow=(40, 0, 0)), "spine": (-10, 0, 0)},
    ], weight=1.2),
    "sit_floor": Archetype([
        {**both(hip=(60, -40, 50), knee=(145, 0, 0), shoulder=(35, 10, 15),
         elbow=(40, 0, 0)), "spine": (15, 0, 0)},
        {**both(hip=(80, 0, 15), knee=(20, 0, 0), shoulder=(-35, -10, 20), elbow=(5, 0, 0),
         wrist=(-60, 0, 0)), "spine": (-5, 0, 0)},
    ], weight=0.6),
    "squat": Archetype([
        {**both(hip=(120, 0, 25), knee=(140, 0, 0), ankle=(-25, 0, 0), shoulder=(70, 0, 30),
         elbow=(40, 0, 0)), "spine": (30, 0, 0), "neck": (-20, 0, 0)},
        {**both(hip=(75, 0, 12), knee=(90, 0, 0), ankle=(-20, 0, 0), shoulder=(85, 0, 10),
         elbow=(5, 0, 0)), "spine": (35, 0, 0), "neck": (-25, 0, 0)},
        {**both(hip=(110, -20, 35), knee=(140, 0, 0), ankle=(-25, 0, 0),
         shoulder=(45, 20, 30), elbow=(50, 0, 0)), "spine": (25, 0, 0), "neck": (-15, 0, 0)},
    ]),
    "kneel": Archetype([
        both(hip=(0, 0, 5), knee=(90, 0, 0), ankle=(40, 0, 0)),
        {"hip.L": (90, 0, 5), "knee.L": (90, 0, 0), "ankle.L": (-10, 0, 0),
         "hip.R": (-5, 0, 5), "knee.R": (95, 0, 0), "ankle.R": (30, 0, 0),
         "toes.R": (-40, 0, 0), "shoulder.L": (30, 30, 10), "elbow.L": (70, 0, 0),
         "spine": (10, 0, 0)},
        both(hip=(90, 0, 8), knee=(150, 0, 0), ankle=(40, 0, 0), shoulder=(25, 10, 5),
             elbow=(60, 0, 0)),
        {**both(hip=(60, 0, 8), knee=(90, 0, 0), ankle=(40, 0, 0), shoulder=(100, 0, 10),
         elbow=(10, 0, 0)), "spine": (40, 0, 0), "neck": (-30, 0, 0)},
    ]),
    "reach_forward": Archetype([
        {"shoulder.R": (90, 0, 15), "elbow.R": (5, 0, 0), "forearm.R": (0, 40, 0),
         "spine": (15, 10, 0)},
        {**both(shoulder=(90, 0, 10), elbow=(10, 0, 0), forearm=(0, 60, 0), hip=(15, 0, 3)),
         "spine": (20, 0, 0)},
    ], hands=(OPEN, OPEN)),
    "reach_up": Archetype([
        {**both(ankle=(25, 0, 0), toes=(-40, 0, 0)), "shoulder.R": (170, 0, 15),
         "elbow.R": (5, 0, 0), "clav.R": (0, 0, 20), "spine": (-5, 0, -8)},
        {**both(shoulder=(150, 0, 45), elbow=(15, 0, 0), clav=(0, 0, 15)),
         "spine": (-8, 0, 0)},
    ], hands=(OPEN, OPEN)),
    "reach_side": Archetype([
        {"shoulder.R": (10, 0, 95), "elbow.R": (5, 0, 0), "spine": (0, 0, 10),
         "hip.L": (0, 0, 10), "hip.R": (0, 0, 15), "knee.R": (25, 0, 0)},
        {"shoulder.R": (40, 0, 80), "elbow.R": (15, 0, 0), "spine": (10, 15, 12)},
    ], hands=(OPEN, OPEN)),
    "wave": Archetype([
        {"shoulder.R": (20, -60, 85), "elbow.R": (95, 0, 0), "forearm.R": (0, -20, 0),
         "wrist.R": (-15, 0, 0)},
        {"shoulder.R": (25, -40, 80), "elbow.R": (80, 0, 0), "wrist.R": (-5, 0, 10)},
        {"shoulder.R": (150, 0, 20), "elbow.R": (15, 0, 0), "wrist.R": (0, 0, 10)},
    ], hands=((), ('open', 'spread'))),
    "point": Archetype([
        {"shoulder.R": (80, 0, 25), "elbow.R": (10, 0, 0), "forearm.R": (0, 60, 0)},
        {"shoulder.R": (60, 10, 40), "elbow.R": (25, 0, 0), "forearm.R": (0, 70, 0),
         "spine": (0, 10, 0), "neck": (0, -10, 0)},
    ], hands=((), ('point',))),
    "arms_raised": Archetype([
        both(shoulder=(165, 0, 30), elbow=(10, 0, 0)),
        both(shoulder=(20, 0, 140), elbow=(10, 0, 0)),
        both(shoulder=(10, -70, 90), elbow=(90, 0, 0)),
    ], hands=(('open', 'relaxed', 'spread', 'fist'), ('open', 'relaxed', 'spread', 'fist'))),
    "shrug": Archetype([
        {**both(clav=(0, 0, 20), scap=(0, 0, 10), shoulder=(10, -30, 15), elbow=(90, 0, 0),
         forearm=(0, -70, 0), wrist=(-20, 0, 0)), "neck": (0, 0, 8)},
    ], hands=(OPEN, OPEN)),
    "think": Archetype([
        {"shoulder.R": (40, 45, 10), "elbow.R": (140, 0, 0), "forearm.R": (0, -40, 0),
         "wrist.R": (-10, 0, 0), "shoulder.L": (20, 60, 10), "elbow.L": (95, 0, 0),
         "neck": (10, 0, 5)},
    ]),
    "arms_crossed": Archetype([
        {"shoulder.L": (35, 55, 18), "elbow.L": (115, 0, 0), "shoulder.R": (25, 60, 15),
         "elbow.R": (105, 0, 0)},
    ]),
    "hands_on_hips": Archetype([
        both(shoulder=(-15, 60, 45), elbow=(100, 0, 0), forearm=(0, 50, 0), wrist=(-30, 0, -10)),
        {"shoulder.R": (-15, 60, 45), "elbow.R": (100, 0, 0), "forearm.R": (0, 50, 0),
         "wrist.R": (-30, 0, -10), "hip.L": (5, 0, 8), "knee.L": (10, 0, 0)},
    ]),
    "throw": Archetype([
        {**both(knee=(15, 0, 0)), "shoulder.R": (10, -80, 90), "elbow.R": (90, 0, 0),
         "spine": (0, -25, 0), "shoulder.L": (50, 0, 30), "elbow.L": (20, 0, 0),
         "hip.L": (35, 0, 8), "hip.R": (-10, 0, 8)},
        {"shoulder.R": (110, 10, 40), "elbow.R": (20, 0, 0), "spine": (25, 25, 0),
         "shoulder.L": (0, 30, 20), "elbow.L": (70, 0, 0), "hip.L": (40, 0, 8),
         "knee.L": (35, 0, 0), "hip.R": (-10, 0, 8), "knee.R": (15, 0, 0)},
    ], chain=True, hands=(RELAX, GRIP)),
    "kick": Archetype([
        {**both(shoulder=(10, 0, 45), elbow=(30, 0, 0)), "hip.R": (-25, 0, 5),
         "knee.R": (90, 0, 0), "spine": (-5, 0, 0)},
        {**both(knee=(15, 0, 0)), "hip.R": (80, 0, 5), "ankle.R": (30, 0, 0),
         "spine": (-15, 0, 0), "shoulder.L": (40, 0, 40), "shoulder.R": (10, 0, 50)},
    ], chain=True),
    "boxing": Archetype([
        {**both(shoulder=(30, 20, 20), elbow=(130, 0, 0), forearm=(0, 30, 0),
         knee=(20, 0, 0)), "hip.L": (20, 0, 10), "hip.R": (-5, 0, 12),
         "ankle.R": (15, 0, 0), "spine": (10, 15, 0), "neck": (-5, -10, 0)},
        {"shoulder.L": (85, 50, 10), "elbow.L": (10, 0, 0), "forearm.L": (0, 70, 0),
         "shoulder.R": (30, 20, 20), "elbow.R": (130, 0, 0), "hip.L": (25, 0, 10),
         "knee.L": (25, 0, 0), "hip.R": (-5, 0, 12), "knee.R": (15, 0, 0),
         "spine": (10, 25, 0), "neck": (-5, -15, 0)},
    ], hands=(FIST, FIST)),
    "tennis": Archetype([
        {**both(elbow=(30, 0, 0), hip=(20, 0, 15), knee=(20, 0, 0)), "spine": (5, -40, 0),
         "shoulder.R": (10, -30, 60), "shoulder.L": (50, 30, 20)},
        {**both(elbow=(60, 0, 0), hip=(20, 0, 15), knee=(20, 0, 0)), "spine": (10, 35, 0),
         "shoulder.R": (100, 40, 30), "shoulder.L": (0, 20, 30)},
    ], chain=True, hands=(RELAX, ('power_grip',))),
    "yoga_tree": Archetype([
        {**both(shoulder=(25, 65, 25), elbow=(115, 0, 0), wrist=(-70, 0, 0)),
         "hip.R": (45, -45, 50), "knee.R": (140, 0, 0), "ankle.R": (20, 0, 0)},
        {**both(shoulder=(170, 0, 10), elbow=(10, 0, 0)), "hip.R": (45, -45, 50),
         "knee.R": (140, 0, 0), "ankle.R": (20, 0, 0)},
    ], hands=(OPEN, OPEN)),
    "yoga_warrior": Archetype([
        {**both(shoulder=(0, 0, 90), elbow=(0, 0, 0)), "hip.L": (10, -45, 60),
         "knee.L": (90, 0, 0), "hip.R": (0, 10, 35), "neck": (0, 70, 0)},
    ], hands=(OPEN, OPEN)),
    "jump": Archetype([
        {**both(hip=(60, 0, 8), knee=(70, 0, 0), ankle=(-20, 0, 0), shoulder=(-40, 0, 15),
         elbow=(10, 0, 0)), "spine": (30, 0, 0), "neck": (-20, 0, 0)},
        both(hip=(70, 0, 10), knee=(90, 0, 0), ankle=(30, 0, 0), shoulder=(150, 0, 25),
             elbow=(20, 0, 0)),
        both(hip=(0, 0, 35), knee=(5, 0, 0), ankle=(30, 0, 0), shoulder=(0, 0, 150),
             elbow=(5, 0, 0)),
    ], chain=True, hands=(OPEN, OPEN)),
}
# fmt: on


class BodyPosePrior:
    """The archetypes as tensors, and the sampling of body joint angles from them.

    Args:
        limits: the skeleton's :class:`JointLimits`.
        archetypes: name -> :class:`Archetype` (default :data:`ARCHETYPES`).
        noise: std of the per-angle Gaussian perturbation, as a fraction of its range (ranges
            wider than ``max_span_deg`` count as that: a shoulder is not perturbed 8 deg).
        blend_prob: probability of blending towards a keyframe of another archetype.
    """

    def __init__(
        self,
        limits: JointLimits,
        archetypes: dict[str, Archetype] | None = None,
        noise: float = 0.04,
        blend_prob: float = 0.1,
        max_span_deg: float = 100.0,
    ) -> None:
        self.limits = limits
        self.archetypes = dict(archetypes or ARCHETYPES)
        self.names = list(self.archetypes)
        self.noise, self.blend_prob, self.max_span_deg = noise, blend_prob, max_span_deg
        n_bones = len(limits.bone_names) - 1
        base, _ = self._angles(BASE, n_bones)
        frames, first, count, chain = [], [], [], []
        for arch in self.archetypes.values():
            first.append(len(frames))
            count.append(len(arch.keyframes))
            chain.append(arch.chain)
            for kf in arch.keyframes:
                values, mask = self._angles(kf, n_bones)
                frames.append(torch.where(mask, values, base))
        self.keyframes = torch.stack(frames)  # (F, J-1, 3) radians
        self.first, self.count = torch.tensor(first), torch.tensor(count)
        self.chain = torch.tensor(chain)
        self.weights = torch.tensor([a.weight for a in self.archetypes.values()])
        body = [not n.startswith(("finger", "metacarpal", "eye")) for n in limits.bone_names[1:]]
        self.body_mask = torch.tensor(body)  # (J-1,) bones this prior moves

    def _angles(self, kf: dict[str, Angles], n_bones: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Angles (J-1, 3) radians of a keyframe and the mask (J-1, 3) of those it sets."""
        values, mask = torch.zeros(n_bones, 3), torch.zeros(n_bones, 3, dtype=torch.bool)
        for bone, (v, m) in expand(kf).items():
            if bone not in self.limits.index:
                raise KeyError(f"unknown bone {bone!r} in a keyframe")
            values[self.limits.index[bone]] = torch.tensor(v) * math.pi / 180
            mask[self.limits.index[bone]] = torch.tensor(m)
        return values, mask

    def sample(
        self, n: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """Body joint angles (n, J-1, 3) radians (left-side convention, not mirrored, clamped),
        archetype names, and the archetype indices (n,)."""
        g = generator
        arch = torch.multinomial(self.weights, n, replacement=True, generator=g)
        cnt, first = self.count[arch], self.first[arch]
        i = (torch.rand(n, generator=g) * cnt).long().clamp(max=cnt - 1)
        j_any = (torch.rand(n, generator=g) * cnt).long().clamp(max=cnt - 1)
        j = torch.where(self.chain[arch], (i + 1) % cnt, j_any)
        t = torch.rand(n, 1, 1, generator=g)
        angles = (1 - t) * self.keyframes[first + i] + t * self.keyframes[first + j]
        # blend towards another archetype's keyframe now and then
        other = torch.multinomial(self.weights, n, replacement=True, generator=g)
        k = (torch.rand(n, generator=g) * self.count[other]).long().clamp(max=self.count[other] - 1)
        s = 0.4 * torch.rand(n, 1, 1, generator=g)
        s = s * (torch.rand(n, 1, 1, generator=g) < self.blend_prob)
        angles = (1 - s) * angles + s * self.keyframes[self.first[other] + k]
        span = (self.limits.upper - self.limits.lower).clamp(max=math.radians(self.max_span_deg))
        span = span * self.body_mask[:, None]
        angles = angles + self.noise * span * torch.randn(angles.shape, generator=g)
        names = [
            self.names[a] + (f"+{self.names[o]}" if b > 0 else "")
            for a, o, b in zip(arch.tolist(), other.tolist(), s.flatten().tolist(), strict=True)
        ]
        return self.limits.clamp_angles(angles), names, arch


def sample_body_pose(
    n: int, generator: torch.Generator, limits: JointLimits | None = None
) -> tuple[torch.Tensor, list[str]]:
    """Sample body poses: archetype, interpolation, perturbation, mirroring, clamping.

    Fingers and eyes stay in the reference pose (see :class:`fullcap.synth.samplers.ParamSampler`
    for whole-body samples with hands, face and gaze).

    Returns:
        pose (n, J-1, 3, 3) rotations in world axes of the reference pose, within the limits;
        archetype names (with "+other" when blended, "~" when mirrored).
    """
    limits = limits or default_limits()
    prior = BodyPosePrior(limits)
    angles, names, _ = prior.sample(n, generator)
    pose = limits.angles_to_pose(angles)
    flip = torch.rand(n, generator=generator) < 0.5
    pose = torch.where(flip[:, None, None, None], limits.mirror(pose), pose)
    names = [nm + ("~" if f else "") for nm, f in zip(names, flip.tolist(), strict=True)]
    return limits.clamp(pose), names
