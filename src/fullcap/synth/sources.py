"""Named synthetic sources: each imitates one kind of real training set.

The paper trains DetNet on a mix of datasets that differ in cameras, framing, labelled
keypoints and 3D availability, with a dataset-specific head for each set's extended
keypoints, and tests every single-dataset model on every other dataset. A source here is the
synthetic stand-in for one such dataset: same engine, different camera rig, shot mix,
labelled keypoint sets, 3D availability and appearance/scene style, so the multi-dataset
training and the cross-dataset protocol can be run on synthetic data alone.

Keypoint sets are the body model's (``body33``, ``left_hand``, ``right_hand``, ``face68`` when
the model has it) plus *extended* sets defined here as weighted sums of model keypoints and
mesh landmarks (``mesh:nose``, ``mesh:left_ear``, ``mesh:right_ear``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fullcap.synth.appearance import AppearanceStyle
from fullcap.synth.camera import SHOTS, CameraRig
from fullcap.synth.samplers import ExpressionStyle
from fullcap.synth.scene import SceneStyle

__all__ = ["SOURCES", "ExtendedSet", "SourceConfig", "get_source"]

Anchor = tuple[tuple[str, float], ...]  # ((name, weight), ...); name: body33 name or mesh:*


@dataclass(frozen=True)
class ExtendedSet:
    """A dataset-specific keypoint set: ``names[i]`` is the weighted sum ``anchors[i]`` of
    body33 keypoints (by name) and mesh landmarks (``mesh:...``). Weights sum to 1."""

    name: str
    names: tuple[str, ...]
    anchors: tuple[Anchor, ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.anchors):
            raise ValueError(f"ExtendedSet {self.name}: names and anchors differ in length")
        for n, a in zip(self.names, self.anchors, strict=True):
            if abs(sum(w for _, w in a) - 1) > 1e-6:
                raise ValueError(f"ExtendedSet {self.name}: weights of {n!r} must sum to 1")

    def flip_permutation(self) -> tuple[int, ...]:
        """Index permutation swapping ``left_*`` and ``right_*`` names."""

        from fullcap.skeletons import swap_side

        return tuple(self.names.index(swap_side(n)) for n in self.names)


def _one(name: str) -> Anchor:
    return ((name, 1.0),)


H36M17 = ExtendedSet(
    "h36m17",
    (
        "pelvis",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "spine",
        "thorax",
        "nose",
        "head",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
    ),
    (
        *(
            _one(n)
            for n in (
                "pelvis",
                "right_hip",
                "right_knee",
                "right_ankle",
                "left_hip",
                "left_knee",
                "left_ankle",
            )
        ),
        _one("spine2"),
        (("neck", 0.5), ("spine3", 0.5)),
        _one("mesh:nose"),
        (("head", 0.5), ("head_top", 0.5)),
        *(
            _one(n)
            for n in (
                "left_shoulder",
                "left_elbow",
                "left_wrist",
                "right_shoulder",
                "right_elbow",
                "right_wrist",
            )
        ),
    ),
)
_COCO_BODY = (
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
COCO17 = ExtendedSet(
    "coco17",
    ("nose", "left_eye", "right_eye", "left_ear", "right_ear", *_COCO_BODY),
    (
        _one("mesh:nose"),
        _one("left_eye"),
        _one("right_eye"),
        _one("mesh:left_ear"),
        _one("mesh:right_ear"),
        *(_one(n) for n in _COCO_BODY),
    ),
)
FACE5 = ExtendedSet(
    "face5",
    ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    (
        _one("mesh:nose"),
        _one("left_eye"),
        _one("right_eye"),
        _one("mesh:left_ear"),
        _one("mesh:right_ear"),
    ),
)


@dataclass(frozen=True)
class SourceConfig:
    """One synthetic source.

    keypoint_sets: model sets to label (those the model lacks are skipped).
    extended: extra dataset-specific sets, always labelled.
    has_3d: False stores 2D labels only: no 3D keypoints, model parameters or R, t.
    views_per_subject: consecutive samples ``i`` with equal ``i // views_per_subject`` show
        the same person, pose and lighting from different cameras (multi-view-like).
    shots: (shot, weight) pairs over :data:`fullcap.synth.camera.SHOTS`.
    fixed_backgrounds: if > 0, backgrounds come from this many fixed scenes (one per camera
        of a fixed rig), like a single capture lab.
    """

    name: str
    description: str
    rig: CameraRig
    shots: tuple[tuple[str, float], ...]
    keypoint_sets: tuple[str, ...]
    extended: tuple[ExtendedSet, ...] = ()
    has_3d: bool = True
    views_per_subject: int = 1
    adult_fraction: float = 0.85  # shapes from the adult prior; the rest children to old
    appearance: AppearanceStyle = field(default_factory=AppearanceStyle)
    scene: SceneStyle = field(default_factory=SceneStyle)
    fixed_backgrounds: int = 0
    expression: ExpressionStyle = field(default_factory=ExpressionStyle)

    def __post_init__(self) -> None:
        for s, w in self.shots:
            if s not in SHOTS or w < 0:
                raise ValueError(f"source {self.name}: bad shot {s!r} (shots are {SHOTS})")
        if self.views_per_subject < 1:
            raise ValueError(f"source {self.name}: views_per_subject must be >= 1")
        if not 0.0 <= self.adult_fraction <= 1.0:
            raise ValueError(f"source {self.name}: adult_fraction must be in [0, 1]")


_STUDIO = SceneStyle(
    background_p=(0.1, 0.15, 0.05, 0.1, 0.05, 0.55),
    p_occluder=0.05,
    p_motion_blur=0.03,
    p_noise=0.4,
    p_downscale=0.02,
    jpeg_quality=(80, 95),
)
_WILD = SceneStyle(
    background_p=(0.05, 0.15, 0.35, 0.3, 0.15, 0.0),
    p_occluder=0.4,
    p_motion_blur=0.15,
    p_blur=0.2,
    p_noise=0.6,
    p_downscale=0.2,
    jpeg_quality=(40, 92),
)

_WEBCAM = SceneStyle(
    p_occluder=0.05,
    p_motion_blur=0.03,
    p_blur=0.03,
    p_noise=0.3,
    p_downscale=0.0,
    jpeg_quality=(75, 95),
)

_WEBCAM_FACE = SourceConfig(
    "webcam_face_like",
    "Webcam-style face close-ups for FaceNet's expressions: mostly frontal, sharp, "
    "rarely occluded (face_like's degradations hide most expressions at 64 px)",
    CameraRig(
        kind="free",
        fov_deg=(40.0, 70.0),
        elevation_deg=(-10.0, 20.0),
        roll_deg=8.0,
        fill=(0.55, 0.8),
        p_truncate=0.0,
        face_azimuth_deg=15.0,
    ),
    (("face", 1.0),),
    ("face68",),
    extended=(FACE5,),
    scene=_WEBCAM,
)

SOURCES: dict[str, SourceConfig] = {
    s.name: s
    for s in (
        SourceConfig(
            "mtc_like",
            "Panoptic-dome-like: body and both hands, 3D, 4 synchronised views per subject",
            CameraRig(kind="dome", dome_azimuths=10, dome_elevations=(0.0, 15.0, 30.0)),
            (("body", 0.75), ("upper", 0.25)),
            ("body33", "left_hand", "right_hand"),
            views_per_subject=4,
            scene=_STUDIO,
        ),
        SourceConfig(
            "h36m_like",
            "Human3.6M-like lab: 4 fixed wall cameras, one room, 3D body, h36m17 keypoints",
            CameraRig(
                kind="fixed", volume=1.5, fill=(0.75, 0.9), centre_jitter=0.05, p_truncate=0.0
            ),
            (("body", 1.0),),
            (),
            extended=(H36M17,),
            views_per_subject=4,
            appearance=AppearanceStyle(
                pattern_p=(0.8, 0.1, 0.0, 0.05, 0.05), p_cap=0.0, p_gloves=0.0, p_saturated=0.1
            ),
            scene=SceneStyle(
                background_p=(0, 0, 0, 1, 0, 0),
                p_bg_blur=0.0,
                p_occluder=0.0,
                p_directional=1.0,
                p_motion_blur=0.02,
                jpeg_quality=(85, 95),
            ),
            fixed_backgrounds=4,
        ),
        SourceConfig(
            "humbi_like",
            "HUMBI-like dome: whole body, hand and face close-ups, body33 + hands + face, 3D",
            CameraRig(kind="dome", dome_azimuths=24, dome_elevations=(-10.0, 5.0, 20.0, 35.0)),
            (("body", 0.4), ("upper", 0.1), ("hand", 0.25), ("face", 0.25)),
            ("body33", "left_hand", "right_hand", "face68"),
            views_per_subject=4,
            scene=_STUDIO,
        ),
        SourceConfig(
            "coco_like",
            "COCO-like in-the-wild photos: 2D labels only (coco17), occlusion, kids too",
            CameraRig(kind="free", p_truncate=0.2),
            (("body", 0.55), ("upper", 0.35), ("face", 0.05), ("hand", 0.05)),
            (),
            extended=(COCO17,),
            has_3d=False,
            adult_fraction=0.6,
            scene=_WILD,
        ),
        SourceConfig(
            "hand_like",
            "FreiHAND/STB-like hand close-ups: 21 keypoints per hand, 3D",
            CameraRig(kind="free", fill=(0.55, 0.85), p_truncate=0.05),
            (("hand", 1.0),),
            ("left_hand", "right_hand"),
            appearance=AppearanceStyle(p_gloves=0.02),
            scene=_WILD,
        ),
        SourceConfig(
            "face_like",
            "Face close-ups (300-W-like): 68 landmarks when the model has them, and face5",
            CameraRig(kind="free", fill=(0.55, 0.85), p_truncate=0.05, face_azimuth_deg=30.0),
            (("face", 1.0),),
            ("face68",),
            extended=(FACE5,),
            scene=_WILD,
        ),
        _WEBCAM_FACE,
        replace(
            _WEBCAM_FACE,
            name="expression_face_like",
            description="webcam_face_like with expression-focused faces for FaceNet: 1-2 "
            "clearly visible actions (jaw, smile, brows, lips, eyes) at intensity 0.4-1, "
            "blinks 20 %",
            expression=ExpressionStyle(
                neutral_prob=0.1,
                max_actions=2,
                level=(0.4, 1.0),
                blink_prob=0.2,
                visible_only=True,
            ),
        ),
    )
}


def get_source(source: str | SourceConfig) -> SourceConfig:
    """The source called ``source`` (or ``source`` itself); ValueError naming the choices."""
    if isinstance(source, SourceConfig):
        return source
    if source not in SOURCES:
        raise ValueError(f"source: unknown source {source!r}; choose one of {sorted(SOURCES)}")
    return SOURCES[source]
