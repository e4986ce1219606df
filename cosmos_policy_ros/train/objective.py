"""The Cosmos Policy training objective on one batch (spec section 10.3), with per-kind diagnostics.

x_sigma = x0 + sigma * eps for every frame; the rectified-flow-preconditioned network predicts x0
with conditioning frames given clean (and replaced); loss = loss_scale * mean(w(sigma) * err^2),
w = (1+sigma)^2/sigma^2. One sigma per sample from the hybrid distribution (`noise.py`).
"""
from __future__ import annotations

import torch

from cosmos_policy_ros.model import layout as L
from cosmos_policy_ros.model.layout import LatentLayout
from cosmos_policy_ros.model.precondition import denoise, loss_weight


def diffusion_loss(net, x0: torch.Tensor, cond_mask: torch.Tensor, context: torch.Tensor, sigma: torch.Tensor,
                   noise: torch.Tensor, loss_scale: float = 10.0, sigma_data: float = 1.0,
                   loss_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (scalar loss, per-sample loss (B,), x0 prediction). loss_mask (B,T): frames that count (1) or not (0)."""
    s = sigma.reshape(-1, 1, 1, 1, 1)
    x_sigma = x0 + s * noise
    pred = denoise(net, x_sigma, sigma, x0, cond_mask, context, sigma_data)
    err = (x0.float() - pred) ** 2 * loss_weight(s, sigma_data)
    if loss_mask is not None:
        err = err * loss_mask.to(err)[:, None, :, None, None]
    per_sample = loss_scale * err.mean(dim=(1, 2, 3, 4))
    return per_sample.mean(), per_sample.detach(), pred.detach()


@torch.no_grad()
def diagnostics(pred: torch.Tensor, x0: torch.Tensor, kinds: torch.Tensor, per_sample: torch.Tensor,
                layout: LatentLayout) -> dict[str, float]:
    """Loss per kind plus read-back errors in the normalised scale (action L1, future proprio L1, value L1)."""
    out: dict[str, float] = {}
    for k, name in enumerate(("policy", "world", "value")):
        m = kinds == k
        if m.any():
            out[f"loss_{name}"] = float(per_sample[m].mean())
    pol, wor, val = kinds == 0, kinds == 1, kinds == 2
    if pol.any():
        out["action_l1"] = float((L.read_actions(pred[pol], layout) - L.read_actions(x0[pol], layout)).abs().mean())
    if wor.any():
        out["future_proprio_l1"] = float(
            (L.read_proprio(pred[wor], layout) - L.read_proprio(x0[wor], layout)).abs().mean())
    if val.any():
        v = lambda z: z[:, :, layout.value].reshape(z.shape[0], -1).mean(1)  # noqa: E731
        out["value_l1"] = float((v(pred[val]) - v(x0[val])).abs().mean())
    return out
