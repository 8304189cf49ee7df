"""Results passed between capture stages: frozen dataclasses of numpy arrays.

Frames and units used throughout (see also ``docs/OUTPUTS.md``):
- image pixels: continuous (u, v), origin at the top-left corner of the top-left pixel, u right,
  v down, in the frame as it was given to :meth:`fullcap.capture.Capture.process` (before any
  internal downscaling);
- camera frame: metres, OpenCV axes (x right, y down, z away from the camera);
- model frame: the body model's (metres, Z up, -Y forward, +X the person's left); rotations of
  the model follow :mod:`fullcap.bodymodel.lbs` (``pose[c]`` in world-aligned axes of the
  reference pose), and ``global_orient`` maps the model frame into the camera frame.

Arrays are float32 unless noted. A part that was not found, or whose network is missing, is
``None``, never a placeholder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Keypoints:
    """A named set of keypoints of one part.

    names: (P,) keypoint names (``fullcap.skeletons``: BODY33, HAND21 or FACE68).
    uv: (P, 2) image pixels.
    xyz: (P, 3) camera axes, relative to the part's root (body: metres, pelvis = 0; hand:
        metres relative to ``middle1`` in results, wrist-middle1 lengths in the keypoint stage's
        raw output); None for 2D-only sets (face landmarks).
    conf: (P,) confidence in [0, 1].
    """

    names: tuple[str, ...]
    uv: np.ndarray
    xyz: np.ndarray | None
    conf: np.ndarray

    def __post_init__(self) -> None:
        p = len(self.names)
        if self.uv.shape != (p, 2) or self.conf.shape != (p,):
            raise ValueError(
                f"Keypoints: {p} names need uv (P, 2) and conf (P,), got {self.uv.shape} "
                f"and {self.conf.shape}"
            )
        if self.xyz is not None and self.xyz.shape != (p, 3):
            raise ValueError(f"Keypoints: xyz must be ({p}, 3), got {self.xyz.shape}")


@dataclass(frozen=True)
class PartKeypoints:
    """Raw output of the keypoint stage (DetNet, or a stand-in) for one person box.

    body: BODY33 keypoints, xyz metres, camera axes, relative to the pelvis.
    left_hand / right_hand: HAND21 keypoints of the person's left / right hand, uv in image
        pixels, xyz in camera axes (as seen, not mirrored) relative to ``middle1`` and divided
        by the wrist-middle1 length (DetNet's hand units); None where not estimated.
    face: FACE68 landmarks (uv and conf; xyz None) or None.
    *_box: (4,) x0, y0, x1, y1 image pixels of the crop each part was read from, or None.
    """

    body: Keypoints
    left_hand: Keypoints | None = None
    right_hand: Keypoints | None = None
    face: Keypoints | None = None
    left_hand_box: np.ndarray | None = None
    right_hand_box: np.ndarray | None = None
    face_box: np.ndarray | None = None


@dataclass(frozen=True)
class HandResult:
    """One hand.

    side: "left" or "right" (the person's own).
    bbox: (4,) x0, y0, x1, y1 image pixels of the hand crop.
    keypoints: HAND21; xyz metres, camera axes, relative to ``middle1``.
    length_m: wrist-middle1 length (metres) used to turn DetNet's hand units into metres.
    rotation: (3, 3) world rotation of the ``wrist`` bone (model reference frame -> camera
        axes), from HandIKNet; None without HandIKNet.
    pose: (15, 3, 3) local finger rotations of ``fullcap.models.iknet.HAND_IK_BONES[1:]``
        (``.R`` names become ``.L`` for a left hand), model convention; None without HandIKNet.
    """

    side: str
    bbox: np.ndarray
    keypoints: Keypoints
    length_m: float
    rotation: np.ndarray | None = None
    pose: np.ndarray | None = None


@dataclass(frozen=True)
class FaceResult:
    """The face.

    bbox: (4,) x0, y0, x1, y1 image pixels of the face crop.
    landmarks: FACE68 (uv image pixels, conf); xyz None.
    expression: (E,) ARKit blendshape weights, nominally [0, 1], names ``expression_names``
        (``BodyModel.expression_names``); None without FaceNet.
    albedo: (A,) face model albedo (skin colour) parameters; None without FaceNet.
    illumination: (27,) second-order spherical harmonics, 9 per RGB channel (R's nine, then G's,
        then B's), camera frame; None without FaceNet.
    rotation: (3, 3) head rotation, head frame (X left, Y back, Z up) -> camera; None without
        FaceNet.
    """

    bbox: np.ndarray
    landmarks: Keypoints
    expression: np.ndarray | None = None
    expression_names: tuple[str, ...] = ()
    albedo: np.ndarray | None = None
    illumination: np.ndarray | None = None
    rotation: np.ndarray | None = None


@dataclass(frozen=True)
class ModelParams:
    """Whole-body model parameters (from the IK networks; FaceNet for the expression).

    betas: (K,) shape coefficients (K <= BodyModel.num_betas; the rest are zero).
    global_orient: (3, 3) root rotation, model frame -> camera axes.
    pose: (J-1, 3, 3) rotations of ``BodyModel.bone_names[1:]`` (model convention).
    expression: (E,) ARKit weights or None (no FaceNet).
    transl: (3,) pelvis position, camera frame, metres (from the 2D-3D fit), or None.
    """

    betas: np.ndarray
    global_orient: np.ndarray
    pose: np.ndarray
    expression: np.ndarray | None = None
    transl: np.ndarray | None = None


@dataclass(frozen=True)
class BodyMesh:
    """The posed model in the camera frame (metres): vertices (V, 3), joints (J, 3) bone heads
    in ``BodyModel.bone_names`` order. Not written to frames.jsonl (see result.npz / GLB)."""

    vertices: np.ndarray
    joints: np.ndarray


@dataclass(frozen=True)
class PersonResult:
    """One tracked person.

    id: stable while the person is tracked; a new id after tracking was lost.
    bbox: (4,) x0, y0, x1, y1 image pixels of the person crop.
    score: in [0, 1]: mean body keypoint confidence.
    body: BODY33 keypoints (xyz metres, camera axes, pelvis = 0) or None.
    left_hand, right_hand, face: None when not found or when their network is missing.
    model: whole-body parameters or None (no BodyIKNet / no body model).
    mesh: posed model (camera frame) or None.
    """

    id: int
    bbox: np.ndarray
    score: float
    body: Keypoints | None
    left_hand: HandResult | None = None
    right_hand: HandResult | None = None
    face: FaceResult | None = None
    model: ModelParams | None = None
    mesh: BodyMesh | None = None


@dataclass(frozen=True)
class FrameResult:
    """Everything found in one frame.

    frame: 0-based index in the input; source: file name of the image / video.
    time_s: timestamp in seconds (video container time, or index / nominal rate).
    image_size: (width, height) pixels of the frame as given.
    people: possibly empty.
    missing: networks that are not available (their parts are None), e.g. ("facenet",).
    notes: what was done to the input or the tracking (conversions, downscaling, detector).
    camera: (3, 3) intrinsics used (image pixels), float64.
    """

    frame: int
    source: str
    time_s: float
    image_size: tuple[int, int]
    people: tuple[PersonResult, ...] = ()
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    camera: np.ndarray | None = field(default=None, repr=False)
