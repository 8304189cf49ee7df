"""Synthetic training data engine: parameter samplers (shape, pose, hands, expression, gaze),
appearance, cameras, rendering and the writer of training shards.

Parameter samplers: :class:`fullcap.synth.samplers.ParamSampler` (all parameters of one
person), built on :mod:`fullcap.synth.joint_limits` (anatomical limits, mirroring),
:mod:`fullcap.synth.poses` (body pose prior), :mod:`fullcap.synth.hands` (hand pose prior)
and :mod:`fullcap.synth.collisions` (cheap self-intersection test).
"""
