"""Hand and face boxes from body keypoints: the same rule at training and at capture time.

Boxes are squares (x0, y0, x1, y1) in pixels of the image the keypoints are in.
- hand: centred between the wrist and the knuckles (index1, pinky1) pushed a little past
  them, side = 2.2 x the wrist-knuckle distance, at least 0.5 x the forearm length (so a
  foreshortened hand still gets a box).
- face: centred on the eyes and head keypoints, side from the head's size (head top to
  neck, eye distance).
"""

from __future__ import annotations

import torch

from fullcap.skeletons import BODY33

_I = {n: i for i, n in enumerate(BODY33)}


def hand_boxes(kp2d: torch.Tensor, side: str) -> torch.Tensor:
    """(B, 4) square boxes of the ``side`` ("left"/"right") hand from body33 2D (B, 33, 2)."""
    wrist = kp2d[:, _I[f"{side}_wrist"]]
    knuckles = (kp2d[:, _I[f"{side}_index1"]] + kp2d[:, _I[f"{side}_pinky1"]]) / 2
    elbow = kp2d[:, _I[f"{side}_elbow"]]
    span = (knuckles - wrist).norm(dim=-1)
    forearm = (wrist - elbow).norm(dim=-1)
    centre = wrist + 1.0 * (knuckles - wrist)
    half = torch.maximum(1.1 * span * 2.2 / 2, 0.25 * forearm).clamp(min=4.0)
    return torch.cat([centre - half[:, None], centre + half[:, None]], dim=-1)


def face_boxes(kp2d: torch.Tensor) -> torch.Tensor:
    """(B, 4) square face boxes from body33 2D keypoints (B, 33, 2)."""
    eyes = (kp2d[:, _I["left_eye"]] + kp2d[:, _I["right_eye"]]) / 2
    head_top, neck = kp2d[:, _I["head_top"]], kp2d[:, _I["neck"]]
    eye_dist = (kp2d[:, _I["left_eye"]] - kp2d[:, _I["right_eye"]]).norm(dim=-1)
    head_len = (head_top - neck).norm(dim=-1)
    centre = 0.75 * eyes + 0.25 * (neck + eyes) / 2
    half = torch.maximum(0.6 * head_len, 1.6 * eye_dist).clamp(min=4.0)
    return torch.cat([centre - half[:, None], centre + half[:, None]], dim=-1)


def jitter_boxes(
    boxes: torch.Tensor, generator: torch.Generator, shift: float = 0.1, scale: float = 0.15
) -> torch.Tensor:
    """Random shift (fraction of the side) and scale of square boxes (B, 4), for training."""
    b = boxes.shape[0]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(-1) / 2
    u = torch.rand(b, 3, generator=generator) * 2 - 1
    centre = centre + u[:, :2] * shift * 2 * half[:, None]
    half = half * (1 + scale * u[:, 2])
    return torch.cat([centre - half[:, None], centre + half[:, None]], dim=-1)


def crop(
    images: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Bilinear crops (N, C, size, size) of images (N, C, H, W) at boxes (N, 4) in pixels
    (pixel corners at integers); outside the image is zero; ``flip`` (N,) mirrors left-right."""
    import torch.nn.functional as F

    _, _, h, w = images.shape
    t = (torch.arange(size, dtype=torch.float32, device=images.device) + 0.5) / size
    gx = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t  # pixels
    gy = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t
    if flip is not None:
        gx = torch.where(flip[:, None], gx.flip(-1), gx)
    gx, gy = gx / w * 2 - 1, gy / h * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    out = F.grid_sample(images.float(), grid, align_corners=False, padding_mode="zeros")
    return out.round().clamp(0, 255).to(torch.uint8) if images.dtype == torch.uint8 else out


def to_box(
    points: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor | None = None
) -> torch.Tensor:
    """Points (N, P, 2) in image pixels -> pixels of the (size x size) crops at ``boxes``."""
    scale = size / (boxes[:, 2:] - boxes[:, :2])
    out = (points - boxes[:, None, :2]) * scale[:, None]
    if flip is not None:
        out = torch.where(
            flip[:, None, None], torch.stack([size - out[..., 0], out[..., 1]], -1), out
        )
    return out
