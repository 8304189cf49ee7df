"""The face model FaceNet regresses (a subset of the body model) and its differentiable image
formation: :mod:`fullcap.face.model`, :mod:`fullcap.face.build`, :mod:`fullcap.face.render`."""
