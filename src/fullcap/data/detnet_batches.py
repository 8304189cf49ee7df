"""DetNet training batches from reader items (synthetic shards or any reader with their keys).

Frames and units:
- The *image* is the reader's (augmented) square item image, side ``A`` pixels (e.g. 256).
  The body input is that image resized to ``config.body_size``; hand and face crops are cut
  from the image itself, so they keep its higher resolution.
- 2D targets are in map pixels (:func:`fullcap.models.posenet.decode` convention: pixel
  corners at integers): body maps cover the body input (``body_size / 8`` cells), hand and
  face maps cover their crops (``size / 4`` cells).
- Body 3D targets: metres, camera axes, relative to the pelvis (the basic pelvis).
  Hand 3D: relative to ``middle1``, divided by |wrist - middle1|; left hands are mirrored
  into right hands (x negated, 2D targets mirrored; the crop is passed as seen and DetNet
  mirrors it, see :meth:`fullcap.models.detnet.DetNet.forward`).

Validity (decision): a keypoint's 2D target counts (``valid2d``) when it is labelled and
inside the map, *occluded or not*: annotators of the 3D sets label hidden joints, and the
network must place them to give a full skeleton. A labelled keypoint outside the map is
trained towards an empty map; a keypoint the source does not label is not trained
(``PoseTargets.labelled``). Readers may give ``labelled/<set>`` (P,) bool to mark unlabelled
keypoints; otherwise every keypoint of a stored set counts as labelled. 3D terms count only
for samples with ``has_3d``.

Boxes: hands from the ground-truth body33 2D keypoints with :func:`fullcap.models.crops.
hand_boxes` when the sample labels body33, else from the stored hand box (close-ups without
a body), squared and enlarged; faces likewise with :func:`~fullcap.models.crops.face_boxes`
or the stored face box. Training jitters the boxes. A hand (face) is used when its part is
seen in the image (``box_valid``) and at least :data:`MIN_HAND_POINTS` of its keypoints
(:data:`MIN_FACE_POINTS` landmarks) fall inside its box.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from fullcap.data.heads import HEADS, SourceSpec
from fullcap.models import crops
from fullcap.models.detnet import DetNetConfig
from fullcap.models.posenet import PoseTargets
from fullcap.skeletons import HAND21

__all__ = [
    "MIN_FACE_POINTS",
    "MIN_HAND_POINTS",
    "DetNetBatch",
    "HeadTargets",
    "PartBatch",
    "Sample",
    "build_sample",
    "collate",
]

MIN_HAND_POINTS = 6
MIN_FACE_POINTS = 20
STORED_HAND_SCALE = 1.2  # stored (tight) hand box -> square crop side
STORED_FACE_SCALE = 1.35  # stored (tight landmark) face box -> square crop side
_WRIST, _MIDDLE1 = HAND21.index("wrist"), HAND21.index("middle1")
_BOX_INDEX = {"left": 1, "right": 2, "face": 3}


@dataclass(frozen=True)
class HeadTargets:
    """Targets of one extended head: ``rows`` (n,) are the batch samples it trains."""

    rows: torch.Tensor
    targets: PoseTargets


@dataclass(frozen=True)
class PartBatch:
    """Hand or face crops of a batch.

    crops: (N, 3, s, s) uint8, as seen (left hands not mirrored); boxes: (N, 5) (batch
    index, x0, y0, x1, y1) in body-input pixels; image_boxes: (N, 4) the same boxes in item
    image pixels; is_left: (N,) bool; targets: map-pixel 2D (mirrored for left hands) and
    normalised 3D; scale: (N,) |wrist - middle1| in metres for hands (0 without 3D), the
    inter-ocular distance (outer eye corners) in map pixels for faces.
    """

    crops: torch.Tensor
    boxes: torch.Tensor
    image_boxes: torch.Tensor
    is_left: torch.Tensor
    targets: PoseTargets
    scale: torch.Tensor


@dataclass(frozen=True)
class DetNetBatch:
    """One DetNet mini-batch.

    body: (B, 3, S, S) uint8 body inputs; sources: (B,) source names; image_size: side A of
    the item images; basic: targets of the basic head (B, 9); extended: head name ->
    :class:`HeadTargets`; hands, face: :class:`PartBatch` or None; images: (B, 3, A, A) item
    images when kept (evaluation, drawing), else None.
    """

    body: torch.Tensor
    sources: tuple[str, ...]
    image_size: int
    basic: PoseTargets
    extended: dict[str, HeadTargets]
    hands: PartBatch | None
    face: PartBatch | None
    images: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.body.shape[0]

    def to(self, device: torch.device | str) -> DetNetBatch:
        """A copy with every tensor on ``device``."""

        def mv(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                return x.to(device, non_blocking=True)
            if isinstance(x, PoseTargets | HeadTargets | PartBatch):
                return type(x)(**{k: mv(v) for k, v in vars(x).items()})
            if isinstance(x, dict):
                return {k: mv(v) for k, v in x.items()}
            return x

        return DetNetBatch(**{k: mv(v) for k, v in vars(self).items()})


@dataclass(frozen=True)
class Sample:
    """One item's contribution to a batch (see :func:`build_sample`)."""

    source: str
    image_size: int
    body: torch.Tensor
    basic: tuple[torch.Tensor, ...]  # uv, valid2d, xyz, labelled
    head: str | None
    head_targets: tuple[torch.Tensor, ...] | None
    has3d: bool
    hands: list[dict[str, torch.Tensor]]
    faces: list[dict[str, torch.Tensor]]
    image: torch.Tensor | None


def _find(sets: Mapping[str, Sequence[str]], name: str, prefer: Sequence[str]) -> tuple | None:
    order = [s for s in prefer if s in sets] + [s for s in sets if s not in prefer]
    for s in order:
        if name in sets[s]:
            return s, list(sets[s]).index(name)
    return None


def _labelled(item: Mapping[str, Any], set_name: str, n: int) -> torch.Tensor:
    lab = item.get(f"labelled/{set_name}")
    return torch.ones(n, dtype=torch.bool) if lab is None else torch.as_tensor(lab).bool()


def _inside(uv: torch.Tensor, size: float) -> torch.Tensor:
    return ((uv >= 0) & (uv < size)).all(-1)


def _square(box: torch.Tensor, scale: float) -> torch.Tensor:
    """(4,) box -> (4,) square of side ``scale`` x its longer side, same centre."""
    c = (box[:2] + box[2:]) / 2
    half = scale * (box[2:] - box[:2]).max() / 2
    return torch.cat([c - half, c + half])


def _body_targets(
    item: Mapping[str, Any], sets: Mapping[str, Sequence[str]], names: Sequence[str], m: float
) -> tuple[torch.Tensor, ...]:
    """(uv (P, 2) map px, valid2d, xyz (P, 3) camera metres, labelled) of body keypoints
    ``names`` looked up by name in the stored sets (body33 first)."""
    a = item["image"].shape[-1]
    uv = torch.zeros(len(names), 2)
    xyz = torch.zeros(len(names), 3)
    lab = torch.zeros(len(names), dtype=torch.bool)
    for i, n in enumerate(names):
        hit = _find(sets, n, ("body33",))
        if hit is None:
            continue
        s, j = hit
        uv[i] = item[f"kp2d/{s}"][j].float() * (m / a)
        xyz[i] = item[f"kp3d/{s}"][j].float()
        lab[i] = _labelled(item, s, len(sets[s]))[j]
    return uv, lab & _inside(uv, m), xyz, lab


def _pelvis(item: Mapping[str, Any], sets: Mapping[str, Sequence[str]]) -> torch.Tensor | None:
    hit = _find(sets, "pelvis", ("body33",))
    return None if hit is None else item[f"kp3d/{hit[0]}"][hit[1]].float()


def _hand(
    item: Mapping[str, Any],
    side: str,
    box: torch.Tensor,
    config: DetNetConfig,
    has3d: bool,
) -> dict[str, torch.Tensor] | None:
    """One hand crop and its targets, or None when it is not usable."""
    image, a = item["image"], item["image"].shape[-1]
    kp2d = item[f"kp2d/{side}_hand"].float()
    is_left = torch.tensor([side == "left"])
    if not int(item["box_valid"][_BOX_INDEX[side]]) or (box[2] - box[0]) < 4:
        return None
    s, m = config.hand_size, config.hand_map_size
    uv = crops.to_box(kp2d[None], box[None], s, flip=is_left)[0] * (m / s)
    lab = _labelled(item, f"{side}_hand", 21)
    # inside the crop and inside the image: a close-up's other hand, out of the picture, has a
    # crop that is mostly padding; its keypoints there cannot be seen, so they teach nothing
    inside = _inside(uv, m) & _inside(kp2d, a)
    if int((inside & lab).sum()) < MIN_HAND_POINTS:
        return None
    kp3d = item[f"kp3d/{side}_hand"].float()
    scale = (kp3d[_WRIST] - kp3d[_MIDDLE1]).norm()
    if has3d and float(scale) > 1e-6:
        xyz = (kp3d - kp3d[_MIDDLE1]) / scale
        if side == "left":
            xyz = xyz * torch.tensor([-1.0, 1.0, 1.0])
    else:
        xyz, scale, has3d = torch.zeros(21, 3), torch.tensor(0.0), False
    return {
        "crop": crops.crop(image[None], box[None], s)[0],
        "box": box * (config.body_size / a),
        "image_box": box,
        "is_left": is_left[0],
        "uv": uv,
        "valid2d": inside & lab,
        "labelled": lab,
        "xyz": xyz,
        "has3d": torch.tensor(has3d),
        "scale": scale.float(),
    }


def _face(
    item: Mapping[str, Any], box: torch.Tensor, config: DetNetConfig
) -> dict[str, torch.Tensor] | None:
    image, a = item["image"], item["image"].shape[-1]
    if not int(item["box_valid"][3]) or (box[2] - box[0]) < 4:
        return None
    s, m = config.face_size, config.face_map_size
    kp2d = item["kp2d/face68"].float()
    uv = crops.to_box(kp2d[None], box[None], s)[0] * (m / s)
    lab = _labelled(item, "face68", 68)
    inside = _inside(uv, m) & _inside(kp2d, a)  # in the crop and in the image (see _hand)
    if int((inside & lab).sum()) < MIN_FACE_POINTS:
        return None
    return {
        "crop": crops.crop(image[None], box[None], s)[0],
        "box": box * (config.body_size / a),
        "image_box": box,
        "is_left": torch.tensor(False),
        "uv": uv,
        "valid2d": inside & lab,
        "labelled": lab,
        "xyz": torch.zeros(68, 3),
        "has3d": torch.tensor(False),
        "scale": (uv[36] - uv[45]).norm(),
    }


def build_sample(
    item: Mapping[str, Any],
    spec: SourceSpec,
    sets: Mapping[str, Sequence[str]],
    config: DetNetConfig,
    generator: torch.Generator | None = None,
    keep_image: bool = False,
) -> Sample:
    """The body input, targets and hand/face crops of one reader item.

    Args:
        item: reader item (``image`` (3, A, A) uint8, ``kp2d/<set>``, ``kp3d/<set>``, ``boxes``
            (4, 4), ``box_valid`` (4,), ``has_3d``; see :mod:`fullcap.synth.shards`).
        spec: the item's source; sets: stored set name -> keypoint names.
        config: the DetNet config (input and map sizes, basic names, heads).
        generator: jitters the hand and face boxes when given (training); None: exact boxes.
        keep_image: keep the item image (for drawing and evaluation).
    """
    image = item["image"]
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] != image.shape[2]:
        raise ValueError(f"item image must be (3, A, A) uint8, got {tuple(image.shape)}")
    a, mb = image.shape[-1], config.body_map_size
    if a == config.body_size:
        body = image
    else:
        x = F.interpolate(
            image[None].float(),
            (config.body_size,) * 2,
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        body = x[0].round().clamp(0, 255).to(torch.uint8)
    has3d = bool(item["has_3d"])
    root = _pelvis(item, sets)
    body_3d = has3d and root is not None
    uv, valid, xyz, lab = _body_targets(item, sets, config.basic, mb)
    if body_3d:
        xyz = xyz - root
    basic = (uv, valid, xyz, lab)
    head_names = dict(config.extended)
    head, head_t = spec.head, None
    if head is not None and head in head_names and HEADS[head].set_name in sets:
        set_name = HEADS[head].set_name
        stored = list(sets[set_name])
        names = head_names[head]
        idx = [stored.index(n) for n in names]
        huv = item[f"kp2d/{set_name}"].float()[idx] * (mb / a)
        hlab = _labelled(item, set_name, len(stored))[idx]
        hxyz = item[f"kp3d/{set_name}"].float()[idx] - (root if body_3d else 0.0)
        head_t = (huv, hlab & _inside(huv, mb), hxyz, hlab)
    else:
        head = None

    def jitter(box: torch.Tensor) -> torch.Tensor:
        return box if generator is None else crops.jitter_boxes(box[None], generator)[0]

    body33 = item["kp2d/body33"].float()[None] if "body33" in sets else None
    hands = []
    for side in ("left", "right"):
        if f"kp2d/{side}_hand" not in item:
            continue
        if body33 is not None:
            box = crops.hand_boxes(body33, side)[0]
        else:
            box = _square(item["boxes"][_BOX_INDEX[side]].float(), STORED_HAND_SCALE)
        h = _hand(item, side, jitter(box), config, has3d)
        if h is not None:
            hands.append(h)
    faces = []
    if "kp2d/face68" in item:
        if body33 is not None:
            box = crops.face_boxes(body33)[0]
        else:
            box = _square(item["boxes"][3].float(), STORED_FACE_SCALE)
        f = _face(item, jitter(box), config)
        if f is not None:
            faces.append(f)
    return Sample(
        source=spec.name,
        image_size=a,
        body=body,
        basic=basic,
        head=head,
        head_targets=head_t,
        has3d=body_3d,
        hands=hands,
        faces=faces,
        image=image if keep_image else None,
    )


def _targets(parts: Sequence[tuple[torch.Tensor, ...]], has3d: torch.Tensor) -> PoseTargets:
    uv, valid, xyz, lab = (torch.stack(x) for x in zip(*parts, strict=True))
    return PoseTargets(uv=uv, valid2d=valid, xyz=xyz, has3d=has3d, labelled=lab)


def _parts(parts: list[tuple[int, dict[str, torch.Tensor]]]) -> PartBatch | None:
    if not parts:
        return None
    st = {k: torch.stack([p[k] for _, p in parts]) for k in parts[0][1]}
    rows = torch.tensor([float(b) for b, _ in parts])[:, None]
    return PartBatch(
        crops=st["crop"],
        boxes=torch.cat([rows, st["box"]], 1),
        image_boxes=st["image_box"],
        is_left=st["is_left"],
        targets=PoseTargets(
            uv=st["uv"],
            valid2d=st["valid2d"],
            xyz=st["xyz"],
            has3d=st["has3d"],
            labelled=st["labelled"],
        ),
        scale=st["scale"],
    )


def collate(samples: Sequence[Sample]) -> DetNetBatch:
    """Stack samples (all from items of the same image size) into a :class:`DetNetBatch`."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    has3d = torch.tensor([s.has3d for s in samples])
    extended: dict[str, HeadTargets] = {}
    for head in dict.fromkeys(s.head for s in samples if s.head is not None):
        rows = [i for i, s in enumerate(samples) if s.head == head]
        extended[head] = HeadTargets(
            rows=torch.tensor(rows, dtype=torch.long),
            targets=_targets([samples[i].head_targets for i in rows], has3d[rows]),
        )
    images = None
    if all(s.image is not None for s in samples):
        images = torch.stack([s.image for s in samples])
    return DetNetBatch(
        body=torch.stack([s.body for s in samples]),
        sources=tuple(s.source for s in samples),
        image_size=samples[0].image_size,
        basic=_targets([s.basic for s in samples], has3d),
        extended=extended,
        hands=_parts([(b, h) for b, s in enumerate(samples) for h in s.hands]),
        face=_parts([(b, f) for b, s in enumerate(samples) for f in s.faces]),
        images=images,
    )
