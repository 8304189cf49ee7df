"""Convolutional backbones written here (no torchvision): output stride 8 feature maps.

- ``lite``: a narrow residual network for real time on a CPU (about 0.2 GFLOP at 128x128).
- ``resnet50``: the paper's ResNet-50 class (bottleneck blocks 3-4-6-3), its last two stages
  dilated instead of strided so the output stride stays 8, as pose networks usually do.
"""

from __future__ import annotations

import torch
from torch import nn

from fullcap.models.posenet import conv_bn_relu


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    """Residual shortcut: identity, or a strided 1x1 projection when the shape changes."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut; ``mid`` channels between the two (default
    ``cout``: the classic block; wider gives the block more capacity at the same output)."""

    def __init__(
        self, cin: int, cout: int, stride: int = 1, dilation: int = 1, mid: int | None = None
    ):
        super().__init__()
        mid = cout if mid is None else mid
        self.conv1 = conv_bn_relu(cin, mid, 3, stride, dilation)
        self.conv2 = nn.Sequential(
            nn.Conv2d(mid, cout, 3, 1, dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.skip(x))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        cout = 4 * mid
        self.body = nn.Sequential(
            conv_bn_relu(cin, mid, 1),
            conv_bn_relu(mid, mid, 3, stride, dilation),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.skip(x))


class LiteBackbone(nn.Module):
    """Stem (stride 4) and three stages of basic blocks; output stride 8, ``channels`` out.
    ``expand``: the inner width of the last two stages' blocks, in multiples of their output
    width (1: the classic blocks)."""

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96, 128), expand: int = 1):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(conv_bn_relu(3, w0, 3, 2), conv_bn_relu(w0, w0, 3, 2))
        self.stage1 = nn.Sequential(BasicBlock(w0, w1, 2), BasicBlock(w1, w1))
        m2, m3 = expand * w2, expand * w3
        self.stage2 = nn.Sequential(
            BasicBlock(w1, w2, mid=m2), BasicBlock(w2, w2, dilation=2, mid=m2)
        )
        self.stage3 = nn.Sequential(
            BasicBlock(w2, w3, dilation=2, mid=m3), BasicBlock(w3, w3, dilation=4, mid=m3)
        )
        self.channels = w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage3(self.stage2(self.stage1(self.stem(x))))


class GlobalAttention(nn.Module):
    """Multi-head self-attention over every cell of a feature map, added as a residual.

    Each cell then sees the whole person: whether a limb is the left or the right one depends
    on which way the body faces, which a convolution's window may not contain. Output
    projection zero-initialised: the block starts as the identity (fine-tuning starts exactly
    where the weights it starts from are)."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        q = self.norm(t)
        t = t + self.attn(q, q, q, need_weights=False)[0]
        return t.transpose(1, 2).reshape(b, c, h, w)


class TransformerLayer(nn.Module):
    """A pre-norm transformer layer over the cells of a feature map: self-attention whose
    queries and keys carry a learned position per cell, then a two-layer MLP per cell, each
    added as a residual.

    :class:`GlobalAttention` tells each cell about the whole map but not where things are
    (its attention ignores positions); which arm is the left one, and whether a shape beside
    the body is a wrist, depends on where the other parts lie. Both residual branches end in
    zero-initialised projections, so the layer starts as the identity. The positions are
    learnt for a ``size`` x ``size`` map and resampled for maps of other sizes.
    """

    def __init__(self, channels: int, size: int, heads: int = 4, expand: int = 2):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, channels, size, size) * 0.02)
        self.norm1 = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(
            nn.Linear(channels, expand * channels),
            nn.GELU(),
            nn.Linear(expand * channels, channels),
        )
        for layer in (self.attn.out_proj, self.mlp[2]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        pos = self.pos
        if pos.shape[-2:] != (h, w):
            pos = nn.functional.interpolate(pos, size=(h, w), mode="bilinear", align_corners=False)
        t = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        v = self.norm1(t)
        qk = v + pos.flatten(2).transpose(1, 2)
        t = t + self.attn(qk, qk, v, need_weights=False)[0]
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)


class Neck(nn.Module):
    """More capacity at the backbone's output resolution: optional global self-attention,
    then ``blocks`` residual blocks (dilation 2 and 1 alternating), then ``layers``
    :class:`TransformerLayer` (positions learnt for a ``size`` x ``size`` map). Every part
    starts as the identity (zero-initialised last batch-norm scale, zero attention and MLP
    outputs), so a neck added to trained weights changes nothing until it is trained.
    ``expand``: the blocks' inner width in multiples of ``channels``."""

    def __init__(
        self,
        channels: int,
        blocks: int = 0,
        attention: bool = False,
        layers: int = 0,
        size: int = 16,
        expand: int = 1,
    ):
        super().__init__()
        self.attention = GlobalAttention(channels) if attention else nn.Identity()
        convs = []
        for i in range(blocks):
            block = BasicBlock(
                channels, channels, dilation=2 if i % 2 == 0 else 1, mid=expand * channels
            )
            nn.init.zeros_(block.conv2[1].weight)
            convs.append(block)
        self.blocks = nn.Sequential(*convs)
        self.layers = nn.Sequential(*(TransformerLayer(channels, size) for _ in range(layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.blocks(self.attention(x)))


class ResNet50(nn.Module):
    """ResNet-50 layout with output stride 8 (stages 3 and 4 dilated); 2048 channels out,
    reduced to ``out_channels`` by a 1x1 convolution."""

    def __init__(self, out_channels: int = 256):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for mid, blocks, stride, dilation in (
            (64, 3, 1, 1),
            (128, 4, 2, 1),
            (256, 6, 1, 2),
            (512, 3, 1, 4),
        ):
            stage = [Bottleneck(cin, mid, stride, dilation)]
            cin = 4 * mid
            stage += [Bottleneck(cin, mid, 1, dilation) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*layers)
        self.reduce = conv_bn_relu(cin, out_channels, 1)
        self.channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduce(self.stages(self.stem(x)))


def make_backbone(name: str, expand: int = 1) -> nn.Module:
    """``expand``: inner width of the lite backbone's last blocks (see :class:`LiteBackbone`)."""
    if name == "lite":
        return LiteBackbone(expand=expand)
    if name == "resnet50":
        return ResNet50()
    raise ValueError(f"unknown backbone {name!r}; use 'lite' or 'resnet50'")


class CropEncoder(nn.Module):
    """Light conv stack for a high-resolution hand or face crop: output stride 4."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            conv_bn_relu(3, width // 2, 3, 2),
            conv_bn_relu(width // 2, width, 3, 2),
            BasicBlock(width, width),
            BasicBlock(width, width, dilation=2),
        )
        self.channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ContextCropEncoder(nn.Module):
    """Crop encoder with a coarse context path, output stride 4.

    A hand keypoint's identity (which finger, which joint) depends on the whole hand, which
    the plain :class:`CropEncoder` hardly sees; this one adds a stride-8 path whose dilated
    blocks cover the crop, upsamples it and adds it to the stride-4 features.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        wide = 2 * width
        self.stem = nn.Sequential(
            conv_bn_relu(3, width // 2, 3, 2),
            conv_bn_relu(width // 2, width, 3, 2),
            BasicBlock(width, width),
        )
        self.context = nn.Sequential(
            BasicBlock(width, wide, 2),
            BasicBlock(wide, wide, dilation=2),
            BasicBlock(wide, wide, dilation=4),
            nn.Conv2d(wide, width, 1, bias=False),
            nn.BatchNorm2d(width),
        )
        self.fuse = BasicBlock(width, width)
        self.channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine = self.stem(x)
        coarse = nn.functional.interpolate(
            self.context(fine), size=fine.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.fuse(torch.relu(fine + coarse))


CROP_ENCODERS = {"light": CropEncoder, "context": ContextCropEncoder}


def make_crop_encoder(name: str, width: int) -> nn.Module:
    """A hand/face crop encoder by name (``light`` or ``context``), output stride 4."""
    if name not in CROP_ENCODERS:
        raise ValueError(f"unknown crop encoder {name!r}; use one of {sorted(CROP_ENCODERS)}")
    return CROP_ENCODERS[name](width)
