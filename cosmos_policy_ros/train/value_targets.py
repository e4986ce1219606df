"""Value targets: Monte-Carlo returns with one terminal reward, rescaled to [-1, 1] (spec section 12.3).

r_{T-1} = R (1 for demos/successes, success_score for scored rollouts, 0 for failures),
G_t = gamma^(T-1-t) R, then 2 G/R - 1 if R > 0 else 2 G - 1. A sample at step t is trained on G_f
with f = min(t + chunk, T - 1): the value of the state the chunk leads to.
The one definition of the rule: the bag converter only stores `success` / `success_score`, and training
turns them into targets here, so a recorded label and its value target cannot disagree.
"""
from __future__ import annotations

import numpy as np


def episode_returns(T: int, reward: float, gamma: float) -> np.ndarray:
    """(T,) returns in [-1, 1] as upstream `dataset_common.py` computes them."""
    steps_to_go = (T - 1) - np.arange(T, dtype=np.float64)
    G = (gamma ** steps_to_go) * reward
    out = 2.0 * G / reward - 1.0 if reward > 0 else 2.0 * G - 1.0
    return out.astype(np.float32)


def terminal_reward(success: bool, success_score: float | None = None) -> float:
    """R at the last step: 0 for a failure, else the success score when the operator gave one, else 1.

    Upstream rewards only an episode's end, and counts a demonstration as a success (R = 1). Recorded
    scores are already in (0, 1] (`data.manifest.normalise_label`).
    """
    if not success:
        return 0.0
    return 1.0 if success_score is None else float(success_score)
