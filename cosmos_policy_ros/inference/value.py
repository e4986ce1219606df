"""Aggregation of value predictions for planning (spec section 7.3); values are in [0, 1]."""
from __future__ import annotations

import numpy as np

METHODS = ("majority_mean", "average", "lcb", "success_vote")


def aggregate_values(values, method: str = "majority_mean", threshold: float = 0.05,
                     lcb_k: float = 1.0) -> float:
    """Combine an ensemble of value predictions into one score.

    majority_mean (upstream ALOHA planning): if at least half the values exceed `threshold`, the mean
    of those values, else 0. average: mean. lcb: mean - k*std. success_vote: fraction > threshold.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("no value predictions to aggregate")
    if method == "majority_mean":
        mask = v > threshold
        out = v[mask].mean() if mask.mean() >= 0.5 else 0.0
    elif method == "average":
        out = v.mean()
    elif method == "lcb":
        out = v.mean() - lcb_k * v.std()
    elif method == "success_vote":
        out = (v > threshold).mean()
    else:
        raise ValueError(f"unknown aggregation {method!r} (choose from {', '.join(METHODS)})")
    return float(np.clip(out, 0.0, 1.0))
