"""``Capture``: one RGB frame in, a :class:`fullcap.types.FrameResult` out.

Per frame: validate and convert the frame -> find the person (video: the box from the previous
frame's keypoints; otherwise, or when tracking is lost, the person detector) -> keypoint
stage (DetNet: body, hands, face) -> BodyIKNet on the 33 body keypoints, HandIKNet on each
hand (left hands mirrored) -> hands attached to the body -> face parameters (FaceNet) ->
1€ filter (video mode) -> the posed whole-body model, its translation fitted to the 2D
keypoints through the camera.

A network that is not available leaves its parts ``None`` and is listed in every result's
``missing`` (and logged once); nothing is made up in its place. Only the keypoint stage is
required.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from fullcap.capture.detector import (
    PersonDetector,
    Tracker,
    TrackingConfig,
    WholeFrameDetector,
    assess,
    box_from_keypoints,
    choose,
    default_detector,
    square_box,
    upper_body_boxes,
)
from fullcap.capture.estimators import DetNetEstimator, KeypointEstimator
from fullcap.capture.filters import FilterBank, OneEuroConfig
from fullcap.capture.frames import scale_person, validate_frame
from fullcap.capture.solve import DEFAULT_HAND_LENGTH_M, ModelSolver, default_intrinsics
from fullcap.types import (
    FaceResult,
    FrameResult,
    HandResult,
    Keypoints,
    PartKeypoints,
    PersonResult,
)

__all__ = ["Capture", "FaceEstimator", "MissingComponent", "validate_frame"]

log = logging.getLogger(__name__)
MODES = ("image", "video")
DEFAULT_FILTER = OneEuroConfig()


class MissingComponent(RuntimeError):
    """A network the pipeline cannot run without is not available."""


class FaceEstimator(Protocol):
    """FaceNet's interface: ``facenet(image, face_box, landmarks, K) -> FaceResult`` with the
    expression (ARKit weights), albedo, illumination and head rotation filled in (K: the
    image's intrinsics); :class:`fullcap.capture.face.FaceNetEstimator` is the one shipped."""

    def __call__(
        self, image: np.ndarray, box: np.ndarray, landmarks: Keypoints, K: np.ndarray
    ) -> FaceResult: ...


def _centre_inside(inner: np.ndarray, outer: np.ndarray) -> bool:
    """Whether box ``inner``'s centre lies in box ``outer`` (x0, y0, x1, y1)."""
    c = (inner[:2] + inner[2:]) / 2
    return bool((c >= outer[:2]).all() and (c <= outer[2:]).all())


def _extent(points: np.ndarray) -> float:
    """Diagonal of the points' bounding box (the filter's size scale)."""
    return float(np.linalg.norm(points.max(0) - points.min(0))) or 1.0


@dataclass(frozen=True)
class _Found:
    """A person found by the detector: keypoints, the box they were found in, and whether
    that box is an upper-body framing (:func:`~fullcap.capture.detector.upper_body_boxes`)."""

    parts: PartKeypoints | None
    box: np.ndarray
    upper_body: bool


class Capture:
    """Whole-body capture from RGB frames.

    Args:
        mode: "video" (track the person between frames, 1€ filter) or "image" (each frame on
            its own: detector every frame, no filter).
        device: torch device for the networks and the body model.
        detnet: a DetNet (wrapped in :class:`DetNetEstimator`) or any
            :class:`~fullcap.capture.estimators.KeypointEstimator`. Required.
        body_ik, hand_ik: IKNets or None (missing: no model / no hand rotations).
        facenet: a :class:`FaceEstimator` or None (missing: no expression).
        filter: 1€ parameters for video mode; None disables filtering.
        detector: person detector (default: :func:`fullcap.capture.detector.default_detector`).
        body_model: the body model (default: loaded when an IKNet is given).
        camera: (3, 3) intrinsics in pixels of the frames as given; None: per frame,
            :func:`fullcap.capture.solve.default_intrinsics`, or ``fov_deg``.
        fov_deg: vertical field of view (degrees) for per-frame intrinsics when ``camera`` is
            None (principal point at the image centre).
        tracking: when the person counts as found / lost.
        max_side: frames with a longer side (pixels) are downscaled first (results are given
            in the input's pixels).
        refine_detections: after a detection, run the keypoint stage again on the box made
            from its keypoints (one extra pass on detection frames only).
        part_min_conf: hands and face with a lower mean keypoint confidence are "not found".
        flip_test: for a DetNet given as a network: average its body maps with those of the
            mirrored person crop (better body keypoints, about 6 ms more per frame on the
            project's CPU; see :class:`DetNetEstimator`).
    """

    def __init__(
        self,
        mode: str = "video",
        device: str | torch.device = "cpu",
        detnet: Any = None,
        body_ik: torch.nn.Module | None = None,
        hand_ik: torch.nn.Module | None = None,
        facenet: FaceEstimator | None = None,
        filter: OneEuroConfig | None = DEFAULT_FILTER,
        detector: PersonDetector | None = None,
        body_model: Any = None,
        camera: np.ndarray | None = None,
        fov_deg: float | None = None,
        tracking: TrackingConfig | None = None,
        max_side: int = 4096,
        refine_detections: bool = True,
        part_min_conf: float = 0.2,
        flip_test: bool = False,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be 'image' or 'video', got {mode!r}")
        if detnet is None:
            raise MissingComponent(
                "the keypoint network (DetNet) is required: train it with "
                "`fullcap train detnet --preset lite`, or pass weights with --detnet FILE"
            )
        self.mode, self.device = mode, torch.device(device)
        if isinstance(detnet, torch.nn.Module):
            detnet = DetNetEstimator(detnet.to(self.device), flip_test=flip_test)
        elif flip_test:
            raise ValueError("flip_test applies to a DetNet network; set it on your estimator")
        self.estimator: KeypointEstimator = detnet
        self.notes: list[str] = []
        if detector is None:
            detector, note = default_detector()
            if note:
                self.notes.append(note)
        self.detector = detector
        self.tracking = tracking or TrackingConfig()
        self.tracker = Tracker(self.tracking)
        self.filters = FilterBank(filter) if (filter is not None and mode == "video") else None
        self.camera = None if camera is None else np.asarray(camera, np.float64)
        if self.camera is not None and self.camera.shape != (3, 3):
            raise ValueError(f"camera must be a (3, 3) intrinsics matrix, got {self.camera.shape}")
        if fov_deg is not None and not 0 < fov_deg < 180:
            raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
        self.fov_deg = fov_deg
        self.max_side, self.refine, self.part_min_conf = max_side, refine_detections, part_min_conf
        self.facenet = facenet
        missing = []
        parts = getattr(self.estimator, "parts", ("body", "hands", "face"))
        if "hands" not in parts:
            missing.append("detnet-hands")
        if "face" not in parts:
            missing.append("detnet-face")
        missing += [n for n, c in (("bodyiknet", body_ik), ("handiknet", hand_ik)) if c is None]
        if facenet is None:
            missing.append("facenet")
        self.solver: ModelSolver | None = None
        if body_ik is not None or hand_ik is not None:
            if body_model is None:
                from fullcap.bodymodel.model import BodyModel

                body_model = BodyModel.load(device=self.device)
            for net in (body_ik, hand_ik):
                if net is not None:
                    net.to(self.device).eval()
            self.solver = ModelSolver(body_model.to(self.device), body_ik, hand_ik)
        self.missing = tuple(missing)
        if self.missing:
            log.warning(
                "networks not available: %s; their parts are left empty",
                ", ".join(self.missing),
            )
        self.reset()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_weights(
        cls,
        mode: str = "video",
        device: str | torch.device = "cpu",
        detnet: str | Path | None = "auto",
        body_ik: str | Path | None = "auto",
        hand_ik: str | Path | None = "auto",
        facenet: str | Path | None = "auto",
        **kwargs: Any,
    ) -> Capture:
        """Build from weights files: "auto" = the packaged weights if they exist (else the part
        is missing; packaged weights that are there but corrupt or fail their hash are an
        error), a path = that file (it must exist), None = leave the network out."""
        from fullcap.assets import MissingAsset
        from fullcap.models.weights import load_iknet

        def resolve(value, name, loader):
            if value is None:
                return None
            try:
                return loader(name if value == "auto" else value, device)
            except (MissingAsset, FileNotFoundError):
                if value != "auto":
                    raise
                return None

        from fullcap.capture.face import FaceNetEstimator
        from fullcap.models.weights import load_facenet

        face_net = resolve(facenet, "facenet", load_facenet)
        return cls(
            mode=mode,
            device=device,
            detnet=resolve(detnet, "detnet_lite", load_detnet),
            body_ik=resolve(body_ik, "bodyiknet", load_iknet),
            hand_ik=resolve(hand_ik, "handiknet", load_iknet),
            facenet=None if face_net is None else FaceNetEstimator(face_net),
            **kwargs,
        )

    def reset(self) -> None:
        """Forget the tracked person and the filters' state (start of a new video)."""
        self.tracker.reset()
        if self.filters is not None:
            self.filters.reset()
        self._count = 0
        self._t_prev: float | None = None

    # ------------------------------------------------------------------ per frame
    def process(
        self,
        frame_rgb: np.ndarray,
        timestamp_s: float,
        source: str = "",
        frame_index: int | None = None,
    ) -> FrameResult:
        """Capture one frame.

        Args:
            frame_rgb: (H, W, 3) uint8 RGB (grey, RGBA, 16-bit and [0, 1] float are converted,
                with a note in the result).
            timestamp_s: the frame's time in seconds (video: increasing).
            source: file name reported in the result; frame_index: defaults to a counter.
        """
        rgb, notes = validate_frame(frame_rgb)
        h0, w0 = rgb.shape[:2]
        index = self._count if frame_index is None else int(frame_index)
        self._count += 1
        t = float(timestamp_s)
        if self.mode == "video" and self._t_prev is not None and t <= self._t_prev:
            notes.append("timestamp not after the previous frame's: filters held")
        self._t_prev = t if self._t_prev is None else max(t, self._t_prev)
        s = 1.0
        if max(h0, w0) > self.max_side:
            s = self.max_side / max(h0, w0)
            rgb = cv2.resize(rgb, (round(w0 * s), round(h0 * s)), interpolation=cv2.INTER_AREA)
            notes.append(f"downscaled {w0}x{h0} to {rgb.shape[1]}x{rgb.shape[0]} for processing")
        h, w = rgb.shape[:2]
        if self.camera is not None:
            K = self.camera.copy()
            K[:2] *= s
        elif self.fov_deg is not None:
            from fullcap.render.camera import intrinsics

            K = intrinsics(w, h, self.fov_deg)
        else:
            K = default_intrinsics(w, h)
        people: tuple[PersonResult, ...] = ()
        found = self._find_person(rgb, notes)
        if found is not None:
            parts, box, pid = found
            person = self._solve(rgb, parts, box, pid, t, K)
            people = (scale_person(person, 1 / s) if s != 1.0 else person,)
        K_out = K.copy()
        K_out[:2] /= s
        return FrameResult(
            frame=index,
            source=source,
            time_s=t,
            image_size=(w0, h0),
            people=people,
            missing=self.missing,
            notes=tuple(self.notes + notes),
            camera=K_out,
        )

    def _find_person(
        self, rgb: np.ndarray, notes: list[str]
    ) -> tuple[PartKeypoints, np.ndarray, int] | None:
        cfg, video = self.tracking, self.mode == "video"
        if video and self.tracker.box is not None:
            box = self.tracker.box
            parts = self.estimator(rgb, box)
            reason = assess(None if parts is None else parts.body, box, cfg)
            if reason is None:
                conf = float(parts.body.conf.mean())
                # a weak track may be collapsing onto part of the body: ask the detector too
                # and keep whichever result is more confident (same person, same id)
                found = self._detect(rgb, []) if conf < cfg.recheck_conf else None
                if (
                    found is not None
                    and _centre_inside(found.box, box)  # the same person, not someone else
                    and float(found.parts.body.conf.mean()) > conf
                ):
                    parts, box = found.parts, found.box
                    if found.upper_body:
                        self.tracker.anchor(parts.body, box)
                    notes.append("weak track: re-centred on the person detector's box")
                self.tracker.follow(parts.body)
                return parts, box, self.tracker.id
            notes.append(f"tracking lost ({reason}); running the person detector")
            self.tracker.lose()
            if self.filters is not None:
                self.filters.reset()
        found = self._detect(rgb, notes)
        if found is None:
            return None
        if not video:
            return found.parts, found.box, 0
        pid = self.tracker.start()
        if found.upper_body:
            self.tracker.anchor(found.parts.body, found.box)
        self.tracker.follow(found.parts.body)
        return found.parts, found.box, pid

    def _detect(self, rgb: np.ndarray, notes: list[str]) -> _Found | None:
        """The person detector's best box and the keypoints found in it (refined once on the
        box made from them), or None with a note saying why. When that box shows nobody, the
        whole frame and the upper-body framings (:func:`~fullcap.capture.detector.
        upper_body_boxes`: a webcam or portrait framing) are tried, and the most confident
        result that looks like a person is kept."""
        cfg = self.tracking
        best, note = choose(self.detector.detect(rgb))
        if note:
            notes.append(note)
        if best is None:
            notes.append("no person detected")
            return None
        found, why = self._best_of(
            rgb, [_Found(None, square_box(best.box, cfg.detection_margin), False)]
        )
        if found is None and cfg.upper_body_scales:
            h, w = rgb.shape[:2]
            more = [_Found(None, b, True) for b in upper_body_boxes(w, h, cfg.upper_body_scales)]
            if best.source != WholeFrameDetector.name:
                more.insert(0, _Found(None, WholeFrameDetector().detect(rgb)[0].box, False))
            found, _ = self._best_of(rgb, more)
            if found is not None and found.upper_body:
                notes.append(
                    "person found in an upper-body framing (cut off by the frame's bottom)"
                )
        if found is None:
            notes.append(f"no person found ({why})")
        return found

    def _best_of(self, rgb: np.ndarray, tries: list[_Found]) -> tuple[_Found | None, str | None]:
        """The most confident of ``tries`` (boxes to run the keypoint stage on; the first on
        ties) that looks like a person, refined once on the box made from its keypoints
        (kept when it looks like a person and, if the first did, is at least as confident);
        and why the first box shows nobody (None if it does)."""
        cfg = self.tracking

        def reason(t: _Found) -> str | None:
            return assess(None if t.parts is None else t.parts.body, t.box, cfg)

        tries = [replace(t, parts=self.estimator(rgb, t.box)) for t in tries]
        first_reason = reason(tries[0])
        people = [t for t in tries if reason(t) is None]
        found = max(people, key=lambda t: float(t.parts.body.conf.mean())) if people else tries[0]
        found_reason = None if people else first_reason
        if self.refine and found.parts is not None:
            body = found.parts.body
            tight = box_from_keypoints(body.uv, body.conf, cfg.min_conf, cfg.margin)
            if tight is not None:
                again = _Found(self.estimator(rgb, tight), tight, False)
                if reason(again) is None and (
                    not people or float(again.parts.body.conf.mean()) >= float(body.conf.mean())
                ):
                    found, found_reason = again, None
        return (found if found_reason is None else None), first_reason

    # ------------------------------------------------------------------ parts -> result
    def _filtered(self, name: str, k: Keypoints, t: float) -> Keypoints:
        f = self.filters
        uv = f.points(f"{name}/uv", k.uv, t, _extent(k.uv))
        xyz = None if k.xyz is None else f.points(f"{name}/xyz", k.xyz, t, _extent(k.xyz))
        return replace(k, uv=uv, xyz=xyz)

    def _part(self, k: Keypoints | None) -> Keypoints | None:
        return k if k is not None and float(k.conf.mean()) >= self.part_min_conf else None

    def _solve(
        self,
        rgb: np.ndarray,
        parts: PartKeypoints,
        box: np.ndarray,
        pid: int,
        t: float,
        K: np.ndarray,
    ) -> PersonResult:
        f = self.filters
        body = parts.body
        hands = {"left": self._part(parts.left_hand), "right": self._part(parts.right_hand)}
        face_kp = self._part(parts.face)
        if f is not None:
            body = self._filtered("body", body, t)
            for side, k in hands.items():
                if k is None:
                    f.drop(f"{side}/")  # it starts afresh when it comes back
                else:
                    hands[side] = self._filtered(side, k, t)
            if face_kp is None:
                f.drop("face/")
            else:
                face_kp = replace(
                    face_kp, uv=f.points("face/uv", face_kp.uv, t, _extent(face_kp.uv))
                )
        face = None
        if face_kp is not None:
            fbox = (
                parts.face_box
                if parts.face_box is not None
                else square_box(np.concatenate([face_kp.uv.min(0), face_kp.uv.max(0)]), 1.2)
            )
            face = FaceResult(bbox=np.asarray(fbox, np.float32), landmarks=face_kp)
            if self.facenet is not None:
                face = self.facenet(rgb, fbox, face_kp, K)
                if f is not None and face.expression is not None:
                    e = f.points("face/expression", face.expression[:, None], t)[:, 0]
                    face = replace(face, expression=e)
        solver = self.solver
        hand_rot: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if solver is not None and solver.hand_ik is not None:
            for side, k in hands.items():
                if k is not None and k.xyz is not None:
                    wrist, fingers = solver.hand(k.xyz, side)
                    if f is not None:  # one stream: wrist and fingers together
                        both = np.concatenate([wrist[None], fingers])
                        both = f.rotations(f"{side}/rotations", both, t)
                        wrist, fingers = both[0], both[1:]
                    hand_rot[side] = (wrist, fingers)
        params = mesh = None
        length = DEFAULT_HAND_LENGTH_M
        if solver is not None and solver.body_ik is not None and body.xyz is not None:
            params = solver.body(body.xyz)
            if f is not None:
                rot = f.rotations(  # one stream: the root and every bone
                    "rotations", np.concatenate([params.global_orient[None], params.pose]), t
                )
                params = replace(
                    params,
                    betas=f.points("betas", params.betas[:, None], t, slow=True)[:, 0],
                    global_orient=rot[0],
                    pose=rot[1:],
                )
            expression = None if face is None else face.expression
            params = replace(solver.attach(params, hand_rot), expression=expression)
            params, mesh, _, length = solver.pose_model(params, body.uv, body.conf, K, body.xyz)
            if f is not None and params.transl is not None:
                t_f = f.points("transl", params.transl[None], t, 1.0)[0]
                shift = t_f - params.transl
                mesh = replace(mesh, vertices=mesh.vertices + shift, joints=mesh.joints + shift)
                params = replace(params, transl=t_f)
        hand_results = {}
        for side, k in hands.items():
            if k is None:
                hand_results[side] = None
                continue
            hbox = getattr(parts, f"{side}_hand_box")
            if hbox is None:
                hbox = square_box(np.concatenate([k.uv.min(0), k.uv.max(0)]), 1.2)
            xyz = None if k.xyz is None else (k.xyz * length).astype(np.float32)
            wrist, fingers = hand_rot.get(side, (None, None))
            hand_results[side] = HandResult(
                side=side,
                bbox=np.asarray(hbox, np.float32),
                keypoints=replace(k, xyz=xyz),
                length_m=length,
                rotation=wrist,
                pose=fingers,
            )
        return PersonResult(
            id=pid,
            bbox=np.asarray(box, np.float32),
            score=float(np.clip(body.conf.mean(), 0, 1)),
            body=body,
            left_hand=hand_results["left"],
            right_hand=hand_results["right"],
            face=face,
            model=params,
            mesh=mesh,
        )


def load_detnet(name_or_path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """DetNet from packaged weights (``detnet_lite``) or a file (uses
    ``fullcap.models.weights.load_detnet`` when it exists)."""
    try:
        from fullcap.models.weights import load_detnet as loader
    except ImportError:
        loader = None
    if loader is not None:
        return loader(name_or_path, device)
    from fullcap.models.detnet import DetNet, DetNetConfig
    from fullcap.models.weights import read_weights

    tensors, meta = read_weights(name_or_path)
    net = DetNet(DetNetConfig.from_dict(meta["config"]))
    net.load_state_dict({k: v.float() for k, v in tensors.items()})
    return net.to(device).eval()
