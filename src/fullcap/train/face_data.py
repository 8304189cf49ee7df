"""Face crops for FaceNet, from synthetic shards (``face_like``, or the face shots of
``humbi_like``), with the ground truth the engine knows, or from a folder of a user's crops
(:class:`FolderCrops`); :class:`FaceData` mixes both.

Each item is a square crop around the face68 box (``margin`` times its longer side), made by
:func:`fullcap.synth.shards.augment_sample` (no mirroring: the face model's vertices and the
Left/Right expressions are not mirror-symmetric by index), and holds:

- ``image`` (3, S, S) uint8 RGB; ``K`` (3, 3) crop intrinsics (pixels); ``part`` (S, S) uint8
  part map (255 = occluder; zeros when the shards have none);
- ``landmarks`` (68, 2) crop pixels (projections of the face68 vertices, visible or not) and
  ``landmark_weight`` (68,) (1 inside the crop);
- with ``truth`` and a 3D source: ``vertices`` (V, 3) the true face vertices in the crop's
  camera frame (metres; the body model posed with the stored parameters, then the crop's
  in-plane rotation), ``expression`` (52,), ``identity`` (I,) (least-squares projection of
  the true head-frame face on the identity basis), ``sh`` (9, 3) the true lighting as
  order-2 SH in the crop's camera frame (the engine's SH plus its directional light projected
  onto order 2: ``max(n . l, 0) ~ sum_lm A_l Y_lm(l) Y_lm(n)``, ``A = (pi, 2 pi / 3, pi / 4)``),
  ``albedo`` (V, 3) the true linear albedo (the engine's appearance sample replayed from
  ``(seed, source, subject)``; ``has_albedo`` is False when the replay does not reproduce
  the stored skin colour); ``has_truth`` says whether these are real.

The engine's camera degradations (white balance, exposure, contrast, gamma, saturation, noise,
JPEG), applied after shading, and its directional light make the true albedo and SH an
imperfect photometric fit of the image (a fit can do better, by absorbing the degradations
into albedo and SH); :mod:`fullcap.eval.facenet` reports the truth's photometric error beside
the network's.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data

from fullcap.bodymodel.model import BodyModel
from fullcap.face.build import head_frame_shape
from fullcap.face.model import FaceModel
from fullcap.synth.camera import SHOTS
from fullcap.synth.scene import sh_basis, sh_to_camera
from fullcap.synth.shards import Augment, ShardDataset
from fullcap.synth.sources import get_source

__all__ = ["FaceCrops", "FaceData", "FolderCrops", "directional_to_sh"]

FACE_SHOT = SHOTS.index("face")
FACE_BOX = 3  # index of the face box in the engine's BOXES
_A_HAT = np.array([np.pi] + [2 * np.pi / 3] * 3 + [np.pi / 4] * 5)


def directional_to_sh(light_dir: np.ndarray, light_rgb: np.ndarray) -> np.ndarray:
    """Order-2 SH (9, 3) of the irradiance ``light_rgb * max(n . light_dir, 0)`` (unit
    direction (3,), linear RGB (3,)), in the frame of ``light_dir``."""
    return (_A_HAT * sh_basis(np.asarray(light_dir, np.float64)))[:, None] * np.asarray(light_rgb)


class FaceCrops(torch.utils.data.Dataset):
    """Face crops (and ground truth) from one or more synthetic shard directories.

    Args:
        roots: shard directories (``fullcap synth generate`` outputs).
        face_model: the face model whose vertices and bases the ground truth refers to.
        size: crop side in pixels (the network's input size).
        augment: random scale, shift and in-plane rotation (training); False: a fixed crop.
        seed: augmentation seed; ``set_epoch`` changes the draws.
        truth: compute the 3D ground truth (needs the body model).
        margin: crop side / longer side of the face68 box.
        min_face_px: skip samples whose face box is smaller (source image pixels).
        min_visible_landmarks: skip samples with fewer visible face68 landmarks (the engine's
            visibility: self-occlusion and drawn occluders): views of the back of the head,
            which the dome sources' "face" shots include.
        body_model: the body model (loaded when None and ``truth``).
    """

    def __init__(
        self,
        roots: Sequence[str | Path],
        face_model: FaceModel,
        size: int = 64,
        augment: bool = False,
        seed: int = 0,
        truth: bool = True,
        margin: float = 1.3,
        min_face_px: float = 16.0,
        min_visible_landmarks: int = 20,
        body_model: BodyModel | None = None,
    ):
        if isinstance(roots, str | Path):
            roots = [roots]
        if augment:
            aug = Augment(size, margin, (0.9, 1.12), 0.06, 15.0, 0.5, 0.0, 0.0)
        else:
            aug = Augment(size, margin, (1.0, 1.0), 0.0, 0.0, 0.0, 0.0, 0.0)
        self.size = int(size)
        self.sets = [ShardDataset(r, augment=aug, seed=seed) for r in roots]
        self.face = face_model
        self.truth = truth
        self.items: list[tuple[int, int]] = []
        for k, ds in enumerate(self.sets):
            shot, valid, boxes, vis = _read_columns(
                ds, ("shot", "box_valid", "boxes", "vis/face68")
            )
            side = np.maximum(boxes[:, FACE_BOX, 2] - boxes[:, FACE_BOX, 0],
                              boxes[:, FACE_BOX, 3] - boxes[:, FACE_BOX, 1])  # fmt: skip
            keep = (shot == FACE_SHOT) & (valid[:, FACE_BOX] > 0) & (side >= min_face_px)
            keep &= vis.sum(1) >= min_visible_landmarks  # not the back of the head
            self.items += [(k, int(i)) for i in np.nonzero(keep)[0]]
        if not self.items:
            raise ValueError(f"no face shots in {[str(r) for r in roots]}: generate face_like data")
        self._bm = body_model
        self._app = None
        self._neutral: tuple[torch.Tensor, torch.Tensor] | None = None
        self._ids = face_model.vertex_ids.cpu()

    def set_epoch(self, epoch: int) -> None:
        for ds in self.sets:
            ds.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def _models(self):
        if self._bm is None:
            self._bm = BodyModel.load()
        if self._app is None:
            from fullcap.synth.appearance import AppearanceModel

            self._app = AppearanceModel(self._bm)
        return self._bm, self._app

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, j = self.items[i]
        ds = self.sets[k]
        item = ds[j]
        s = self.size
        out: dict[str, Any] = {
            "image": item["image"],
            "K": item["K"].float(),
            "landmarks": item["kp2d/face68"].float(),
            "part": item.get("part", torch.zeros(s, s, dtype=torch.uint8)),
        }
        lm = out["landmarks"]
        out["landmark_weight"] = ((lm >= 0) & (lm < s)).all(-1).float()
        out.update(self._truth(ds, item))
        return out

    def _truth(self, ds: ShardDataset, item: dict[str, Any]) -> dict[str, Any]:
        fm = self.face
        t = _no_truth(fm)
        if not self.truth or not bool(item["has_3d"]) or "betas" not in item:
            return t
        bm, app = self._models()
        a = np.radians(float(item.get("rot_deg", 0.0)))
        Rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0, 0, 1.0]])
        betas, expr = item["betas"][None].float(), item["expression"][None].float()
        with torch.no_grad():
            posed = bm(
                betas=betas,
                expression=expr,
                pose=item["pose"][None].float(),
                global_orient=item["global_orient"][None].float(),
            ).vertices[0, self._ids]
            R = item["R"].double().numpy()
            v = (posed.double().numpy() + item["transl"].double().numpy()) @ R.T
            v = (v + item["t"].double().numpy()) @ Rz.T
            if self._neutral is None:  # the face rows of the shape model, gathered once
                ids, k = self._ids, bm.num_betas
                self._neutral = (
                    head_frame_shape(bm, ids, torch.zeros(1, k))[0],
                    head_frame_shape(bm, ids, torch.eye(k))
                    - head_frame_shape(bm, ids, torch.zeros(1, k)),
                )
            mean, basis = self._neutral
            neutral = mean + torch.einsum("bk,kvd->bvd", betas, basis[: betas.shape[1]])
            ident = fm.fit_identity(neutral, torch.zeros_like(expr))[0]  # identity only
        sh = item["sh"].double().numpy() + directional_to_sh(
            item["light_dir"].double().numpy(), item["light_rgb"].double().numpy()
        )
        t.update(
            has_truth=torch.tensor(True),
            vertices=torch.from_numpy(v).float(),
            expression=expr[0],
            identity=ident.float(),
            sh=torch.from_numpy(sh_to_camera(sh, Rz)).float(),
        )
        index = ds.files.index
        src = get_source(index["source"])
        rng = np.random.default_rng(
            np.random.SeedSequence(
                [int(index["seed"]), zlib.crc32(src.name.encode()), int(item["subject"]), 2]
            )
        )
        if src.rig.volume > 0:  # the engine's first draw from the subject generator
            rng.uniform(-src.rig.volume, src.rig.volume, 2)
        look = app.sample(rng, src.appearance)
        if np.allclose(look.summary, item["albedo"].numpy(), atol=1e-6):
            t["albedo"] = torch.from_numpy(look.albedo[self._ids.numpy()]).float()
            t["has_albedo"] = torch.tensor(True)
        return t


def _no_truth(fm: FaceModel) -> dict[str, torch.Tensor]:
    """The ground-truth fields of an item that has none (zeros, flags False)."""
    nv = fm.num_vertices
    return {
        "has_truth": torch.tensor(False),
        "has_albedo": torch.tensor(False),
        "vertices": torch.zeros(nv, 3),
        "expression": torch.zeros(fm.num_expressions),
        "identity": torch.zeros(fm.num_identity),
        "sh": torch.zeros(9, 3),
        "albedo": torch.zeros(nv, 3),
    }


class FolderCrops(torch.utils.data.Dataset):
    """A user's face crops: the images (``*.png``, ``*.jpg``, ``*.jpeg``) of a folder, each
    showing one face roughly centred and filling most of it (as a face detector's box with a
    25-30 % margin gives). Non-square images are centre-cropped to a square, then resized.

    Landmarks, optional: ``landmarks.json`` in the folder, ``{"file name": [[u, v] x 68]}``
    in the image's pixels (corner-origin), 300-W order; images without them get zero
    ``landmark_weight`` (photometric loss and priors only). The camera is unknown: K has
    ``fov_deg``. Items have the keys of :class:`FaceCrops`, with no ground truth.
    """

    def __init__(self, root: str | Path, face_model: FaceModel, size: int = 64, fov_deg=30.0):
        from fullcap.render.camera import intrinsics

        self.root = Path(root)
        self.files = sorted(
            p for p in self.root.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")
        )
        if not self.files:
            raise ValueError(f"{self.root} holds no .png/.jpg face crops")
        lm_path = self.root / "landmarks.json"
        self.landmarks = json.loads(lm_path.read_text()) if lm_path.exists() else {}
        self.size, self.face = int(size), face_model
        self.K = torch.from_numpy(intrinsics(self.size, self.size, fov_deg)).float()

    def set_epoch(self, epoch: int) -> None:
        """No augmentation: nothing changes between epochs."""

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import cv2

        path = self.files[i]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read image {path}")
        h, w = img.shape[:2]
        side = min(h, w)
        x0, y0 = (w - side) // 2, (h - side) // 2
        img = cv2.cvtColor(img[y0 : y0 + side, x0 : x0 + side], cv2.COLOR_BGR2RGB)
        img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        lm = torch.zeros(68, 2)
        weight = torch.zeros(68)
        if path.name in self.landmarks:
            pts = torch.tensor(self.landmarks[path.name], dtype=torch.float32).reshape(68, 2)
            lm = (pts - torch.tensor([x0, y0])) * (self.size / side)
            weight = ((lm >= 0) & (lm < self.size)).all(-1).float()
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))),
            "K": self.K.clone(),
            "landmarks": lm,
            "part": torch.zeros(self.size, self.size, dtype=torch.uint8),
            "landmark_weight": weight,
            **_no_truth(self.face),
        }


class FaceData(torch.utils.data.ConcatDataset):
    """Several face-crop sources as one dataset: each path is a synthetic shard directory
    (:class:`FaceCrops`, with ground truth) or a folder of a user's crops
    (:class:`FolderCrops`)."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        face_model: FaceModel,
        size: int = 64,
        augment: bool = False,
        seed: int = 0,
    ):
        if isinstance(paths, str | Path):
            paths = [paths]
        parts: list[torch.utils.data.Dataset] = []
        for p in paths:
            if (Path(p) / "index.json").exists():
                parts.append(FaceCrops([p], face_model, size=size, augment=augment, seed=seed))
            elif Path(p).is_dir():
                parts.append(FolderCrops(p, face_model, size=size))
            else:
                raise ValueError(f"{p} is neither a shard directory nor a folder of face crops")
        super().__init__(parts)

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)


def _read_columns(ds: ShardDataset, keys: Sequence[str]) -> list[np.ndarray]:
    """Whole label columns over the listed shards of a dataset (no image decoding)."""
    cols: list[list[np.ndarray]] = [[] for _ in keys]
    for s in range(len(ds.files.shards)):
        f = ds.files.handle(s)
        for c, key in enumerate(keys):
            cols[c].append(f.get_tensor(key))
    return [np.concatenate(c) for c in cols]
