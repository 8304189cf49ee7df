"""Writers of capture results: frames.jsonl, result.npz, BVH, GLB, ARKit CSV/JSON, overlays.
One module per format; each writes atomically or line by line (see its docstring)."""
