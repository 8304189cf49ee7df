"""The 68 face landmarks (300-W convention) as vertices of Anny's default topology.

``VERTICES[i]`` is the vertex that carries landmark ``face{i:02d}``; None until defined.
"""

VERTICES: tuple[int, ...] | None = None
