"""Aggregation of value predictions for planning (spec section 7.3); values are in [0, 1].

Computed as upstream's `aggregate_value_predictions` (cosmos_utils.py:766-821) does: on a float32 tensor, so
the threshold is compared in float32 (a value stored as float32(0.05) is *not* above 0.05, where a float64
comparison would say it is), and `lcb` subtracts the unbiased (n - 1) standard deviation of `torch.std`.
One deviation: `lcb` of a single value subtracts 0, where torch.std of one value is NaN.
"""
from __future__ import annotations

import torch

METHODS = ("majority_mean", "average", "lcb", "success_vote")


def aggregate_values(values, method: str = "majority_mean", threshold: float = 0.05,
                     lcb_k: float = 1.0) -> float:
    """Combine an ensemble of value predictions into one score.

    majority_mean (upstream ALOHA planning): if at least half the values exceed `threshold`, the mean
    of those values, else 0. average: mean. lcb: mean - k*std (unbiased). success_vote: fraction > threshold.
    """
    v = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if v.numel() == 0:
        raise ValueError("no value predictions to aggregate")
    if method == "majority_mean":
        mask = v > threshold
        n_success = mask.float().sum()
        mean_success = torch.where(mask, v, torch.zeros_like(v)).sum() / n_success.clamp(min=1)
        out = mean_success if n_success / v.numel() >= 0.5 else torch.zeros(())
    elif method == "average":
        out = v.mean()
    elif method == "lcb":
        out = v.mean() - lcb_k * (v.std() if v.numel() > 1 else torch.zeros(()))
    elif method == "success_vote":
        out = (v > threshold).float().mean()
    else:
        raise ValueError(f"unknown aggregation {method!r} (choose from {', '.join(METHODS)})")
    return float(out.clamp(0.0, 1.0))
