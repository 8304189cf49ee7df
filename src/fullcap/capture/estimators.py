"""The keypoint stage: body, hand and face keypoints of one person box.

:class:`KeypointEstimator` is what the pipeline calls; :class:`DetNetEstimator` runs DetNet
(method §2): the body PoseNet on the low-resolution person crop, then hands located from the
body keypoints (:func:`fullcap.models.crops.hand_boxes`) and cropped from the full-resolution
image (left hands mirrored into right hands, their body-feature region mirrored the same
way), and the face crop located from the head keypoints. Anything with the same call
signature (e.g. a test's stand-in that returns ground truth) can replace it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from fullcap.models.crops import crop, face_boxes, hand_boxes
from fullcap.models.detnet import DetNet
from fullcap.models.posenet import decode
from fullcap.skeletons import BODY33, FACE68, HAND21, joint_map
from fullcap.types import Keypoints, PartKeypoints

__all__ = ["DetNetEstimator", "KeypointEstimator"]


class KeypointEstimator(Protocol):
    """``estimator(image, box) -> PartKeypoints | None``.

    image: (H, W, 3) uint8 RGB; box: (4,) square person box, image pixels. ``parts`` names
    what it estimates among "body", "hands", "face".
    """

    parts: tuple[str, ...]

    def __call__(self, image: np.ndarray, box: np.ndarray) -> PartKeypoints | None: ...


def _to_image(uv_map: torch.Tensor, map_side: int, boxes: torch.Tensor) -> torch.Tensor:
    """Map pixels (N, P, 2) of maps of side ``map_side`` covering square ``boxes`` (N, 4)
    -> image pixels."""
    side = (boxes[:, 2] - boxes[:, 0])[:, None, None]
    return boxes[:, None, :2] + uv_map / map_side * side


class DetNetEstimator:
    """DetNet as a :class:`KeypointEstimator`.

    Args:
        net: a DetNet (eval mode is set here); its device is used.
        head: the extended body head whose keypoints are read (must hold the BODY33 names).
        hands, face: run the hand / face branches.
        flip_test: average the body maps with those of the mirrored person crop (better
            body keypoints; the body network runs on both crops as one batch: about 6 ms
            more per frame on the project's CPU; see DetNet.forward).
    """

    def __init__(
        self,
        net: DetNet,
        head: str = "humbi",
        hands: bool = True,
        face: bool = True,
        flip_test: bool = False,
    ):
        self.net = net.eval()
        heads = dict(net.config.extended)
        if head not in heads:
            raise ValueError(f"DetNet has no head {head!r}; it has {sorted(heads)}")
        self.head = head
        self.body_index = joint_map(heads[head], BODY33)
        self.hands, self.face, self.flip_test = hands, face, flip_test
        self.parts = ("body",) + (("hands",) if hands else ()) + (("face",) if face else ())

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def __call__(self, image: np.ndarray, box: np.ndarray) -> PartKeypoints | None:
        net, cfg = self.net, self.net.config
        img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        img = img.to(self.device).float()  # once per frame, not once per crop
        s = cfg.body_size
        box_t = torch.as_tensor(np.asarray(box, np.float32), device=self.device)[None]
        out = net(_crop(img, box_t, s), heads=net.heads_for(self.head), flip_test=self.flip_test)
        uv, conf, xyz = net.body_keypoints(out, self.head)  # refined 3D if it has a refiner
        uv = _to_image(uv, cfg.body_map_size, box_t)[:, self.body_index]
        conf, xyz = conf[:, self.body_index], xyz[:, self.body_index]
        xyz = xyz - xyz[:, BODY33.index("pelvis") : BODY33.index("pelvis") + 1]
        body = Keypoints(BODY33, *_np(uv[0], xyz[0], conf[0]))
        result: dict = {"body": body}
        scale = s / (box_t[:, 2:] - box_t[:, :2]).amax(-1)  # image px -> body-crop px

        def in_body(boxes: torch.Tensor) -> torch.Tensor:
            local = (boxes - box_t[:, [0, 1, 0, 1]]) * scale[:, None]
            return torch.cat([boxes.new_zeros(len(boxes), 1), local], dim=1)

        if self.hands:
            boxes = torch.cat([hand_boxes(uv, "left"), hand_boxes(uv, "right")])  # (2, 4)
            is_left = torch.tensor([True, False], device=self.device)
            hs = cfg.hand_size
            crops = _crop(img.expand(2, -1, -1, -1), boxes, hs)  # DetNet mirrors left hands
            hmaps = net._part(
                net.hand_encoder, net.hand_net, crops, in_body(boxes), is_left, out.features
            )
            huv, hconf, hxyz = net.hand_keypoints(hmaps)  # refined 3D if it has a refiner
            side = hmaps.K.shape[-1]
            huv = torch.where(  # un-mirror the left hand's map coordinates
                is_left[:, None, None], torch.stack([side - huv[..., 0], huv[..., 1]], -1), huv
            )
            huv = _to_image(huv, side, boxes)
            hxyz = torch.where(is_left[:, None, None], hxyz * hxyz.new_tensor([-1, 1, 1]), hxyz)
            hxyz = hxyz - hxyz[:, HAND21.index("middle1") : HAND21.index("middle1") + 1]
            for i, name in enumerate(("left_hand", "right_hand")):
                result[name] = Keypoints(HAND21, *_np(huv[i], hxyz[i], hconf[i]))
                result[f"{name}_box"] = boxes[i].cpu().numpy()
        if self.face:
            fbox = face_boxes(uv)
            fcrop = _crop(img, fbox, cfg.face_size)
            fmaps = net._part(
                net.face_encoder, net.face_net, fcrop, in_body(fbox), None, out.features
            )
            fuv, fconf, _ = decode(fmaps)
            fuv = _to_image(fuv, fmaps.K.shape[-1], fbox)
            f_uv, _, f_conf = _np(fuv[0], None, fconf[0])
            result["face"] = Keypoints(FACE68, f_uv, None, f_conf)
            result["face_box"] = fbox[0].cpu().numpy()
        return PartKeypoints(**result)


def _crop(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """:func:`fullcap.models.crops.crop` of a uint8 image given as float (0-255): the same
    rounded values a uint8 crop has, as float in [0, 1] (what DetNet makes of uint8)."""
    return crop(image, boxes, size).round_().clamp_(0, 255).div_(255.0)


def _np(uv, xyz, conf) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    return (
        uv.float().cpu().numpy(),
        None if xyz is None else xyz.float().cpu().numpy(),
        conf.float().cpu().numpy(),
    )
