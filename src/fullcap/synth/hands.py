"""Hand pose prior: archetypes (open, fist, point, grips, counting, ...) with per-finger noise.

A hand shape gives, in degrees of the ``(flex, twist, side)`` convention of
:mod:`fullcap.synth.joint_limits`, the flexion of each finger's three joints (MCP, PIP, DIP;
DIP ``None``: two thirds of PIP, the usual tendon coupling), the spread of the fingers, the
thumb (CMC flex, twist and side, MCP and IP flex) and the cupping of the palm (the ring and
little metacarpals). Finger flex > 0 closes the hand; spread > 0 fans the fingers out; thumb
CMC side > 0 moves the thumb in front of the palm (opposition), CMC flex > 0 towards the
index. Shapes are written for the left hand and apply to the right hand mirrored (the angle
convention mirrors by itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fullcap.synth.joint_limits import JointLimits

__all__ = ["HAND_SHAPES", "HandPosePrior", "HandShape"]

FINGERS = ("index", "middle", "ring", "pinky")
_FINGER_NO = {"index": 2, "middle": 3, "ring": 4, "pinky": 5}
# spread direction per finger: the index goes towards the thumb, ring and pinky away
_SPREAD_GAIN = {"index": 1.0, "middle": 0.0, "ring": -0.7, "pinky": -1.4}

Curl = tuple[float, float, float | None]  # MCP, PIP, DIP flex in degrees (None: 2/3 PIP)


@dataclass(frozen=True)
class HandShape:
    """One hand archetype; see the module docstring for the conventions (degrees)."""

    index: Curl
    middle: Curl
    ring: Curl
    pinky: Curl
    thumb: tuple[float, float, float, float, float]  # CMC flex, twist, side; MCP flex; IP flex
    spread: float = 0.0
    cup: float = 0.0


def _curl(mcp: float, pip: float, dip: float | None = None) -> Curl:
    return (mcp, pip, dip)


_OPEN, _REST = _curl(0, 0, 0), _curl(15, 20)
_CLOSED = _curl(85, 100, 60)
_THUMB_FOLD = (17, 25, 18, 55, 50)  # thumb over the folded fingers
_THUMB_TIP = (30, 18, 8, 27, 12)  # thumb tip on the index tip (with the index at 40, 45, 25)

# fmt: off
HAND_SHAPES: dict[str, HandShape] = {
    "open": HandShape(_OPEN, _OPEN, _OPEN, _OPEN, (-15, 0, 0, 0, 0), spread=5),
    "relaxed": HandShape(_curl(20, 25), _curl(24, 30), _curl(28, 35), _curl(32, 40),
                         (5, 0, 10, 10, 10), spread=3, cup=3),
    "spread": HandShape(_curl(-5, 0, 0), _OPEN, _OPEN, _curl(-5, 0, 0), (-25, 0, 0, 0, 0),
                        spread=18),
    "fist": HandShape(_CLOSED, _CLOSED, _CLOSED, _CLOSED, _THUMB_FOLD, cup=8),
    "point": HandShape(_curl(0, 5), _CLOSED, _CLOSED, _CLOSED, _THUMB_FOLD, cup=6),
    "pinch": HandShape(_curl(40, 45, 25), _curl(30, 40), _curl(30, 45), _curl(30, 50),
                       _THUMB_TIP, cup=4),
    "power_grip": HandShape(_curl(45, 60, 35), _curl(50, 60, 35), _curl(55, 60, 35),
                            _curl(60, 60, 35), (20, 20, 20, 35, 20), cup=8),
    "precision_grip": HandShape(_curl(45, 35, 20), _curl(45, 35, 20), _curl(40, 40),
                                _curl(40, 45), (25, 15, 10, 25, 10), cup=4),
    "count_1": HandShape(_OPEN, _CLOSED, _CLOSED, _CLOSED, _THUMB_FOLD, cup=6),
    "count_2": HandShape(_OPEN, _OPEN, _CLOSED, _CLOSED, _THUMB_FOLD, spread=8, cup=6),
    "count_3": HandShape(_OPEN, _OPEN, _OPEN, _CLOSED, _THUMB_FOLD, spread=8, cup=4),
    "count_4": HandShape(_OPEN, _OPEN, _OPEN, _OPEN, _THUMB_FOLD, spread=8),
    "count_5": HandShape(_OPEN, _OPEN, _OPEN, _OPEN, (-20, 0, 0, 0, 0), spread=12),
    "thumbs_up": HandShape(_CLOSED, _CLOSED, _CLOSED, _CLOSED, (-10, 0, 15, 0, 0), cup=8),
    "ok": HandShape(_curl(40, 45, 25), _curl(5, 5), _curl(5, 5), _curl(5, 5), _THUMB_TIP,
                    spread=10),
    "claw": HandShape(_curl(10, 70, 60), _curl(10, 70, 60), _curl(10, 70, 60),
                      _curl(10, 70, 60), (0, 0, 20, 30, 40), spread=12),
}
# fmt: on


class HandPosePrior:
    """Hand shapes as tensors, and the sampling of one hand's joint angles from them.

    Args:
        limits: the skeleton's :class:`JointLimits`.
        shapes: name -> :class:`HandShape` (default :data:`HAND_SHAPES`).
        weights: name -> relative frequency (default: relaxed and open more often).
        finger_noise: std (degrees) of a per-finger flexion offset shared by its joints.
        joint_noise: std (degrees) of the independent per-joint flexion noise (twist and
            sideways noise are a quarter and 0.4 of it; the spread of the fingers varies by a
            common 4 deg std).
    """

    def __init__(
        self,
        limits: JointLimits,
        shapes: dict[str, HandShape] | None = None,
        weights: dict[str, float] | None = None,
        finger_noise: float = 6.0,
        joint_noise: float = 4.0,
    ) -> None:
        self.limits = limits
        self.shapes = dict(shapes or HAND_SHAPES)
        self.names = list(self.shapes)
        w = {"relaxed": 4.0, "open": 2.0, "fist": 1.5} | (weights or {})
        self.weights = torch.tensor([w.get(n, 1.0) for n in self.names])
        self.finger_noise, self.joint_noise = finger_noise, joint_noise
        # bone names in a fixed order: 4 fingers x (MCP, PIP, DIP), thumb x 3, metacarpals
        self.bones = [f"finger{_FINGER_NO[f]}-{k}" for f in FINGERS for k in (1, 2, 3)]
        self.bones += [f"finger1-{k}" for k in (1, 2, 3)] + [f"metacarpal{m}" for m in range(1, 5)]
        self.table = torch.stack([self._tensor(s) for s in self.shapes.values()])  # (S, 19, 3)
        self.dip_auto = torch.stack([self._dip_auto(s) for s in self.shapes.values()])  # (S, 4)

    def _tensor(self, s: HandShape) -> torch.Tensor:
        out = torch.zeros(len(self.bones), 3)
        for i, f in enumerate(FINGERS):
            mcp, pip, dip = getattr(s, f)
            out[3 * i, 0], out[3 * i, 2] = mcp, s.spread * _SPREAD_GAIN[f]
            out[3 * i + 1, 0] = pip
            out[3 * i + 2, 0] = dip if dip is not None else 2 / 3 * pip
        cf, ct, cs, mf, if_ = s.thumb
        out[12] = torch.tensor([cf, ct, cs])
        out[13, 0], out[14, 0] = mf, if_
        out[17, 0], out[18, 0] = 0.5 * s.cup, s.cup  # ring, little metacarpals
        return out * math.pi / 180

    def _dip_auto(self, s: HandShape) -> torch.Tensor:
        return torch.tensor([getattr(s, f)[2] is None for f in FINGERS])

    def bone_indices(self, side: str) -> list[int]:
        """Indices into the pose's J-1 bones of this prior's 19 hand bones, side "L" or "R"."""
        return [self.limits.index[f"{b}.{side}"] for b in self.bones]

    def sample(
        self, n: int, generator: torch.Generator, allowed: list[tuple[str, ...]] | None = None
    ) -> tuple[torch.Tensor, list[str]]:
        """Angles (n, 19, 3) radians of the bones :attr:`bones` (left-hand convention, within
        the limits) and shape names. ``allowed[i]``: shape names sample i may take (empty:
        any)."""
        g = generator
        probs = self.weights.expand(n, -1).clone()
        if allowed is not None:
            for i, names in enumerate(allowed):
                if names:
                    mask = torch.tensor([nm in names for nm in self.names])
                    probs[i] = probs[i] * mask
        shape = torch.multinomial(probs, 1, generator=g)[:, 0]
        angles = self.table[shape].clone()  # (n, 19, 3)
        deg = math.pi / 180
        # per-finger curl offset: MCP, PIP (and DIP through the coupling) move together
        curl = self.finger_noise * deg * torch.randn(n, 5, generator=g)
        for i in range(4):
            angles[:, 3 * i, 0] += 0.6 * curl[:, i]
            angles[:, 3 * i + 1, 0] += curl[:, i]
        angles[:, 13:15, 0] += 0.7 * curl[:, 4:5]
        # independent joint noise: full on flexion, small on twist and sideways (fingers that
        # fan independently would cross); a common spread moves all fingers apart or together
        scale = torch.tensor([1.0, 0.25, 0.4]) * self.joint_noise * deg
        noise = scale * torch.randn(n, 19, 3, generator=g)
        spread = 4 * deg * torch.randn(n, generator=g)
        for i, f in enumerate(FINGERS):
            noise[:, 3 * i, 2] += _SPREAD_GAIN[f] * spread
        lo = torch.stack([self.limits.lower[self.limits.index[b + ".L"]] for b in self.bones])
        hi = torch.stack([self.limits.upper[self.limits.index[b + ".L"]] for b in self.bones])
        angles = torch.maximum(torch.minimum(angles + noise, hi), lo)
        # DIP follows PIP (2/3) where the shape says so, with a little independent play
        for i in range(4):
            auto = self.dip_auto[shape, i]
            coupled = 2 / 3 * angles[:, 3 * i + 1, 0] + 0.5 * noise[:, 3 * i + 2, 0]
            angles[:, 3 * i + 2, 0] = torch.where(auto, coupled, angles[:, 3 * i + 2, 0])
        angles = torch.maximum(torch.minimum(angles, hi), lo)
        return angles, [self.names[s] for s in shape.tolist()]
