"""Throughput of the synthetic data engine: images per second with one process per worker.

Each worker process builds its engine (one torch thread, one llvmpipe raster thread), warms
up, waits at a barrier, then renders its share of ``n`` samples and encodes them as a shard
in memory (disk writes excluded). The wall time runs from the barrier to the last worker's
end, so process start-up and warm-up are not counted. :func:`stage_times` profiles one
process to say where the time goes.
"""

from __future__ import annotations

import cProfile
import multiprocessing as mp
import os
import pstats
import time
from typing import Any

__all__ = ["run", "stage_times"]

# Stage -> functions whose cumulative time it is (the first match wins, so order matters).
_STAGES = {
    "params (sampler)": ("samplers.py", "sample"),
    "body model forward": ("model.py", "forward"),
    "vertex normals": ("scene.py", "vertex_normals"),
    "shading (SH + light)": ("scene.py", "irradiance"),
    "appearance": ("appearance.py", "sample"),
    "camera": ("camera.py", "sample_camera"),
    "background": ("scene.py", "background"),
    "rasterise + read back": ("gl.py", "render"),
    "occluders": ("scene.py", "draw_occluders"),
    "degradations": ("scene.py", "degrade"),
    "labels": ("engine.py", "_labels"),
    "shard encoding": ("shards.py", "encode_shard"),
}


def _worker(source: str, size: int, count: int, seed: int, barrier: Any, queue: Any) -> None:
    import torch

    os.environ.setdefault("LP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    from fullcap.synth.engine import FORWARD_BATCH, SynthEngine
    from fullcap.synth.shards import encode_shard

    eng = SynthEngine(source, seed=seed, size=size)
    eng.render(range(10**6, 10**6 + FORWARD_BATCH))  # warm-up: shaders, caches
    barrier.wait()
    t0 = time.perf_counter()
    done = 0
    while done < count:
        k = min(256, count - done)
        encode_shard(eng.render(range(done, done + k)))
        done += k
    queue.put((count, time.perf_counter() - t0, time.perf_counter()))


def run(
    n: int = 512, size: int = 256, workers: int = 2, source: str = "mtc_like", seed: int = 0
) -> dict[str, Any]:
    """Render ``n`` samples with ``workers`` processes; return throughput figures.

    Returns:
        dict with images_per_s (all workers), ms_per_image_per_worker, n, size, workers,
        source, seconds, and load_before (1-minute load average when it started: other work
        on the machine lowers the figures).
    """
    if n <= 0 or size <= 0 or workers <= 0:
        raise ValueError(f"n, size and workers must be positive, got {n}, {size}, {workers}")
    load = os.getloadavg()[0]
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(workers + 1), ctx.Queue()
    shares = [n // workers + (w < n % workers) for w in range(workers)]
    procs = [
        ctx.Process(target=_worker, args=(source, size, c, seed + w, barrier, queue))
        for w, c in enumerate(shares)
    ]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[2] for r in results) - t0
    return {
        "images_per_s": n / wall,
        "ms_per_image_per_worker": 1000 * sum(r[1] / r[0] for r in results) / len(results),
        "n": n,
        "size": size,
        "workers": workers,
        "source": source,
        "seconds": wall,
        "load_before": load,
    }


def stage_times(n: int = 128, size: int = 256, source: str = "mtc_like") -> dict[str, float]:
    """Milliseconds per image of each stage, profiled in this process (one torch thread).

    Stages overlap where one calls another (e.g. "params" is inside nothing else, but the
    shading entries are separate calls); ``total`` is the wall time per image with the
    profiler on (slower than without by roughly 10%).
    """
    import torch

    from fullcap.synth.engine import FORWARD_BATCH, SynthEngine
    from fullcap.synth.shards import encode_shard

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        eng = SynthEngine(source, seed=0, size=size)
        eng.render(range(10**6, 10**6 + FORWARD_BATCH))
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        encode_shard(eng.render(range(n)))
        prof.disable()
        total = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    for stage, (file, func) in _STAGES.items():
        cum = sum(v[3] for (f, _, name), v in stats.items() if f.endswith(file) and name == func)
        out[stage] = 1000 * cum / n
    out["total"] = 1000 * total / n
    out["other"] = out["total"] - sum(v for k, v in out.items() if k != "total")
    return out
