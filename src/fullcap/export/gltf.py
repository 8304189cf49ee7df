"""GLB (binary glTF 2.0) export: the skinned whole-body mesh, its skeleton and the animation.

Contents: one mesh (POSITION = the shaped rest mesh, NORMAL, triangle indices, JOINTS_0 /
WEIGHTS_0 = the model's skinning weights limited to the 4 largest per vertex and
renormalised), one skin (a node per bone, inverse bind matrices), the 52 ARKit expressions
as morph targets (sparse, only when the run has expressions), and one animation: per-frame
rotations of every bone node, the root's translation, and the morph weights.

Frames: glTF is Y up with the asset facing +Z. The model frame maps in by
``C: (x, y, z) -> (x, z, -y)``, the camera frame by ``W = diag(1, -1, -1)`` (the camera at the
origin looking down -Z), as in :mod:`fullcap.export.bvh`. Bone nodes rest in the model's
reference pose (identity rotations, reference-pose offsets), so a node's animated rotation is
``C D_c C^T`` (the root's ``W G C^T``) and its world rotation ``W A_c C^T``. The inverse bind
matrix of bone c is ``[C T_c C^T | -C T_c C^T C h_c]`` with ``T_c = U_c R_c^T`` the bone's
rest-to-reference rotation and ``h_c`` its rest head, so that
``node_world(c) @ IBM_c = W [G_c | t_c] C^T`` reproduces the model's linear blend skinning
(:func:`fullcap.bodymodel.lbs.forward_kinematics`) exactly, up to the 4-influence limit.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import roma
import torch

from fullcap.export.bvh import BVH_FROM_MODEL as C
from fullcap.export.bvh import CAMERA_TO_WORLD as W
from fullcap.export.bvh import hold_frames, reference_offsets
from fullcap.io import atomic_write_bytes
from fullcap.types import ModelParams

__all__ = ["Glb", "read_glb", "skin_glb", "top_influences", "write_glb"]

_FLOAT, _UINT, _UBYTE, _USHORT = 5126, 5125, 5121, 5123
_DTYPES = {
    _FLOAT: np.float32,
    _UINT: np.uint32,
    _UBYTE: np.uint8,
    _USHORT: np.uint16,
    5122: np.int16,
}
_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def top_influences(weights: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The k largest skinning weights per vertex, renormalised: joints (V, k) int, weights
    (V, k) float32 (rows sum to 1; unused slots have weight 0)."""
    idx = np.argsort(-weights, axis=1)[:, :k]
    w = np.take_along_axis(weights, idx, axis=1)
    w = w / w.sum(1, keepdims=True)
    return idx, w.astype(np.float32)


def _normals(v: np.ndarray, faces: np.ndarray) -> np.ndarray:
    n = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    out = np.zeros_like(v)
    for i in range(3):
        np.add.at(out, faces[:, i], n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class _Builder:
    """Buffer views and accessors packed into one binary buffer."""

    def __init__(self):
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: np.ndarray, target: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        raw = np.ascontiguousarray(data).tobytes()
        v = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(raw)}
        if target is not None:
            v["target"] = target
        self.blob += raw
        self.views.append(v)
        return len(self.views) - 1

    def accessor(self, data: np.ndarray, kind: str, target=None, minmax=False, **extra) -> int:
        ctype = {np.float32: _FLOAT, np.uint32: _UINT, np.uint8: _UBYTE, np.uint16: _USHORT}
        comp = ctype[data.dtype.type]
        flat = data.reshape(len(data), -1)
        acc = {
            "bufferView": self.view(data, target),
            "componentType": comp,
            "count": len(data),
            "type": kind,
        } | extra
        if minmax:
            acc["min"], acc["max"] = flat.min(0).tolist(), flat.max(0).tolist()
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def sparse(self, count: int, ids: np.ndarray, values: np.ndarray) -> int:
        """A VEC3 float accessor of ``count`` zeros except ``values`` (n, 3) at ``ids``."""
        dense_min = np.minimum(values.min(0), 0).tolist()
        dense_max = np.maximum(values.max(0), 0).tolist()
        acc = {
            "componentType": _FLOAT,
            "count": count,
            "type": "VEC3",
            "min": dense_min,
            "max": dense_max,
            "sparse": {
                "count": len(ids),
                "indices": {"bufferView": self.view(ids.astype(np.uint32)), "componentType": _UINT},
                "values": {"bufferView": self.view(values.astype(np.float32))},
            },
        }
        self.accessors.append(acc)
        return len(self.accessors) - 1


def write_glb(
    path: str | os.PathLike[str],
    model,
    frames: list[ModelParams | None],
    times: np.ndarray,
    betas: np.ndarray | None = None,
) -> Path:
    """Write the skinned model and its animation as GLB (atomically).

    Args:
        model: the body model.
        frames: per frame the model parameters or None (holds the previous pose).
        times: (F,) timestamps, seconds (the animation starts at 0).
        betas: shape of the mesh and skeleton (default: the mean over frames).
    """
    params = hold_frames(frames)
    if betas is None:
        betas = np.mean([p.betas for p in params], axis=0)
    b = torch.as_tensor(betas, dtype=model.dtype)[None]
    with torch.no_grad():
        rest_v, rest_j, rest_r = model.shaped(b)
    rest_v, rest_j = rest_v[0].double().numpy(), rest_j[0].double().numpy()
    to_ref = model.reference_orient.double().numpy() @ np.swapaxes(rest_r[0].double().numpy(), 1, 2)
    faces = model.faces.cpu().numpy().astype(np.uint32)
    nb = model.num_bones
    parents = list(model.bone_parents)

    g = _Builder()
    pos = (rest_v @ C.T).astype(np.float32)
    attrs = {
        "POSITION": g.accessor(pos, "VEC3", 34962, minmax=True),
        "NORMAL": g.accessor(_normals(pos, faces).astype(np.float32), "VEC3", 34962),
    }
    joints, weights = top_influences(model.skin_weights.cpu().numpy())
    attrs["JOINTS_0"] = g.accessor(
        joints.astype(np.uint8 if nb <= 256 else np.uint16), "VEC4", 34962
    )
    attrs["WEIGHTS_0"] = g.accessor(weights, "VEC4", 34962)
    indices = g.accessor(faces.reshape(-1), "SCALAR", 34963)
    q = C @ to_ref @ C.T
    ibm = np.zeros((nb, 4, 4))
    ibm[:, :3, :3] = q
    ibm[:, :3, 3] = -(q @ (rest_j @ C.T)[..., None])[..., 0]
    ibm[:, 3, 3] = 1
    ibm_acc = g.accessor(np.swapaxes(ibm, 1, 2).astype(np.float32).reshape(nb, 16), "MAT4")

    expressions = [p.expression for p in params]
    with_expr = all(e is not None for e in expressions)
    primitive = {"attributes": attrs, "indices": indices, "mode": 4}
    mesh = {"name": "body", "primitives": [primitive]}
    if with_expr:
        ids = model.expression_vertex_ids.cpu().numpy()
        basis = model.expression_basis.double().cpu().numpy() @ C.T  # (E, Ve, 3)
        primitive["targets"] = [{"POSITION": g.sparse(len(pos), ids, d)} for d in basis]
        mesh["weights"] = [0.0] * len(basis)
        mesh["extras"] = {"targetNames": list(model.expression_names)}

    offsets = reference_offsets(model, betas) @ C.T
    go = np.stack([p.global_orient for p in params]).astype(np.float64)
    pose = np.stack([p.pose for p in params]).astype(np.float64)
    tr = np.stack([np.zeros(3) if p.transl is None else p.transl for p in params]) @ W.T
    rot = np.concatenate([(W @ go @ C.T)[:, None], C @ pose @ C.T], axis=1)  # (F, J, 3, 3)
    quat = roma.rotmat_to_unitquat(torch.from_numpy(rot)).numpy()  # XYZW, as glTF
    for k in range(1, len(quat)):  # consecutive keys in the same hemisphere (no spins)
        quat[k, (quat[k] * quat[k - 1]).sum(-1) < 0] *= -1
    nodes = []
    for j, name in enumerate(model.bone_names):
        node = {"name": name, "translation": offsets[j].tolist()}
        kids = [c for c, p in enumerate(parents) if p == j]
        if kids:
            node["children"] = kids
        nodes.append(node)
    nodes[0]["translation"] = tr[0].tolist()
    nodes[0]["rotation"] = quat[0, 0].tolist()
    nodes.append({"name": "body", "mesh": 0, "skin": 0})
    t = np.asarray(times, dtype=np.float64)
    t = (t - t[0]).astype(np.float32)
    t_acc = g.accessor(t, "SCALAR", minmax=True)
    samplers, channels = [], []
    for j in range(nb):
        samplers.append(
            {"input": t_acc, "output": g.accessor(quat[:, j].astype(np.float32), "VEC4")}
        )
        channels.append({"sampler": j, "target": {"node": j, "path": "rotation"}})
    samplers.append({"input": t_acc, "output": g.accessor(tr.astype(np.float32), "VEC3")})
    channels.append({"sampler": nb, "target": {"node": 0, "path": "translation"}})
    if with_expr:
        w = np.stack(expressions).astype(np.float32).reshape(-1)
        samplers.append({"input": t_acc, "output": g.accessor(w, "SCALAR")})
        channels.append({"sampler": nb + 1, "target": {"node": nb, "path": "weights"}})
    doc = {
        "asset": {"version": "2.0", "generator": "fullcap"},
        "scene": 0,
        "scenes": [{"nodes": [0, nb]}],
        "nodes": nodes,
        "meshes": [mesh],
        "skins": [{"inverseBindMatrices": ibm_acc, "joints": list(range(nb)), "skeleton": 0}],
        "animations": [{"name": "capture", "samplers": samplers, "channels": channels}],
        "accessors": g.accessors,
        "bufferViews": g.views,
        "buffers": [{"byteLength": len(g.blob)}],
    }
    return atomic_write_bytes(path, _pack(doc, bytes(g.blob)))


def _pack(doc: dict, blob: bytes) -> bytes:
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    blob += b"\0" * (-len(blob) % 4)
    total = 12 + 8 + len(js) + 8 + len(blob)
    return (
        struct.pack("<4sII", b"glTF", 2, total)
        + struct.pack("<I4s", len(js), b"JSON")
        + js
        + struct.pack("<I4s", len(blob), b"BIN\0")
        + blob
    )


class Glb:
    """A parsed GLB: ``doc`` (the JSON) and :meth:`accessor` to read data as numpy."""

    def __init__(self, doc: dict, blob: bytes):
        self.doc, self.blob = doc, blob

    def _view(self, index: int, dtype, count: int, width: int, offset: int = 0) -> np.ndarray:
        v = self.doc["bufferViews"][index]
        start = v.get("byteOffset", 0) + offset
        n = count * width * np.dtype(dtype).itemsize
        if v.get("byteStride") not in (None, width * np.dtype(dtype).itemsize):
            raise ValueError("interleaved buffer views are not supported")
        if start + n > v.get("byteOffset", 0) + v["byteLength"] or start + n > len(self.blob):
            raise ValueError(f"buffer view {index} is too short for its accessor")
        return np.frombuffer(self.blob, dtype, count * width, start).reshape(count, width)

    def accessor(self, index: int) -> np.ndarray:
        """(count, components) array of accessor ``index`` (sparse accessors densified)."""
        a = self.doc["accessors"][index]
        dtype, width = _DTYPES[a["componentType"]], _SIZES[a["type"]]
        if "bufferView" in a:
            out = self._view(a["bufferView"], dtype, a["count"], width, a.get("byteOffset", 0))
            out = out.copy()
        else:
            out = np.zeros((a["count"], width), dtype)
        sp = a.get("sparse")
        if sp:
            ids = self._view(
                sp["indices"]["bufferView"], _DTYPES[sp["indices"]["componentType"]], sp["count"], 1
            )
            out[ids[:, 0]] = self._view(sp["values"]["bufferView"], dtype, sp["count"], width)
        return out


def read_glb(path: str | os.PathLike[str]) -> Glb:
    """Parse a GLB file; raises ValueError when the container is malformed."""
    data = Path(path).read_bytes()
    if len(data) < 20 or data[:4] != b"glTF":
        raise ValueError(f"{path} is not a GLB file")
    _, version, total = struct.unpack_from("<4sII", data)
    if version != 2 or total != len(data):
        raise ValueError(f"{path}: GLB version {version}, length {total} vs {len(data)} bytes")
    n_js, kind = struct.unpack_from("<I4s", data, 12)
    if kind != b"JSON":
        raise ValueError(f"{path}: first chunk is not JSON")
    doc = json.loads(data[20 : 20 + n_js])
    blob = b""
    if 20 + n_js < len(data):
        n_bin, kind = struct.unpack_from("<I4s", data, 20 + n_js)
        if kind != b"BIN\0":
            raise ValueError(f"{path}: second chunk is not BIN")
        blob = data[28 + n_js : 28 + n_js + n_bin]
    if doc.get("buffers") and doc["buffers"][0]["byteLength"] > len(blob):
        raise ValueError(f"{path}: BIN chunk shorter than the buffer")
    return Glb(doc, blob)


def _trs(node: dict) -> np.ndarray:
    m = np.eye(4)
    if "rotation" in node:
        m[:3, :3] = roma.unitquat_to_rotmat(
            torch.tensor(node["rotation"], dtype=torch.float64)
        ).numpy()
    m[:3, 3] = node.get("translation", [0, 0, 0])
    return m


def skin_glb(glb: Glb, frame: int) -> np.ndarray:
    """Vertices (V, 3) of the GLB's skinned mesh at animation key ``frame``, computed from the
    file alone (node hierarchy, animation keys, morph weights, skin, inverse bind matrices)."""
    doc = glb.doc
    nodes = [dict(n) for n in doc["nodes"]]
    anim = doc["animations"][0]
    weights = None
    for ch in anim["channels"]:
        out = glb.accessor(anim["samplers"][ch["sampler"]]["output"])
        node, path = ch["target"]["node"], ch["target"]["path"]
        if path == "weights":
            n_t = len(doc["meshes"][nodes[node]["mesh"]]["primitives"][0]["targets"])
            weights = out.reshape(-1, n_t)[frame]
        else:
            nodes[node][path] = out[frame].tolist()
    world: dict[int, np.ndarray] = {}

    def visit(i: int, parent: np.ndarray) -> None:
        world[i] = parent @ _trs(nodes[i])
        for c in nodes[i].get("children", []):
            visit(c, world[i])

    for r in doc["scenes"][doc.get("scene", 0)]["nodes"]:
        visit(r, np.eye(4))
    skin = doc["skins"][0]
    ibm = glb.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    mats = np.stack([world[j] @ ibm[k] for k, j in enumerate(skin["joints"])])
    prim = doc["meshes"][0]["primitives"][0]
    pos = glb.accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    if weights is not None:
        for w, target in zip(weights, prim["targets"], strict=True):
            pos = pos + w * glb.accessor(target["POSITION"])
    jnt = glb.accessor(prim["attributes"]["JOINTS_0"]).astype(np.int64)
    wgt = glb.accessor(prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
    blended = (mats[jnt] * wgt[..., None, None]).sum(1)  # (V, 4, 4)
    return (blended[:, :3, :3] @ pos[..., None])[..., 0] + blended[:, :3, 3]
