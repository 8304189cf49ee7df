"""Parameter samplers of the synthetic data engine: shape, body and hand pose, expression,
gaze, head pose and global orientation of one person per sample.

Everything is drawn from one ``torch.Generator`` in a fixed order, so the same seed gives the
same tensors (CPU, float32). Poses follow :mod:`fullcap.bodymodel.lbs` (world axes of the
reference pose; model frame: metres, Z up, -Y forward, +X the person's left).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import roma
import torch

from fullcap.synth.collisions import CapsuleCollider
from fullcap.synth.hands import HandPosePrior
from fullcap.synth.joint_limits import JointLimits, rotation_between
from fullcap.synth.poses import BodyPosePrior

logger = logging.getLogger(__name__)

__all__ = [
    "ARKIT_NAMES",
    "ExpressionStyle",
    "ParamSampler",
    "SampleParams",
    "remove_yaw",
    "sample_expression",
    "visible_action_names",
]

# fmt: off
_ARKIT_BASES = [
    ("browDown", True), ("browInnerUp", False), ("browOuterUp", True), ("cheekPuff", False),
    ("cheekSquint", True), ("eyeBlink", True), ("eyeLookDown", True), ("eyeLookIn", True),
    ("eyeLookOut", True), ("eyeLookUp", True), ("eyeSquint", True), ("eyeWide", True),
    ("jawForward", False), ("jawLeft", False), ("jawOpen", False), ("jawRight", False),
    ("mouthClose", False), ("mouthDimple", True), ("mouthFrown", True), ("mouthFunnel", False),
    ("mouthLeft", False), ("mouthLowerDown", True), ("mouthPress", True), ("mouthPucker", False),
    ("mouthRight", False), ("mouthRollLower", False), ("mouthRollUpper", False),
    ("mouthShrugLower", False), ("mouthShrugUpper", False), ("mouthSmile", True),
    ("mouthStretch", True), ("mouthUpperUp", True), ("noseSneer", True), ("tongueOut", False),
]
_PAIRED = ["browDown", "browOuterUp", "cheekSquint", "eyeSquint", "eyeWide", "mouthDimple",
           "mouthFrown", "mouthLowerDown", "mouthPress", "mouthSmile", "mouthStretch",
           "mouthUpperUp", "noseSneer"]
_CENTRE = ["browInnerUp", "cheekPuff", "jawForward", "jawOpen", "mouthFunnel", "mouthPucker",
           "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthClose",
           "tongueOut"]
# fmt: on
ARKIT_NAMES = [
    base + side
    for base, paired in _ARKIT_BASES
    for side in (("Left", "Right") if paired else ("",))
]
"""The 52 ARKit blendshape names, in the body model's (alphabetical) order."""

# composite actions: name -> ({centre or paired base name: weight}, sampling weight)
_COMPOSITE: dict[str, tuple[dict[str, float], float]] = {
    "joy": ({"mouthSmile": 0.9, "cheekSquint": 0.5, "eyeSquint": 0.3, "jawOpen": 0.15}, 3.0),
    "surprise": ({"browInnerUp": 0.8, "browOuterUp": 0.8, "eyeWide": 0.7, "jawOpen": 0.35}, 1.5),
    "anger": ({"browDown": 0.9, "noseSneer": 0.4, "mouthPress": 0.5, "eyeSquint": 0.3}, 1.5),
    "sadness": ({"browInnerUp": 0.8, "mouthFrown": 0.7, "mouthShrugLower": 0.3}, 1.5),
    "disgust": ({"noseSneer": 0.8, "mouthUpperUp": 0.6, "browDown": 0.3}, 1.0),
    "fear": ({"browInnerUp": 0.7, "eyeWide": 0.8, "mouthStretch": 0.5, "jawOpen": 0.2}, 1.0),
    "talk_a": ({"jawOpen": 0.5, "mouthLowerDown": 0.3}, 1.5),
    "talk_o": ({"jawOpen": 0.3, "mouthFunnel": 0.6}, 1.0),
    "talk_u": ({"mouthPucker": 0.7, "jawOpen": 0.05}, 1.0),
}
_ONE_SIDED = [("jawLeft", "jawRight"), ("mouthLeft", "mouthRight")]  # never both
# Actions that change a 64-pixel face crop clearly at intensity >= 0.4 (the rest move a few
# vertices by a millimetre or two, or hide inside the mouth): what an expression-focused
# source draws, with these sampling weights (jaw, smile and brows most, as in speech and
# emotion; composites by their name in _COMPOSITE, one-sided pairs by their left name).
VISIBLE_ACTIONS: dict[str, float] = {
    "jawOpen": 6.0, "mouthSmile": 4.0, "browInnerUp": 2.0, "browDown": 2.0,
    "browOuterUp": 1.5, "eyeWide": 1.5, "eyeSquint": 1.0, "mouthFrown": 1.5,
    "mouthPucker": 2.0, "mouthFunnel": 2.0, "mouthStretch": 1.5, "mouthPress": 1.0,
    "mouthUpperUp": 1.0, "mouthLowerDown": 1.0, "mouthRollLower": 1.0, "cheekPuff": 1.0,
    "noseSneer": 1.0, "cheekSquint": 1.0, "mouthLeft": 1.0, "jawLeft": 0.7,
    "joy": 3.0, "surprise": 2.0, "anger": 1.5, "sadness": 1.5, "disgust": 1.0, "fear": 1.0,
    "talk_a": 2.0, "talk_o": 1.5, "talk_u": 1.5,
}  # fmt: skip


def visible_action_names() -> list[str]:
    """The ARKit names (both sides of pairs) of :data:`VISIBLE_ACTIONS`' single actions and
    the blinks: the actions an expression metric should be judged on."""
    paired = set(_PAIRED) | {"eyeBlink"}
    bases = [b for b in VISIBLE_ACTIONS if b not in _COMPOSITE] + ["eyeBlink"]
    out = [n for b in bases for n in ((b + "Left", b + "Right") if b in paired else (b,))]
    out += [right for left, right in _ONE_SIDED if left in VISIBLE_ACTIONS]
    return [n for n in ARKIT_NAMES if n in out]


@dataclass(frozen=True)
class ExpressionStyle:
    """How a source draws facial expressions (:func:`sample_expression`).

    The default is the broad mix every body source uses: 1-5 of all actions, often subtle.
    ``visible_only`` restricts the draw to :data:`VISIBLE_ACTIONS` (an expression-focused
    source for FaceNet: with 1-5 of 52 actions at random most crops show nothing a 64-pixel
    crop can resolve, and the network never learns the actions that do show).
    """

    neutral_prob: float = 0.2
    max_actions: int = 5
    level: tuple[float, float] = (0.25, 1.0)  # intensity range of each drawn action
    blink_prob: float = 0.10  # both eyes; one eye (a wink) 0.3 x this on top
    visible_only: bool = False

    def __post_init__(self) -> None:
        lo, hi = self.level
        if not (0.0 <= self.neutral_prob <= 1.0 and 0.0 <= self.blink_prob <= 1.0):
            raise ValueError("ExpressionStyle: probabilities must be in [0, 1]")
        if self.max_actions < 1 or not 0.0 <= lo <= hi <= 1.0:
            raise ValueError("ExpressionStyle: max_actions >= 1 and 0 <= level[0] <= level[1] <= 1")


def _action_tables(names: list[str], visible_only: bool = False):
    """Action matrices: centre (A, E), left (A, E), right (A, E), one-sided (A,), weight (A,)."""
    col = {n: i for i, n in enumerate(names)}
    rows: list[tuple[dict[str, float], dict[str, float], dict[str, float], bool, float]] = []

    def weight(key: str, default: float) -> float:
        return VISIBLE_ACTIONS.get(key, 0.0) if visible_only else default

    for base in _PAIRED:
        rows.append(({}, {base + "Left": 1.0}, {base + "Right": 1.0}, False, weight(base, 1.0)))
    for base in _CENTRE:
        w = weight(base, 0.3 if base == "tongueOut" else 1.0)
        rows.append(({base: 1.0}, {}, {}, False, w))
    for left, right in _ONE_SIDED:
        rows.append(({}, {left: 1.0}, {right: 1.0}, True, weight(left, 0.7)))
    for key, (parts, w) in _COMPOSITE.items():
        c = {k: v for k, v in parts.items() if k in col}
        lft = {k + "Left": v for k, v in parts.items() if k not in col}
        rgt = {k + "Right": v for k, v in parts.items() if k not in col}
        rows.append((c, lft, rgt, False, weight(key, w)))
    mats = torch.zeros(3, len(rows), len(names))
    for a, row in enumerate(rows):
        for m in range(3):
            for k, w in row[m].items():
                mats[m, a, col[k]] = w
    one_sided = torch.tensor([r[3] for r in rows])
    weights = torch.tensor([r[4] for r in rows])
    return mats[0], mats[1], mats[2], one_sided, weights


def sample_expression(
    n: int,
    generator: torch.Generator,
    names: list[str] | None = None,
    style: ExpressionStyle | None = None,
) -> torch.Tensor:
    """Sparse ARKit expressions (n, 52) in [0, 1], columns in ``names`` order (default
    :data:`ARKIT_NAMES`, the body model's order).

    With the default :class:`ExpressionStyle`: neutral with probability 0.2, else 1..5 actions
    (single blendshapes, left/right pairs moved together 80 % of the time, or composites such
    as joy or talking) with intensities U(0.25, 1), combined by maximum. jawLeft/jawRight and
    mouthLeft/mouthRight are never both set; mouthClose <= jawOpen; tongueOut opens the jaw.
    Eye blinks (both eyes 10 %, one eye 3 %) come on top; eyeLook* stay 0 (gaze sets them).
    """
    names = list(names or ARKIT_NAMES)
    style = style or ExpressionStyle()
    g = generator
    centre, left, right, one_sided, weights = _action_tables(names, style.visible_only)
    k = min(style.max_actions, int((weights > 0).sum()))
    count = torch.randint(1, k + 1, (n,), generator=g)
    count = torch.where(torch.rand(n, generator=g) < style.neutral_prob, 0, count)
    actions = torch.multinomial(weights.expand(n, -1), k, replacement=False, generator=g)
    active = torch.arange(k)[None] < count[:, None]  # (n, k)
    lo, hi = style.level
    level = lo + (hi - lo) * torch.rand(n, k, generator=g)
    # side multipliers: symmetric (+-10 %) or one side weaker; one-sided actions pick a side
    sym = torch.rand(n, k, generator=g) < 0.8
    weak = 0.4 * torch.rand(n, k, generator=g)
    left_first = torch.rand(n, k, generator=g) < 0.5
    jitter = 1 + 0.1 * torch.randn(n, k, 2, generator=g)
    ml = torch.where(sym, jitter[..., 0], torch.where(left_first, 1.0, weak))
    mr = torch.where(sym, jitter[..., 1], torch.where(left_first, weak, 1.0))
    solo = one_sided[actions]
    ml = torch.where(solo, left_first.float(), ml)
    mr = torch.where(solo, (~left_first).float(), mr)
    contrib = level[..., None] * (
        centre[actions] + ml[..., None] * left[actions] + mr[..., None] * right[actions]
    )
    expr = (contrib * active[..., None]).amax(dim=1).clamp(0, 1)
    col = {nm: i for i, nm in enumerate(names)}
    if "tongueOut" in col and "jawOpen" in col:
        expr[:, col["jawOpen"]] = torch.maximum(
            expr[:, col["jawOpen"]], 0.6 * expr[:, col["tongueOut"]]
        )
    if "mouthClose" in col and "jawOpen" in col:
        expr[:, col["mouthClose"]] = torch.minimum(
            expr[:, col["mouthClose"]], expr[:, col["jawOpen"]]
        )
    # blinks
    u = torch.rand(n, generator=g)
    amount = 0.5 + 0.5 * torch.rand(n, generator=g)
    wink_left = torch.rand(n, generator=g) < 0.5
    for side, wink in (("Left", wink_left), ("Right", ~wink_left)):
        on = (u < style.blink_prob) | ((u < 1.3 * style.blink_prob) & wink)
        if f"eyeBlink{side}" in col:
            expr[:, col[f"eyeBlink{side}"]] = torch.where(
                on, amount, expr[:, col[f"eyeBlink{side}"]]
            )
        if f"eyeWide{side}" in col:
            expr[:, col[f"eyeWide{side}"]] = torch.where(on, 0.0, expr[:, col[f"eyeWide{side}"]])
    return expr


# ---------------------------------------------------------------------- orientation
def _axis_rotation(angle: torch.Tensor, axis: int) -> torch.Tensor:
    """Rotations (n, 3, 3) by ``angle`` (n,) radians about world axis 0, 1 or 2."""
    rotvec = torch.zeros(*angle.shape, 3, dtype=angle.dtype, device=angle.device)
    rotvec[..., axis] = angle
    return roma.rotvec_to_rotmat(rotvec)


def remove_yaw(global_orient: torch.Tensor) -> torch.Tensor:
    """Global orientations (n, 3, 3) turned about Z so that the person faces -Y again
    (the heading removed, pitch and roll kept)."""
    fwd = global_orient[..., :, 1] * -1  # where the model's -Y (forward) points
    heading = torch.atan2(fwd[..., 0], -fwd[..., 1])
    return _axis_rotation(-heading, 2) @ global_orient


def sample_global_orient(
    n: int, generator: torch.Generator, pitch_deg: float = 4.0, roll_deg: float = 3.0
) -> torch.Tensor:
    """Upright orientations (n, 3, 3): uniform heading about Z, small Gaussian pitch (about X)
    and roll (about the forward axis), each clipped to 2.5 sigma."""
    g = generator
    yaw = (2 * torch.rand(n, generator=g) - 1) * math.pi
    pitch = math.radians(pitch_deg) * torch.randn(n, generator=g).clamp(-2.5, 2.5)
    roll = math.radians(roll_deg) * torch.randn(n, generator=g).clamp(-2.5, 2.5)
    return _axis_rotation(yaw, 2) @ _axis_rotation(pitch, 0) @ _axis_rotation(roll, 1)


# ---------------------------------------------------------------------- results
@dataclass
class SampleParams:
    """Parameters of n sampled people (CPU float32), ready for ``BodyModel.forward``.

    betas: (n, K) shape coefficients.
    pose: (n, J-1, 3, 3) bone rotations, world axes of the reference pose, within the limits.
    global_orient: (n, 3, 3) root rotation: random heading, small pitch and roll.
    expression: (n, 52) ARKit facial actions in [0, 1] (eyeLook* consistent with the gaze).
    archetype: n body archetype names ("+other" when blended with another archetype).
    hand_archetype: n (left, right) hand shape names.
    """

    betas: torch.Tensor
    pose: torch.Tensor
    global_orient: torch.Tensor
    expression: torch.Tensor
    archetype: list[str]
    hand_archetype: list[tuple[str, str]]

    def __len__(self) -> int:
        return self.betas.shape[0]


# ---------------------------------------------------------------------- sampler
class ParamSampler:
    """Samples all body-model parameters of synthetic people.

    Args:
        model: the :class:`fullcap.bodymodel.model.BodyModel` whose skeleton is posed.
        adult_fraction: fraction of shapes from the "adult" prior; the rest use "full"
            (children to old age).
        reject_intersections: resample poses that the capsule test finds self-intersecting.
        max_rounds: resampling rounds before keeping what remains (logged).
        head_std_deg: std of the extra (flex, twist, side) of the neck and head, degrees.
        expression: how expressions are drawn (default: :class:`ExpressionStyle`).
    """

    def __init__(
        self,
        model,
        adult_fraction: float = 0.85,
        reject_intersections: bool = True,
        max_rounds: int = 8,
        head_std_deg: tuple[float, float, float] = (8.0, 20.0, 6.0),
        expression: ExpressionStyle | None = None,
    ) -> None:
        if not 0.0 <= adult_fraction <= 1.0:
            raise ValueError(f"adult_fraction must be in [0, 1], got {adult_fraction}")
        self.model = model
        self.adult_fraction = adult_fraction
        self.expression_style = expression or ExpressionStyle()
        self.reject_intersections = reject_intersections
        self.max_rounds = max_rounds
        self.limits = JointLimits.from_model(model)
        self.body = BodyPosePrior(self.limits)
        self.hands = HandPosePrior(self.limits)
        self.collider = CapsuleCollider(model) if reject_intersections else None
        self.hand_bones = {s: self.hands.bone_indices(s) for s in ("L", "R")}
        idx = self.limits.index
        self.neck_bones = [idx[b] for b in ("neck01", "neck02", "neck03", "head")]
        self.neck_share = torch.tensor([0.3, 0.2, 0.2, 0.3])
        self.head_std = torch.tensor(head_std_deg) * math.pi / 180
        self.eye_bones = [idx["eye.L"], idx["eye.R"]]
        with torch.no_grad():
            ref = model(return_vertices=False).joints[0].detach().to("cpu", torch.float32)
        names = model.bone_names
        self.eye_pos = ref[[names.index("eye.L"), names.index("eye.R")]]  # (2, 3) reference
        self.eye_dir = self.limits.frames[self.eye_bones, :, 1]  # (2, 3) rest gaze directions
        self.expression_names = list(model.expression_names)
        self.stats = {"sampled": 0, "rejected": 0}

    # -- pieces
    def _betas(self, n: int, g: torch.Generator) -> torch.Tensor:
        adult = torch.rand(n, generator=g) < self.adult_fraction
        b_adult = self.model.sample_betas(n, "adult", generator=g).cpu()
        b_full = self.model.sample_betas(n, "full", generator=g).cpu()
        return torch.where(adult[:, None], b_adult, b_full).float()

    def _pose(self, n: int, g: torch.Generator):
        """Body with hands and head, mirrored half of the time; eyes at rest."""
        angles, names, arch = self.body.sample(n, g)
        allowed = [self.body.archetypes[self.body.names[a]].hands for a in arch.tolist()]
        hands = []
        for k, side in enumerate(("L", "R")):
            a, hn = self.hands.sample(n, g, [al[k] for al in allowed])
            angles[:, self.hand_bones[side]] = a
            hands.append(hn)
        head = (self.head_std * torch.randn(n, 3, generator=g)).clamp(
            -2 * self.head_std, 2 * self.head_std
        )
        angles[:, self.neck_bones] += self.neck_share[:, None] * head[:, None, :]
        pose = self.limits.angles_to_pose(self.limits.clamp_angles(angles))
        flip = torch.rand(n, generator=g) < 0.5
        pose = torch.where(flip[:, None, None, None], self.limits.mirror(pose), pose)
        hand_names = [
            (right, left) if f else (left, right)
            for left, right, f in zip(hands[0], hands[1], flip.tolist(), strict=True)
        ]
        return pose, names, hand_names

    def _gaze(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Eye rotations (n, 2, 3, 3) looking at one point, and eye (yaw, pitch) (n, 2, 2).

        The target lies 0.4-4 m (log-uniform) in front of the eyes in the head's reference
        frame, its direction N(0, 12 deg) in yaw and N(-3, 8 deg) in pitch (clipped to +-25 and
        +-20 deg); yaw > 0 looks to the person's left, pitch > 0 up.
        """
        dist = torch.exp(math.log(0.4) + math.log(10.0) * torch.rand(n, generator=g))
        yaw = torch.deg2rad((12 * torch.randn(n, generator=g)).clamp(-25, 25))
        pitch = torch.deg2rad((-3 + 8 * torch.randn(n, generator=g)).clamp(-20, 20))
        direction = torch.stack(
            [
                torch.sin(yaw) * torch.cos(pitch),
                -torch.cos(yaw) * torch.cos(pitch),
                torch.sin(pitch),
            ],
            dim=-1,
        )
        target = self.eye_pos.mean(0) + dist[:, None] * direction  # (n, 3)
        look = target[:, None] - self.eye_pos[None]  # (n, 2, 3)
        look = look / look.norm(dim=-1, keepdim=True)
        rot = rotation_between(self.eye_dir.expand(n, 2, 3), look)
        eye_yaw = torch.atan2(look[..., 0], -look[..., 1])
        eye_pitch = torch.atan2(look[..., 2], look[..., :2].norm(dim=-1))
        return rot, torch.stack([eye_yaw, eye_pitch], dim=-1)

    def _eye_expression(self, expr: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """Set eyeLook* (n, 52) from eye (yaw, pitch) (n, 2, 2): |angle| / 30 deg, in [0, 1]."""
        col = {nm: i for i, nm in enumerate(self.expression_names)}
        scale = math.radians(30)
        for e, side in enumerate(("Left", "Right")):
            yaw, pitch = angles[:, e, 0], angles[:, e, 1]
            # yaw > 0 looks to the person's left: outwards for the left eye, inwards for the right
            outward = yaw if side == "Left" else -yaw
            values = {
                f"eyeLookOut{side}": outward, f"eyeLookIn{side}": -outward,
                f"eyeLookUp{side}": pitch, f"eyeLookDown{side}": -pitch,
            }  # fmt: skip
            for nm, v in values.items():
                if nm in col:
                    expr[:, col[nm]] = (v / scale).clamp(0, 1)
        return expr

    # -- public
    def sample(self, n: int, generator: torch.Generator) -> SampleParams:
        """Sample ``n`` people; deterministic given the generator's state."""
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        g = generator
        betas = self._betas(n, g)
        pose, names, hand_names = self._pose(n, g)
        todo = torch.arange(n)
        rounds = 0
        while self.collider is not None and len(todo) and rounds < self.max_rounds:
            dev, dt = self.model.device, self.model.dtype
            with torch.no_grad():
                bad = self.collider.intersects(betas[todo].to(dev, dt), pose[todo].to(dev, dt))
            bad = bad.cpu()
            self.stats["rejected"] += int(bad.sum())
            todo = todo[bad]
            if not len(todo):
                break
            rounds += 1
            p2, n2, h2 = self._pose(len(todo), g)
            pose[todo] = p2
            for k, i in enumerate(todo.tolist()):
                names[i], hand_names[i] = n2[k], h2[k]
        if len(todo) and self.collider is not None:
            logger.debug("%d samples still intersect after %d rounds", len(todo), rounds)
        self.stats["sampled"] += n
        eyes, eye_angles = self._gaze(n, g)
        pose[:, self.eye_bones] = eyes
        pose = self.limits.clamp(pose)
        global_orient = sample_global_orient(n, g)
        expr = sample_expression(n, g, self.expression_names, self.expression_style)
        expr = self._eye_expression(expr, eye_angles)
        return SampleParams(
            betas=betas,
            pose=pose.contiguous(),
            global_orient=global_orient,
            expression=expr,
            archetype=names,
            hand_archetype=hand_names,
        )
