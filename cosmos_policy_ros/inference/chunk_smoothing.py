"""Moving average over an action chunk's time axis, applied on read-back (`sampler.action_smoothing`).

Why: the small sim DiT reads each action back with white per-step noise (second difference ~0.04 rad
against the demonstrator's 0.001: bench/bench_readback_noise.py, docs/training.md "Smoothing the chunk"),
so consecutive commands zig-zag at the executor's step cap. The demonstrator's motion is smooth on the scale
of a few ticks, so averaging over a short window removes most of that noise and little of the motion.
The chunk's ends are padded with their own first/last action so the first command still starts where the
model put it and the window never reads past the chunk.
"""
from __future__ import annotations

import numpy as np


def smooth_chunk(actions: np.ndarray, window: int) -> np.ndarray:
    """(…, chunk, dim) actions averaged over `window` consecutive steps (odd; 1 returns them unchanged)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"action_smoothing must be an odd window >= 1, got {window}")
    a = np.asarray(actions)
    if window == 1:
        return a
    half = window // 2
    pad = [(0, 0)] * a.ndim
    pad[-2] = (half, half)
    padded = np.pad(a, pad, mode="edge")
    csum = np.cumsum(padded, axis=-2, dtype=np.float64)
    zero = np.zeros_like(np.take(csum, [0], axis=-2))
    csum = np.concatenate([zero, csum], axis=-2)
    n = a.shape[-2]
    upper = np.take(csum, np.arange(window, window + n), axis=-2)
    lower = np.take(csum, np.arange(0, n), axis=-2)
    return ((upper - lower) / window).astype(a.dtype, copy=False)
