"""Per-sample diagnostics of a step, gathered over ranks and micro steps, so the logged numbers are those of the
global batch whatever the world size (the same as objective.diagnostics on the whole batch in one process).

One row per sample: position in the global batch, kind, loss, and the read-back L1 (normalised scale)
of what that kind predicts - actions (policy), future proprio (world model), value (value) - NaN elsewhere.
"""
from __future__ import annotations

import math

import torch

from cosmos_policy_ros.model import layout as L
from cosmos_policy_ros.model.layout import LatentLayout

COLUMNS = ("position", "kind", "loss", "action_l1", "future_proprio_l1", "value_l1")
_KIND_NAMES = ("policy", "world", "value")


@torch.no_grad()
def sample_rows(pred: torch.Tensor, x0: torch.Tensor, kinds: torch.Tensor, per_sample: torch.Tensor,
                position: torch.Tensor, layout: LatentLayout) -> torch.Tensor:
    """-> (n, len(COLUMNS)) float32 on pred's device."""
    kinds = kinds.to(pred.device)
    rows = torch.full((len(kinds), len(COLUMNS)), math.nan, device=pred.device)
    rows[:, 0] = position.to(rows)
    rows[:, 1] = kinds.to(rows)
    rows[:, 2] = per_sample.float()
    act = (L.read_actions(pred, layout) - L.read_actions(x0, layout)).abs().flatten(1).mean(1)
    fut = (L.read_proprio(pred, layout) - L.read_proprio(x0, layout)).abs().flatten(1).mean(1)
    value = lambda z: z[:, :, layout.value].reshape(z.shape[0], -1).mean(1)  # noqa: E731
    val = (value(pred) - value(x0)).abs()
    for k, col in enumerate((act, fut, val)):
        rows[kinds == k, 3 + k] = col[kinds == k].float()
    return rows


def summarize(rows: torch.Tensor) -> dict[str, float]:
    """Rows of the whole global batch -> loss, loss per kind, read-back L1 per kind (kinds present only)."""
    rows = rows[rows[:, 0].argsort()].double().cpu()
    out = {"loss": float(rows[:, 2].mean())}
    for k, name in enumerate(_KIND_NAMES):
        m = rows[:, 1] == k
        if m.any():
            out[f"loss_{name}"] = float(rows[m, 2].mean())
    for k, name in enumerate(COLUMNS[3:]):
        m = rows[:, 1] == k
        if m.any():
            out[name] = float(rows[m, 3 + k].mean())
    return out
