"""The face stage: FaceNet on the face crop located by the 68 face landmarks.

The crop is made the way FaceNet's training crops were (:mod:`fullcap.train.face_data`): a
square of ``margin`` times the longer side of the landmarks' bounding box, centred on that
box, resampled to the network's input size; its intrinsics follow from the image's K. The
result carries the 52 ARKit expression weights, the albedo coefficients, the SH illumination
(27 = 9 coefficients per RGB channel, camera frame) and the head rotation (head frame ->
camera).
"""

from __future__ import annotations

import numpy as np
import torch

from fullcap.models.crops import crop
from fullcap.types import FaceResult, Keypoints

__all__ = ["FaceNetEstimator", "face_crop"]

DEFAULT_MARGIN = 1.3  # FaceCrops' default: crop side / longer side of the face68 box


def face_crop(
    image: np.ndarray, landmarks_uv: np.ndarray, K: np.ndarray, size: int, margin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crop (size, size, 3) uint8, crop box (4,) image pixels, crop intrinsics (3, 3)).

    Pixel corners at integers, as everywhere in fullcap; outside the image is black
    (:func:`fullcap.models.crops.crop`, bilinear like the training crops).
    """
    lo, hi = landmarks_uv.min(0), landmarks_uv.max(0)
    side = max(float(margin * (hi - lo).max()), 4.0)
    centre = (lo + hi) / 2
    box = np.concatenate([centre - side / 2, centre + side / 2]).astype(np.float32)
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    out = crop(img, torch.from_numpy(box)[None], size)[0].permute(1, 2, 0).numpy()
    s = size / side
    Kc = np.array([[s * K[0, 0], s * K[0, 1], 0.0], [0.0, s * K[1, 1], 0.0], [0.0, 0.0, 1.0]])
    Kc[:2, 2] = s * (K[:2, 2] - box[:2])
    return out, box, Kc


class FaceNetEstimator:
    """FaceNet as the pipeline's face stage: ``(image, box, landmarks, K) -> FaceResult``.

    Args:
        net: a :class:`fullcap.models.facenet.FaceNet` (eval mode is set here).
        margin: crop side / longer side of the landmarks' box (as in training).
    """

    def __init__(self, net: torch.nn.Module, margin: float = DEFAULT_MARGIN):
        self.net = net.eval()
        self.margin = float(margin)
        self.size = int(net.config.input_size)
        self.names = tuple(net.config.expression_names)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def __call__(
        self, image: np.ndarray, box: np.ndarray, landmarks: Keypoints, K: np.ndarray
    ) -> FaceResult:
        crop, cbox, Kc = face_crop(image, landmarks.uv, K, self.size, self.margin)
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].to(self.device)
        Kt = torch.as_tensor(Kc, dtype=torch.float32, device=self.device)[None]
        p = self.net(x, Kt).params
        return FaceResult(
            bbox=cbox,
            landmarks=landmarks,
            expression=p.expression[0].float().cpu().numpy(),
            expression_names=self.names,
            albedo=p.albedo[0].float().cpu().numpy(),
            illumination=p.sh[0].T.reshape(-1).float().cpu().numpy(),
            rotation=p.rotation[0].float().cpu().numpy(),
        )
