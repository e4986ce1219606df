"""World-model and value targets from a labelled episode (Cosmos Policy rollout training data).

Monte-Carlo return with a single terminal reward R (1 for a success or its success score, 0 for a
failure), G_t = gamma^(T-1-t) * R, rescaled to [-1, 1] as upstream's dataset_common does:
2*G/R - 1 if R > 0 else 2*G - 1 (so failures are -1 everywhere). A training sample at step t pairs
state_t with the action chunk a[t:t+k] (padded with the last action), the future state at
f = min(t+k, T-1) and the value target G_f.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def value_returns(num_steps: int, reward: float, gamma: float = 0.998) -> np.ndarray:
    """Per-step value targets in [-1, 1] for an episode of ``num_steps`` with terminal ``reward``."""
    t = np.arange(num_steps)
    g = gamma ** (num_steps - 1 - t) * reward
    return (2.0 * g / reward - 1.0) if reward > 0 else (2.0 * g - 1.0)


@dataclass
class Sample:
    state: np.ndarray          # (14,) qpos at t
    actions: np.ndarray        # (k, 14) action chunk from t
    future_state: np.ndarray   # (14,) qpos at f = min(t + k, T - 1)
    value: float               # value target at f
    future_index: int


def episode_samples(h5_path, chunk: int = 50, gamma: float = 0.998) -> list[Sample]:
    """Every (state, chunk, future state, value) sample of one converted episode; needs a label."""
    import h5py

    with h5py.File(h5_path, "r") as f:
        qpos = f["observations/qpos"][()]
        actions = f["action"][()]
        outcome = str(f.attrs.get("outcome", ""))
        score = float(f.attrs.get("success_score", float("nan")))
    if outcome not in ("success", "failure"):
        raise ValueError(f"{h5_path}: episode is unlabelled (outcome {outcome!r}); label it before building value targets")
    reward = (score if np.isfinite(score) and score > 0 else 1.0) if outcome == "success" else 0.0
    T = len(actions)
    values = value_returns(T, reward, gamma)
    out = []
    for t in range(T):
        idx = np.minimum(np.arange(t, t + chunk), T - 1)
        f = min(t + chunk, T - 1)
        out.append(Sample(qpos[t], actions[idx], qpos[f], float(values[f]), f))
    return out
