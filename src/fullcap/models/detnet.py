"""DetNet: body, hand and face keypoints from one person crop and its hand and face crops.

Body: a backbone on the low-resolution person crop, a PoseNet for the basic keypoints shared
by every source, and one PoseNet per source for its extended keypoints (the ``humbi``
head gives the 33 keypoints that feed BodyIKNet). Metres, root = pelvis.
Hands (the inter-part correlation): each hand is cropped from the full-resolution image
(left hands mirrored into right hands); a light encoder's features of the crop are
concatenated with the body features of the hand's region (ROI-aligned from the body feature
map) and a PoseNet gives 21 keypoints, root = middle1, in wrist-middle1 units.
Face: the face crop, encoded the same way with its body-feature region, gives the 68 face
landmarks (2D maps only: the lambda_f term).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn

from fullcap.models.backbone import CropEncoder, Neck, make_backbone, make_crop_encoder
from fullcap.models.posenet import PoseMaps, PoseNet, decode
from fullcap.models.refiner import (
    FEATURES_PER_KEYPOINT,
    FeatureMirror,
    KeypointRefiner,
    keypoint_features,
)
from fullcap.skeletons import (
    BASIC9,
    BODY33,
    BODY33_SET,
    FACE68,
    HAND21_SET,
    _subset,
    side_permutation,
)

# the keypoint refiners (trained on one DetNet's outputs, they fit it only) by part: their
# tensors are named NAME.*, their DetNetConfig fields NAME_* (see refiner_fields)
REFINER_NAMES = {"body": "refiner", "hand": "hand_refiner"}
REFINER_PREFIXES = tuple(f"{name}." for name in REFINER_NAMES.values())
BODY_STRIDE = 8  # backbone output stride: body maps are body_size // 8 pixels wide
CROP_STRIDE = 4  # CropEncoder output stride: hand and face maps are size // 4 pixels wide

_SIZES = ("backbone", "body_size", "hand_size", "face_size", "hidden", "crop_width")
PRESETS: dict[str, dict] = {
    "lite": dict(zip(_SIZES, ("lite", 128, 64, 64, 64, 32), strict=True), hand_encoder="context"),
    "paper": dict(
        zip(_SIZES, ("resnet50", 256, 128, 128, 128, 64), strict=True), hand_encoder="context"
    ),
}


@dataclass(frozen=True)
class DetNetConfig:
    """Everything needed to rebuild a DetNet (saved inside checkpoints)."""

    preset: str = "lite"
    backbone: str = "lite"
    body_size: int = 128
    hand_size: int = 64
    face_size: int = 64
    hidden: int = 64
    crop_width: int = 32
    # hand crop encoder: "light" (the first releases; the default, so their configs still load)
    # or "context" (adds a stride-8 context path: see fullcap.models.backbone)
    hand_encoder: str = "light"
    # extra capacity between backbone and heads (fullcap.models.backbone.Neck); 0 / False in
    # the first releases (the defaults, so their configs still load)
    neck_blocks: int = 0
    neck_attention: bool = False
    # transformer layers after the neck's blocks (fullcap.models.backbone.TransformerLayer);
    # 0 in every shipped release so far (the default, so their configs load as they were)
    neck_layers: int = 0
    # inner width of the lite backbone's last two stages' blocks and of the neck's blocks, in
    # multiples of their output width (fullcap.models.backbone.BasicBlock's ``mid``); 1 in
    # every release up to preview 8 (the default, so their configs load as they were)
    block_expand: int = 1
    # the keypoint refiner (fullcap.models.refiner): the heads it reads ("basic" and extended
    # head names; empty: no refiner, as in the first releases), the extended head whose 3D
    # keypoints it refines, and its size
    refiner_inputs: tuple[str, ...] = ()
    refiner_output: str = "humbi"
    refiner_hidden: int = 512
    refiner_blocks: int = 2
    # average the body refiner with itself on the mirrored inputs (FeatureMirror.symmetric);
    # False before preview 6, so older configs load as they were
    refiner_mirror: bool = False
    # keypoint map peaks per keypoint the body refiner reads (keypoint_features): 1 before
    # preview 6; 2 adds each map's next peak
    refiner_peaks: int = 1
    # the hand keypoint refiner's width (0: none, as in the first releases) and depth
    hand_refiner_hidden: int = 0
    hand_refiner_blocks: int = 2
    basic: tuple[str, ...] = BASIC9
    # Extended keypoints per training source: (head name, keypoint names). Names need not be
    # BODY33 names; a head whose names are not all in BODY33 needs its parents below.
    extended: tuple[tuple[str, tuple[str, ...]], ...] = field(default=(("humbi", BODY33),))
    # (head name, parent index per keypoint, -1 for a root) for heads not made of BODY33 names
    # (e.g. ``h36m17``); other heads take their parents from the BODY33 tree.
    extended_parents: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        from fullcap.models.backbone import CROP_ENCODERS

        if self.hand_encoder not in CROP_ENCODERS:
            raise ValueError(
                f"unknown hand_encoder {self.hand_encoder!r}; use one of {sorted(CROP_ENCODERS)}"
            )
        for name, stride in (
            ("body_size", BODY_STRIDE),
            ("hand_size", CROP_STRIDE),
            ("face_size", CROP_STRIDE),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 4 * stride or v % stride:
                raise ValueError(
                    f"DetNet {name} must be a multiple of {stride} (its network's output "
                    f"stride) and at least {4 * stride}, got {v!r}"
                )
        for name in ("neck_blocks", "neck_layers"):
            nb = getattr(self, name)
            if isinstance(nb, bool) or not isinstance(nb, int) or nb < 0:
                raise ValueError(f"DetNet {name} must be an integer >= 0, got {nb!r}")
        be = self.block_expand
        if isinstance(be, bool) or not isinstance(be, int) or not 1 <= be <= 8:
            raise ValueError(f"DetNet block_expand must be an integer 1-8, got {be!r}")
        if be != 1 and self.backbone != "lite":
            raise ValueError(
                f"DetNet block_expand widens the lite backbone only, not {self.backbone!r}"
            )
        if not isinstance(self.neck_attention, bool):
            raise ValueError(
                f"DetNet neck_attention must be True or False, got {self.neck_attention!r}"
            )
        if self.refiner_inputs:
            heads = ("basic", *(h for h, _ in self.extended))
            unknown = [h for h in (*self.refiner_inputs, self.refiner_output) if h not in heads]
            if unknown or self.refiner_output == "basic":
                raise ValueError(
                    f"DetNet refiner heads {unknown or ['basic']} are not extended heads of "
                    f"this network; it has {list(heads)} (the output must be an extended head)"
                )
        if not isinstance(self.refiner_mirror, bool):
            raise ValueError(
                f"DetNet refiner_mirror must be True or False, got {self.refiner_mirror!r}"
            )
        if self.refiner_peaks not in (1, 2) or isinstance(self.refiner_peaks, bool):
            raise ValueError(f"DetNet refiner_peaks must be 1 or 2, got {self.refiner_peaks!r}")
        if self.refiner_mirror and not self.refiner_inputs:
            raise ValueError("DetNet refiner_mirror needs a body refiner (refiner_inputs)")
        sizes = [("hand_refiner_hidden", 0), ("hand_refiner_blocks", 0)]
        if self.refiner_inputs:
            sizes += [("refiner_hidden", 1), ("refiner_blocks", 0)]
        for name, least in sizes:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"DetNet {name} must be an integer >= {least}, got {v!r}")
        parents = dict(self.extended_parents)
        for head, names in self.extended:
            if head == "basic":
                raise ValueError("extended head name 'basic' is reserved for the basic head")
            if head in parents:
                if len(parents[head]) != len(names):
                    raise ValueError(f"extended_parents[{head!r}] needs {len(names)} entries")
            elif any(n not in BODY33 for n in names):
                missing = [n for n in names if n not in BODY33]
                raise ValueError(
                    f"extended head {head!r}: {missing} are not BODY33 names; "
                    "give the head's parents in extended_parents"
                )

    @property
    def body_map_size(self) -> int:
        """Side of the body keypoint maps in pixels (body_size / 8)."""
        return self.body_size // BODY_STRIDE

    @property
    def hand_map_size(self) -> int:
        """Side of the hand keypoint maps in pixels (hand_size / 4)."""
        return self.hand_size // CROP_STRIDE

    @property
    def face_map_size(self) -> int:
        """Side of the face keypoint maps in pixels (face_size / 4)."""
        return self.face_size // CROP_STRIDE

    def head_parents(self, head: str) -> tuple[int, ...]:
        """Parent index per keypoint (-1 for roots) of the basic head or an extended head."""
        if head == "basic":
            return _subset("sub", self.basic, BODY33_SET).parents
        names = dict(self.extended)[head]
        given = dict(self.extended_parents)
        return tuple(given[head]) if head in given else _subset("sub", names, BODY33_SET).parents

    @classmethod
    def from_preset(cls, name: str, **overrides) -> DetNetConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(preset=name, **(PRESETS[name] | overrides))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DetNetConfig:
        d = dict(d)
        d["basic"] = tuple(d["basic"])
        d["refiner_inputs"] = tuple(d.get("refiner_inputs", ()))
        d["extended"] = tuple((s, tuple(names)) for s, names in d["extended"])
        d["extended_parents"] = tuple(
            (s, tuple(int(i) for i in p)) for s, p in d.get("extended_parents", ())
        )
        return cls(**d)


def refiner_fields(part: str) -> tuple[str, ...]:
    """The DetNetConfig fields that describe the ``part`` ("body", "hand") refiner."""
    prefix = f"{REFINER_NAMES[part]}_"
    return tuple(f.name for f in fields(DetNetConfig) if f.name.startswith(prefix))


def refiner_mirror(config: DetNetConfig) -> FeatureMirror:
    """The :class:`~fullcap.models.refiner.FeatureMirror` of a body refiner's input heads and
    output head; ValueError when one of them is not left/right symmetric."""
    heads = {"basic": config.basic} | dict(config.extended)
    try:
        swaps = [side_permutation(heads[h]) for h in config.refiner_inputs]
        output = side_permutation(heads[config.refiner_output])
        return FeatureMirror(swaps, output, config.refiner_peaks)
    except ValueError:
        raise ValueError(
            "a mirrored body refiner needs left/right symmetric heads; "
            f"{[*config.refiner_inputs, config.refiner_output]} are not all symmetric"
        ) from None


def bones_of(names: tuple[str, ...], parents: tuple[int, ...] | None = None) -> torch.Tensor:
    """(n_bones, 2) (child, parent) index pairs of a keypoint set: ``parents`` (one index per
    keypoint, -1 for roots) or, by default, the BODY33 tree restricted to ``names``."""
    if parents is None:
        parents = _subset("sub", names, BODY33_SET).parents
    return torch.tensor(
        [(c, p) for c, p in enumerate(parents) if p >= 0], dtype=torch.long
    ).reshape(-1, 2)


def mirror_permutations(
    names: tuple[str, ...], bones: torch.Tensor
) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The keypoint and bone index permutations that swap left and right (``left_x`` <->
    ``right_x``) in a head of keypoints ``names`` and ``bones`` (n_bones, 2); None when the
    head is not left/right symmetric (a side's keypoint or bone has no partner)."""
    try:
        kp = side_permutation(names)
        pairs = [tuple(b) for b in bones.tolist()]
        bone = tuple(pairs.index((kp[c], kp[p])) for c, p in pairs)
    except ValueError:
        return None
    return kp, bone


def mirror_maps(maps: PoseMaps, keypoints: tuple[int, ...], bones: tuple[int, ...]) -> PoseMaps:
    """Maps computed on a left-right mirrored image, put into the frame of the image itself:
    flipped left-right, left and right keypoints (and bones) swapped, the camera x of the 3D
    (location and delta maps) negated. ``keypoints``, ``bones``: :func:`mirror_permutations`.
    Its own inverse."""

    def swap(t: torch.Tensor, order: tuple[int, ...], vectors: bool) -> torch.Tensor:
        t = t.flip(-1)
        if not t.shape[1]:  # no such maps (2D-only heads, heads without bones)
            return t
        if not vectors:
            return t[:, list(order)]
        b, c, h, w = t.shape
        v = t.reshape(b, c // 3, 3, h, w)[:, list(order)]
        v = v * v.new_tensor([-1.0, 1.0, 1.0]).view(1, 1, 3, 1, 1)
        return v.reshape(b, c, h, w)

    return PoseMaps(
        swap(maps.K, keypoints, False), swap(maps.D, bones, True), swap(maps.L, keypoints, True)
    )


def _average(a: PoseMaps, b: PoseMaps) -> PoseMaps:
    return PoseMaps((a.K + b.K) / 2, (a.D + b.D) / 2, (a.L + b.L) / 2)


HAND_BONES = torch.tensor([(c, p) for c, p in enumerate(HAND21_SET.parents) if p >= 0])


def roi_align(
    features: torch.Tensor,
    boxes: torch.Tensor,
    size: int,
    image_size: int,
    mirror: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bilinear ROI features (N, C, size, size) of ``features`` (B, C, h, w) for ``boxes``
    (N, 5) = (batch index, x0, y0, x1, y1) in pixels of the (square) image of side
    ``image_size`` that the feature map covers; ``mirror`` (N,) flips a region left-right."""
    idx = boxes[:, 0].long()
    x0, y0, x1, y1 = (boxes[:, i] / image_size * 2 - 1 for i in range(1, 5))
    t = (torch.arange(size, device=features.device, dtype=features.dtype) + 0.5) / size
    gx = x0[:, None] + (x1 - x0)[:, None] * t  # (N, size)
    if mirror is not None:
        gx = torch.where(mirror[:, None], gx.flip(-1), gx)
    gy = y0[:, None] + (y1 - y0)[:, None] * t
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    return F.grid_sample(features[idx], grid, align_corners=False)


@dataclass(frozen=True)
class DetNetOutput:
    """basic, extended[source]: body maps; hands: maps of the hand crops in input order (N_h);
    face: 2D maps of the face crops (N_f); features: the body feature map."""

    basic: PoseMaps
    extended: dict[str, PoseMaps]
    hands: PoseMaps | None
    face: PoseMaps | None
    features: torch.Tensor


class DetNet(nn.Module):
    def __init__(self, config: DetNetConfig):
        super().__init__()
        self.config = config
        self.backbone = make_backbone(config.backbone, config.block_expand)
        c = self.backbone.channels
        self.neck = Neck(
            c,
            config.neck_blocks,
            config.neck_attention,
            config.neck_layers,
            config.body_size // BODY_STRIDE,
            config.block_expand,
        )
        self.basic = PoseNet(c, len(config.basic), len(bones_of(config.basic)), config.hidden)
        bones = {
            name: bones_of(names, config.head_parents(name))
            for name, names in (("basic", config.basic), *config.extended)
        }
        self.extended = nn.ModuleDict(
            {
                s: PoseNet(c, len(names), len(bones[s]), config.hidden)
                for s, names in config.extended
            }
        )
        for name, b in bones.items():
            self.register_buffer(f"bones_{name}", b, persistent=False)
        heads = {"basic": config.basic} | dict(config.extended)
        # left/right permutations per body head, for the flip test (None: not symmetric)
        self._mirror = {h: mirror_permutations(heads[h], bones[h]) for h in heads}
        self.refiner: KeypointRefiner | None = None
        if config.refiner_inputs:
            sizes = {"basic": len(config.basic)} | {h: len(n) for h, n in config.extended}
            n_in = FEATURES_PER_KEYPOINT * config.refiner_peaks
            n_in *= sum(sizes[h] for h in config.refiner_inputs)
            self.refiner = KeypointRefiner(
                n_in, sizes[config.refiner_output], config.refiner_hidden, config.refiner_blocks
            )
        self._refiner_mirror = refiner_mirror(config) if config.refiner_mirror else None
        self.hand_refiner: KeypointRefiner | None = None
        if config.hand_refiner_hidden:
            n = len(HAND21_SET.names)
            self.hand_refiner = KeypointRefiner(
                FEATURES_PER_KEYPOINT * n, n, config.hand_refiner_hidden, config.hand_refiner_blocks
            )
        self.hand_encoder = make_crop_encoder(config.hand_encoder, config.crop_width)
        self.hand_net = PoseNet(config.crop_width + c, 21, len(HAND_BONES), config.hidden)
        self.face_encoder = CropEncoder(config.crop_width)
        self.face_net = PoseNet(config.crop_width + c, len(FACE68), 0, config.hidden, with_3d=False)
        self.register_buffer(
            "mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False
        )

    def bones(self, head: str) -> torch.Tensor:
        """(n_bones, 2) (child, parent) pairs of the basic head or a source's extended head."""
        return getattr(self, f"bones_{head}")

    def heads_for(self, head: str) -> tuple[str, ...]:
        """The extended heads to run for ``head``'s keypoints (see :meth:`body_keypoints`): the
        head itself and, where the refiner refines it, the heads the refiner reads."""
        names = (head,) if head != "basic" else ()
        if self.refiner is not None and head == self.config.refiner_output:
            names += tuple(h for h in self.config.refiner_inputs if h != "basic")
        return tuple(dict.fromkeys(names))

    def refiner_features(self, out: DetNetOutput) -> torch.Tensor:
        """The refiner's input (B, F): :func:`keypoint_features` of the heads it reads."""
        return self._refiner_inputs(out)[0]

    def _refiner_inputs(self, out: DetNetOutput) -> tuple[torch.Tensor, dict[str, tuple]]:
        """The refiner's input and the decoded keypoints of each head it reads."""
        maps = {"basic": out.basic} | out.extended
        peaks = self.config.refiner_peaks
        parts = {h: keypoint_features(maps[h], peaks) for h in self.config.refiner_inputs}
        features = torch.cat([f for f, _ in parts.values()], 1)
        return features, {h: decoded for h, (_, decoded) in parts.items()}

    def body_keypoints(
        self, out: DetNetOutput, head: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(uv, confidence, xyz) of the basic head or an extended head, as
        :func:`fullcap.models.posenet.decode`; where the refiner refines ``head``, xyz is the
        refiner's (``out`` must then hold the heads of :meth:`heads_for`)."""
        if self.refiner is None or head != self.config.refiner_output:
            return decode(out.basic if head == "basic" else out.extended[head])
        features, decoded = self._refiner_inputs(out)  # decodes each head once
        uv, conf, xyz = decoded[head] if head in decoded else decode(out.extended[head])
        if self._refiner_mirror is not None:
            return uv, conf, self._refiner_mirror.symmetric(self.refiner, features, xyz)
        return uv, conf, self.refiner(features, xyz)

    def hand_keypoints(self, maps: PoseMaps) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(uv, confidence, xyz) of hand maps (in the crops' frame: left hands mirrored), as
        :func:`fullcap.models.posenet.decode`; xyz from the hand refiner when there is one."""
        features, (uv, conf, xyz) = keypoint_features(maps)
        if self.hand_refiner is not None:
            xyz = self.hand_refiner(features, xyz)
        return uv, conf, xyz

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images (N, 3, H, W), RGB -> normalised float."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        return (x - self.mean) / self.std

    def _part(self, encoder, net, crops, boxes, mirror, features) -> PoseMaps:
        if mirror is not None:
            crops = torch.where(mirror[:, None, None, None], crops.flip(-1), crops)
        f = encoder(self.normalise(crops))
        roi = roi_align(features, boxes, f.shape[-1], self.config.body_size, mirror)
        return net(torch.cat([f, roi], dim=1))

    def forward(
        self,
        body: torch.Tensor,
        hand_crops: torch.Tensor | None = None,
        hand_boxes: torch.Tensor | None = None,
        hand_is_left: torch.Tensor | None = None,
        face_crops: torch.Tensor | None = None,
        face_boxes: torch.Tensor | None = None,
        heads: tuple[str, ...] | None = None,
        flip_test: bool = False,
    ) -> DetNetOutput:
        """Run the network.

        Args:
            body: (B, 3, S, S) person crops (S = config.body_size), uint8 or [0, 1] float.
            hand_crops: (N_h, 3, s, s) hand crops from the full-resolution image, as seen
                (left hands are mirrored here); hand_boxes: (N_h, 5) (batch index, x0, y0, x1,
                y1) of each hand crop in body-crop pixels; hand_is_left: (N_h,) bool.
            face_crops: (N_f, 3, s, s); face_boxes: (N_f, 5) like hand_boxes.
            heads: extended heads to run (default: all).
            flip_test: run the body heads on the body crops and on their mirror images too
                (as one batch) and average the two maps (test-time augmentation: better 2D
                keypoints; the hand and face branches read the body features of the crops
                as given).
        """
        if body.ndim != 4 or body.shape[1] != 3:
            raise ValueError(f"body must have shape (B, 3, H, W), got {tuple(body.shape)}")
        names = heads if heads is not None else tuple(self.extended.keys())
        if flip_test:
            asymmetric = [h for h in ("basic", *names) if self._mirror[h] is None]
            if asymmetric:
                raise ValueError(
                    f"flip test needs left/right symmetric heads; {asymmetric} are not"
                )
            body = torch.cat([body, body.flip(-1)])
        feats = self.neck(self.backbone(self.normalise(body)))
        basic = self.basic(feats)
        extended = {s: self.extended[s](feats) for s in names}
        if flip_test:
            n = len(body) // 2

            def merged(head: str, maps: PoseMaps) -> PoseMaps:
                own, mirrored = (PoseMaps(*(t[sl] for t in (maps.K, maps.D, maps.L)))
                                 for sl in (slice(None, n), slice(n, None)))  # fmt: skip
                return _average(own, mirror_maps(mirrored, *self._mirror[head]))

            basic = merged("basic", basic)
            extended = {s: merged(s, m) for s, m in extended.items()}
            feats = feats[:n]
        hands = face = None
        if hand_crops is not None and len(hand_crops):
            hands = self._part(
                self.hand_encoder, self.hand_net, hand_crops, hand_boxes, hand_is_left, feats
            )
        if face_crops is not None and len(face_crops):
            face = self._part(self.face_encoder, self.face_net, face_crops, face_boxes, None, feats)
        return DetNetOutput(basic, extended, hands, face, feats)
