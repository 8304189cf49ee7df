"""Where DetNet's body keypoints fail: a contact sheet of the held-out images it gets most
wrong, and a count of the failures per basic keypoint.

    python scripts/detnet_failures.py [WEIGHTS] --data FOLDER [--samples N] [--out sheet.jpg]

For each of the first ``N`` images of a held-out shard folder it runs the network as capture
does (the ``humbi`` head, refined when the weights carry a refiner; no flip test) and counts
the basic keypoints more than 150 mm off after Procrustes alignment (the issue's PCK). The
sheet shows the worst ``--tiles`` images (person crop at twice its input size), the true 2D
keypoints as green rings and the detected ones as dots (red: left side, blue: right side,
white: pelvis), and the number of failed keypoints in the corner. It prints how the images
spread over failure counts, the share of failures carried by images with three or more (whole
poses gone wrong rather than single joints), and the failure rate per keypoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from fullcap.eval.detnet import _batches, _readers
from fullcap.eval.metrics import pa_errors
from fullcap.io import atomic_path
from fullcap.models.weights import load_detnet

_COLOURS = {"left": (0, 0, 255), "right": (255, 0, 0), "centre": (255, 255, 255)}  # BGR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="?", default="detnet_lite")
    ap.add_argument("--data", required=True, help="a held-out shard folder with 3D body labels")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--tiles", type=int, default=24, help="images on the sheet (rows of 6)")
    ap.add_argument("--out", type=Path, default=None, help="the sheet (.jpg or .png)")
    args = ap.parse_args()
    net = load_detnet(args.weights)
    cfg = net.config
    names = dict(cfg.extended)[cfg.refiner_output]
    index = [names.index(n) for n in cfg.basic]
    px = cfg.body_size / cfg.body_map_size  # input pixels per map pixel
    rows = []
    fails_all, counted_all = [], []
    for reader in _readers([args.data], 256):  # as `fullcap eval detnet`
        for batch in _batches(reader, net, args.samples, 16):
            with torch.no_grad():
                out = net(batch.body, heads=net.heads_for(cfg.refiner_output))
                uv, _, xyz = net.body_keypoints(out, cfg.refiner_output)
            t = batch.basic
            err, counted = pa_errors(xyz[:, index], t.xyz, t.valid2d & t.has3d[:, None], 5)
            failed = (err > 0.150) & counted
            fails_all.append(failed)
            counted_all.append(counted)
            for i in range(len(batch)):
                if counted[i].any():
                    rows.append((int(failed[i].sum()), batch.body[i], uv[i, index] * px,
                                 t.uv[i] * px, t.valid2d[i]))  # fmt: skip
    if not rows:
        raise SystemExit(f"{args.data}: no images with 3D body labels")
    failed, counted = torch.cat(fails_all), torch.cat(counted_all)
    per_image = failed.sum(1)[counted.any(1)]
    print(f"{args.data}: {len(per_image)} images, PCK@150mm-PA "
          f"{1 - failed.sum().item() / counted.sum().item():.3f}")  # fmt: skip
    print("images by failed keypoints (0, 1, ...):", torch.bincount(per_image).tolist())
    many = per_image[per_image >= 3].sum().item() / max(1, per_image.sum().item())
    print(f"share of failures in images with 3 or more: {many:.2f}")
    rate = failed.sum(0) / counted.sum(0).clamp(min=1)
    per_keypoint = zip(cfg.basic, rate.tolist(), strict=True)
    print("failure rate per keypoint:", ", ".join(f"{n} {r:.3f}" for n, r in per_keypoint))
    if args.out is None:
        return
    rows.sort(key=lambda r: -r[0])
    tiles = []
    for n_failed, image, pred, true, valid in rows[: args.tiles]:
        tile = np.ascontiguousarray(image.permute(1, 2, 0).numpy().astype(np.uint8)[:, :, ::-1])
        tile = cv2.resize(tile, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
        for j, name in enumerate(cfg.basic):
            side = "left" if "left" in name else "right" if "right" in name else "centre"
            colour = _COLOURS[side]
            if valid[j]:
                cv2.circle(tile, tuple(int(2 * c) for c in true[j]), 5, (0, 255, 0), 1, cv2.LINE_AA)
            cv2.circle(tile, tuple(int(2 * c) for c in pred[j]), 3, colour, -1, cv2.LINE_AA)
        cv2.putText(tile, str(n_failed), (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2)
        tiles.append(tile)
    while len(tiles) % 6:
        tiles.append(np.zeros_like(tiles[0]))
    sheet = np.vstack([np.hstack(tiles[i : i + 6]) for i in range(0, len(tiles), 6)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        ok, data = cv2.imencode(args.out.suffix or ".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise SystemExit(f"cannot encode {args.out}")
        Path(tmp).write_bytes(data.tobytes())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
