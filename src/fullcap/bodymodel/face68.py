"""The 68 face landmarks (300-W convention) as vertices of Anny's default topology.

``VERTICES[i]`` is the vertex that carries landmark ``face{i:02d}``.

How they were chosen (on the template mesh in its reference pose, neutral expression, model
frame: metres, Z up, -Y forward, +X the person's left). Points were picked for the person's
right side and the midline. Each left point is the right point's mirror vertex, i.e. the
nearest vertex to (-x, y, z). So 300-W mirror pairs are exact mirror vertices, and the
midline points lie on x = 0.14 mm (where the mesh is symmetric).

- Eyes: the eye opening is where the head skin meets the 'eyes' part (the eye-cavity
  lining). The landmarks are on the front edge of the lid margin, one ring of vertices out
  from that seam (skin, visible from the front; the seam itself hides behind the eyeball
  on the upper lid). Corners are the extreme points of the opening along x. The inner
  corner is the tip of the opening next to the caruncle. 37/38 and 41/40 sit at 1/3 and
  2/3 of the corner-to-corner span, as in the mean 300-W shape.
- Nose: 27 is the deepest point of the midline profile between the eyes (sellion, at
  eye-corner height) and 30 the most forward point (pronasale). 28/29 sit at 1/3 and 2/3
  of the way in height. 33 is the subnasal crease (subnasale). 31 is at the alar base,
  in the crease between the nose wing and the cheek. 32 is on the lower nose outline,
  halfway between 31 and 33.
- Lips: the outer upper contour follows the convex ridge of the vermilion border (mean
  curvature): 51 is the Cupid's-bow dip and 50 its peak. The outer lower contour follows
  the lower edge of the convex lower-lip bulge. 48 is the commissure crease, 60 is where
  the contact line ends at the corner, 61-63 are the lower edge of the upper lip and
  65-67 the upper edge of the lower lip along that line (62 and 66 lie 1.8 mm apart in z).
  Spacing along x is that of the mean 300-W shape, scaled to the mouth width.
- Brows: the mesh has no brows. Their positions come from the mean 300-W shape (dlib's mean
  68-point shape), mapped onto the face by a least-squares scale and offset on the eye
  corners and the nose points (residuals < 2 mm). Each lands on the band that the
  browDown expression moves most, and takes the nearest vertex in the frontal image
  plane.
- Jaw: the heights of 0-8 come from the mean 300-W shape: 0 is level with the outer eye
  corner, 2 with the nose tip, 8 at the chin. Rays in the frontal image plane, cast from
  just below the nose tip towards those heights, give points on the face outline seen from
  the front. Each
  such point is the first visible point whose normal is within ~18 degrees of the ray
  (n.d >= 0.95), so the upper points are on the cheek/temple outline in front of the ear
  and the lower ones on the border of the mandible (gonion, chin). Each point takes the
  nearest such vertex. 8 is the menton, the chin's lowest front point. The upper points
  are not on the mandible: 300-W's contour starts at eye level, not at the ear lobe.

Checked in renders (frontal, three-quarter and open-mouth / blink / smile expressions) and by
``tests/test_face68.py``.
"""

VERTICES: tuple[int, ...] = (
    # 0-16 jaw contour, person's right (-X) -> chin (8) -> left
    *(3724, 5169, 5161, 5190, 5224, 915, 891, 918, 5280),
    *(7604, 7577, 7601, 11817, 11785, 11757, 11765, 10376),
    # 17-21 right eyebrow, outer -> inner
    *(261, 232, 222, 205, 209),
    # 22-26 left eyebrow, inner -> outer
    *(6968, 6964, 6980, 6989, 7014),
    # 27-30 nose bridge, sellion -> tip
    *(132, 131, 201, 297),
    # 31-35 nostril base, right alar base -> subnasale (33) -> left alar base
    *(286, 313, 343, 7060, 7039),
    # 36-41 right eye: outer corner, upper lid x2, inner corner, lower lid x2
    *(6764, 6741, 6747, 6753, 6756, 6760),
    # 42-47 left eye: inner corner, upper lid x2, outer corner, lower lid x2
    *(13333, 13327, 13321, 13344, 13340, 13336),
    # 48-59 outer lip: right corner, upper contour -> left corner (54), lower contour back
    *(428, 5338, 450, 455, 7194, 11924, 7172),
    *(7219, 7225, 492, 486, 480),
    # 60-67 inner lip: right inner corner, upper edge -> left inner corner (64), lower edge
    *(431, 472, 474, 7212, 7175, 7226, 493, 487),
)
