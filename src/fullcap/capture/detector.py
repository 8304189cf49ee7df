"""Person detection (first frame, and when tracking is lost) and keypoint tracking.

Method §6: an off-the-shelf detector gives the body box on the first frame; every later frame
takes its box from the previous frame's 2D body keypoints, with no detector, until the
keypoints say the person was lost.

Detectors behind :class:`PersonDetector` (``detect(image) -> list[Detection]``):
- :class:`HOGPeopleDetector`: OpenCV's HOG + linear SVM pedestrian detector (Dalal & Triggs
  2005), trained weights inside OpenCV 4.x. OpenCV 5 moved HOG out of its main modules
  (opencv-python-headless 5 ships no person detector, no cascade files and no DNN model), so
  there it raises :class:`DetectorUnavailable`.
- :class:`WholeFrameDetector`: the whole frame as one square box (score 0: no evidence). The
  pipeline then refines it with one more keypoint pass on the box from the keypoints.
- :class:`FallbackDetector`: a detector, and another when the first finds nobody.

When the detector's box shows nobody, the pipeline also tries the whole frame and
:func:`upper_body_boxes`: the frame as the top of a taller box, the framing of a webcam or a
portrait, where the legs are below the picture. DetNet was trained on crops of whole people
(partly cut off), and on a crop filled by a head and torso it finds no confident keypoint.

Boxes are (4,) x0, y0, x1, y1 in image pixels (corner origin).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from fullcap.types import Keypoints

__all__ = [
    "Detection",
    "DetectorUnavailable",
    "FallbackDetector",
    "HOGPeopleDetector",
    "PersonDetector",
    "Tracker",
    "TrackingConfig",
    "WholeFrameDetector",
    "box_from_keypoints",
    "default_detector",
    "keypoint_bounds",
    "square_box",
    "upper_body_boxes",
]

log = logging.getLogger(__name__)


class DetectorUnavailable(RuntimeError):
    """The detector cannot run with the installed packages."""


@dataclass(frozen=True)
class Detection:
    """box: (4,) image pixels; score: [0, 1]; source: which detector (or "tracking")."""

    box: np.ndarray
    score: float
    source: str


class PersonDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[Detection]:
        """People in an (H, W, 3) uint8 RGB image, any order."""
        ...


def square_box(box: np.ndarray, margin: float = 1.0) -> np.ndarray:
    """Square (4,) box with the same centre and side ``margin * max(width, height)``."""
    box = np.asarray(box, dtype=np.float64)
    c = (box[:2] + box[2:]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * margin / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


class WholeFrameDetector:
    """The whole frame: the centred square of side max(W, H), score 0."""

    name = "whole_frame"

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        return [Detection(square_box(np.array([0.0, 0.0, w, h])), 0.0, self.name)]


def upper_body_boxes(width: int, height: int, scales: tuple[float, ...]) -> list[np.ndarray]:
    """Square boxes for a person cut off by the bottom of a ``width`` x ``height`` frame (a
    webcam or portrait framing): side ``s * height`` for each ``s`` of ``scales``, top edge at
    the frame's top, centred horizontally; the crop pads what lies below the frame."""
    boxes = []
    for s in scales:
        side = float(s) * height
        x0 = width / 2 - side / 2
        boxes.append(np.array([x0, 0.0, x0 + side, side]))
    return boxes


class HOGPeopleDetector:
    """OpenCV's default HOG people detector (upright, whole-body pedestrians).

    Args:
        max_side: the image is downscaled to this longest side first (speed), pixels.
        hit_threshold: SVM margin a window must exceed.
        min_score: detections below this score (sigmoid of the SVM margin) are dropped.
    """

    name = "hog"

    def __init__(self, max_side: int = 640, hit_threshold: float = 0.0, min_score: float = 0.3):
        if not hasattr(cv2, "HOGDescriptor"):
            raise DetectorUnavailable(
                f"OpenCV {cv2.__version__} has no HOG people detector (OpenCV 5 moved it out of "
                "its main modules); install opencv-python-headless<5 to use it"
            )
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.max_side, self.hit_threshold, self.min_score = max_side, hit_threshold, min_score

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        small = cv2.resize(image, (round(w * s), round(h * s))) if s < 1 else image
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, weights = self.hog.detectMultiScale(
            gray, hitThreshold=self.hit_threshold, winStride=(8, 8), padding=(8, 8), scale=1.05
        )
        if len(rects) == 0:
            return []
        boxes = [[float(x), float(y), float(bw), float(bh)] for x, y, bw, bh in rects]
        scores = (1 / (1 + np.exp(-np.asarray(weights, dtype=np.float64).ravel()))).tolist()
        keep = cv2.dnn.NMSBoxes(boxes, scores, self.min_score, 0.4)
        out = []
        for i in np.asarray(keep).ravel():
            x, y, bw, bh = boxes[i]
            box = np.array([x, y, x + bw, y + bh]) / s
            out.append(Detection(box, float(scores[i]), self.name))
        return out


class FallbackDetector:
    """``primary``'s detections, or ``fallback``'s when the primary finds nobody."""

    def __init__(self, primary: PersonDetector, fallback: PersonDetector):
        self.primary, self.fallback = primary, fallback
        self.name = f"{primary.name}+{fallback.name}"

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.primary.detect(image) or self.fallback.detect(image)


def default_detector() -> tuple[PersonDetector, str | None]:
    """HOG with a whole-frame fallback where OpenCV has HOG, else the whole frame; and a
    note saying which, when it is not HOG."""
    try:
        return FallbackDetector(HOGPeopleDetector(), WholeFrameDetector()), None
    except DetectorUnavailable as exc:
        return WholeFrameDetector(), f"person detector: whole frame ({exc})"


def box_from_keypoints(
    uv: np.ndarray, conf: np.ndarray, min_conf: float = 0.3, margin: float = 1.3
) -> np.ndarray | None:
    """Square person box around the confident keypoints (uv (P, 2) pixels, conf (P,)), side
    ``margin`` x their extent; None with fewer than 2 such keypoints."""
    box = keypoint_bounds(uv, conf, min_conf)
    return None if box is None else square_box(box, margin)


def keypoint_bounds(uv: np.ndarray, conf: np.ndarray, min_conf: float) -> np.ndarray | None:
    """(4,) x0, y0, x1, y1 of the keypoints with confidence >= ``min_conf`` and finite
    position; None with fewer than 2 such keypoints."""
    ok = (conf >= min_conf) & np.isfinite(uv).all(1)
    if ok.sum() < 2:
        return None
    pts = uv[ok].astype(np.float64)
    return np.concatenate([pts.min(0), pts.max(0)])


@dataclass(frozen=True)
class TrackingConfig:
    """When a keypoint result counts as the person, and how the next box is made.

    min_conf: a keypoint is "found" at this confidence or more.
    min_found: fewer found body keypoints means nobody is there (tracking lost).
    min_mean_conf: lower mean body confidence means nobody is there.
    min_inside: lower fraction of found keypoints inside the box means the box is wrong.
    margin: next box side = margin x the found keypoints' extent.
    detection_margin: a detector's box is enlarged by this before the keypoint pass.
    max_shrink: the next box's side is at least this fraction of the current one (it may grow
        freely). A person's size changes little between frames, but keypoints missed in one
        frame (a raised arm, the legs) shrink the box made from them, the next frame sees less
        of the person, and the box collapses onto a part of the body; 1 allows no shrinking,
        0 any.
    recheck_conf: a tracked frame whose mean body confidence is below this also runs the
        person detector, and the more confident of the two results is kept.
    upper_body_scales: when the detector's box shows nobody, also try the whole frame and
        :func:`upper_body_boxes` of these sizes (x the frame's height) and keep the most
        confident result; a track found that way keeps its box's size and place relative to
        the keypoints (:meth:`Tracker.anchor`). Empty: off.
    """

    min_conf: float = 0.3
    min_found: int = 8
    min_mean_conf: float = 0.25
    min_inside: float = 0.6
    margin: float = 1.3
    detection_margin: float = 1.15
    max_shrink: float = 0.9
    recheck_conf: float = 0.45
    upper_body_scales: tuple[float, ...] = (1.5, 2.0, 2.5)


def assess(body: Keypoints | None, box: np.ndarray, cfg: TrackingConfig) -> str | None:
    """None if ``body`` looks like a person in ``box``, else the reason it does not."""
    if body is None:
        return "no body keypoints"
    found = body.conf >= cfg.min_conf
    if found.sum() < cfg.min_found:
        return f"{int(found.sum())} confident body keypoints (< {cfg.min_found})"
    mean = float(body.conf.mean())
    if mean < cfg.min_mean_conf:
        return f"mean body confidence {mean:.2f} (< {cfg.min_mean_conf})"
    uv = body.uv[found]
    inside = ((uv >= box[:2]) & (uv <= box[2:])).all(1).mean()
    if inside < cfg.min_inside:
        return f"{inside:.0%} of the keypoints inside the box (< {cfg.min_inside:.0%})"
    return None


def choose(detections: list[Detection]) -> tuple[Detection | None, str | None]:
    """The detection to track: the largest box weighted by confidence (area x max(score,
    0.1)); and a note when there were several."""
    if not detections:
        return None, None

    def key(d: Detection) -> float:
        area = max(d.box[2] - d.box[0], 0) * max(d.box[3] - d.box[1], 0)
        return area * max(d.score, 0.1)

    best = max(detections, key=key)
    note = None
    if len(detections) > 1:
        note = (
            f"{len(detections)} people detected; tracking the largest/most confident one "
            f"(box {np.round(best.box).astype(int).tolist()}, score {best.score:.2f})"
        )
    return best, note


class Tracker:
    """Keeps the tracked person's box and id between frames (video mode).

    ``box`` is the box for the next frame (None: run the detector); ``id`` the current
    person's id; a new id starts with every detection that follows a loss.
    """

    def __init__(self, config: TrackingConfig | None = None):
        self.config = config or TrackingConfig()
        self.reset()

    def reset(self) -> None:
        self.box: np.ndarray | None = None
        self.id: int | None = None
        self._next_id = 0
        self.framing: np.ndarray | None = None

    def anchor(self, body: Keypoints, box: np.ndarray) -> None:
        """Keep ``box``'s centre and side relative to the confident keypoints' extent for the
        rest of the track: :meth:`follow` then moves and scales that box with the keypoints
        instead of fitting a box around them (a person cut off by the frame's bottom: a box
        around the visible keypoints would show DetNet only a head and torso)."""
        found = keypoint_bounds(body.uv, body.conf, self.config.min_conf)
        side = 0.0 if found is None else max(found[2] - found[0], found[3] - found[1])
        if side < 1.0:  # too few keypoints to anchor to: the usual boxes around them
            return
        centre = (found[:2] + found[2:]) / 2
        box = np.asarray(box, np.float64)
        self.framing = np.concatenate([((box[:2] + box[2:]) / 2 - centre) / side,
                                       [(box[2] - box[0]) / side]])  # fmt: skip

    def start(self) -> int:
        """A new track begins (after a detection); returns its id."""
        self.id = self._next_id
        self._next_id += 1
        return self.id

    def follow(self, body: Keypoints) -> None:
        """Next frame's box from this frame's body keypoints (shrinking by at most
        ``config.max_shrink`` per frame, about the new box's centre)."""
        cfg = self.config
        box = keypoint_bounds(body.uv, body.conf, cfg.min_conf)
        if box is not None and self.framing is not None:
            side = max(box[2] - box[0], box[3] - box[1], 1.0)
            c = (box[:2] + box[2:]) / 2 + self.framing[:2] * side
            half = self.framing[2] * side / 2
            box = np.concatenate([c - half, c + half])
        elif box is not None:
            box = square_box(box, cfg.margin)
        if box is not None and self.box is not None:
            side, prev = box[2] - box[0], self.box[2] - self.box[0]
            if side < cfg.max_shrink * prev:
                c = (box[:2] + box[2:]) / 2
                half = cfg.max_shrink * prev / 2
                box = np.concatenate([c - half, c + half]).astype(box.dtype)
        self.box = box

    def lose(self) -> None:
        self.box, self.id, self.framing = None, None, None
