"""Moving average over an action chunk's time axis, applied on read-back (`sampler.action_smoothing`).

Why: the small sim DiT reads each action back with white per-step noise (second difference ~0.04 rad
against the demonstrator's 0.001: bench/bench_chunk_smoothing.py, docs/training.md "Smoothing the chunk"),
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
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(a, pad, mode="edge"), window, axis=-2)
    return windows.mean(axis=-1, dtype=np.float64).astype(a.dtype, copy=False)
