"""What limits DetNet's body 3D accuracy: 2D error spread, 2D-consistent in-plane
coordinates, and test-time flipping, on held-out shards (figures in the model card).

    python scripts/detnet_diagnostics.py [WEIGHTS] [--data FOLDER ...] [--samples N]

Per source it prints PCK@150mm-PA of the basic keypoints for:
- ``base``: the network as capture uses it (location maps read at the detected 2D);
- ``xy_from_2d``: in-plane x, y replaced by the detected 2D offsets from the pelvis, scaled
  to fit the predicted x, y (what better-behaved in-plane maps could give at best, here);
- ``xy_from_true_2d``: the same with the true 2D offsets and the maps read there;
- ``flip``: maps of the image and of its mirror image (left/right swapped, x negated)
  averaged before decoding (twice the compute);
and the 2D error's median and 90th percentile (pixels of the body input), the share of
keypoints more than 12 px off, how many of those lie within 8 px of the other side's true
keypoint (left/right swaps), how many of the swaps are duplicates (both sides' peaks on
one limb, within 6 px of each other), and the samples where at least 6 of the 8 side
keypoints are swapped (the whole body taken the wrong way round: front for back).
"""

from __future__ import annotations

import argparse

import torch

from fullcap.eval.detnet import _batches, _readers, read_at
from fullcap.eval.metrics import pa_errors, pck
from fullcap.models.posenet import PoseMaps, decode
from fullcap.models.weights import load_detnet
from fullcap.skeletons import swap_side
from fullcap.train.detnet import forward


def xy_from_2d(xyz: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """``xyz`` (B, P, 3) with x, y = s * (uv - uv[:, :1]), s fitted per sample by least squares
    (keypoint 0 is the pelvis, the root)."""
    d = uv - uv[:, :1]
    s = (d * xyz[..., :2]).sum((1, 2)) / (d * d).sum((1, 2)).clamp(min=1e-6)
    out = xyz.clone()
    out[..., :2] = s[:, None, None] * d
    return out


def flip_averaged(net, body: torch.Tensor, a: PoseMaps, swap: list[int]) -> PoseMaps:
    """The basic-head maps ``a`` of ``body`` averaged with those of its mirror image (mapped
    back: left/right swapped, x negated)."""
    m = net(body.flip(-1)).basic
    b, p, h, w = a.K.shape
    k = m.K.flip(-1)[:, swap]
    loc = m.L.reshape(b, p, 3, h, w).flip(-1)[:, swap].clone()
    loc[:, :, 0] = -loc[:, :, 0]
    loc = (a.L.reshape(b, p, 3, h, w) + loc) / 2
    return PoseMaps((a.K + k) / 2, a.D, loc.reshape(b, 3 * p, h, w))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="?", default="detnet_lite")
    ap.add_argument(
        "--data",
        nargs="+",
        default=[f"runs/detnet_data/{s}/val" for s in ("h36m_like", "mtc_like", "humbi_like")],
    )
    ap.add_argument("--samples", type=int, default=200)
    args = ap.parse_args()
    net = load_detnet(args.weights).eval()
    names = net.config.basic
    swap = [names.index(swap_side(n)) for n in names]
    px = net.config.body_size / net.config.body_map_size
    for reader in _readers(args.data, 256):  # as `fullcap eval detnet`: items of 256 px
        errs: dict[str, list] = {}
        err2d = []
        far = swapped = duplicates = whole = 0
        for batch in _batches(reader, net, args.samples, 16):
            t = batch.basic
            valid = t.valid2d & t.has3d[:, None]
            with torch.no_grad():
                out = forward(net, batch).basic
                flipped = flip_averaged(net, batch.body, out, swap)
            uv, _, xyz = decode(out)
            err = (uv - t.uv).norm(dim=-1) * px
            err2d.append(err[t.valid2d])
            off = (err > 12) & t.valid2d
            swap_hit = off & ((uv - t.uv[:, swap]).norm(dim=-1) * px < 8) & t.valid2d[:, swap]
            far, swapped = far + int(off.sum()), swapped + int(swap_hit.sum())
            same_place = (uv - uv[:, swap]).norm(dim=-1) * px < 6
            duplicates += int((swap_hit & same_place).sum())
            whole += int((swap_hit.sum(1) >= 6).sum())
            preds = {
                "base": xyz,
                "xy_from_2d": xy_from_2d(xyz, uv),
                "xy_from_true_2d": xy_from_2d(read_at(out, t.uv), t.uv),
                "flip": decode(flipped)[2],
            }
            for key, pred in preds.items():
                errs.setdefault(key, []).append(pa_errors(pred, t.xyz, valid, min_points=5))
        if not any(e[1].any() for e in errs["base"]):
            print(f"{reader.spec.name}: no 3D body samples")
            continue
        row = []
        for key, parts in errs.items():
            e, m = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            row.append(f"{key} {pck(e, 0.150, m):.3f}")
        d = torch.cat(err2d)
        print(
            f"{reader.spec.name}: PCK@150mm-PA "
            + ", ".join(row)
            + f"; 2D error median {d.median():.1f} px, 90th percentile {d.quantile(0.9):.1f} px, "
            f"{far / len(d):.1%} > 12 px, of which {swapped} left/right swaps "
            f"({duplicates} duplicates); "
            f"{whole} samples swapped whole"
        )


if __name__ == "__main__":
    main()
