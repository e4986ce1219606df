"""Rectified-flow preconditioning with per-frame conditioning (spec sections 2.9, 10.3, 16).

t = sigma/(1+sigma); c_in = c_skip = 1-t, c_out = -t, c_noise = t (sigma_data = 1). Conditioning
frames enter clean and unscaled with timestep 0, and their x0 is replaced by the given latents.
Exposed as functions so the sampler and a training loop share one definition.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .dit import CosmosDiT


def rf_coefficients(sigma: torch.Tensor, sigma_data: float = 1.0):
    """(c_skip, c_out, c_in, c_noise) for rectified-flow scaling; sigma any shape."""
    s = sigma / sigma_data
    t = s / (1.0 + s)
    return 1.0 - t, -t * sigma_data, (1.0 - t) / sigma_data, t


def _bcast(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def denoise(net: CosmosDiT, x_sigma: torch.Tensor, sigma: torch.Tensor, given: torch.Tensor,
            cond_mask: torch.Tensor, context: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """x0 prediction (float32).

    x_sigma, given: (B,C,T,H,W); sigma: (B,); cond_mask: (B,T) in {0,1}; context: (B,L,D).
    """
    x_sigma = x_sigma.float()
    given = given.float()
    sigma = sigma.float().reshape(-1)
    c_skip, c_out, c_in, c_noise = rf_coefficients(sigma, sigma_data)
    m = cond_mask.float()[:, None, :, None, None]
    net_in = m * (given / sigma_data) + (1 - m) * (x_sigma * _bcast(c_in, 5))
    timesteps = (1 - cond_mask.float()) * c_noise[:, None]
    B, _, T, H, W = x_sigma.shape
    out = net(net_in, timesteps, context, condition_mask=m.expand(B, 1, T, H, W)).float()
    x0 = _bcast(c_skip, 5) * x_sigma + _bcast(c_out, 5) * out
    return m * given + (1 - m) * x0


# ---------------------------------------------------------------- training-side pieces (issue 8)


def loss_weight(sigma: torch.Tensor, sigma_data: float = 1.0) -> torch.Tensor:
    """Rectified-flow loss weight (1+sigma)^2/sigma^2 (sigma_data = 1)."""
    s = sigma / sigma_data
    return (1 + s) ** 2 / s ** 2


def sample_training_sigma(batch: int, rng: np.random.Generator, p_mean: float = math.log(4.0),
                          p_std: float = 1.2, uniform_prob: float = 0.3, uniform_range=(1.0, 85.0),
                          num_latent_frames: int = 11) -> torch.Tensor:
    """Hybrid noise draw: 70% log-normal(p_mean, p_std), 30% U[1,85], then x sqrt(T') (spec 10.3)."""
    logn = np.exp(p_mean + p_std * rng.standard_normal(batch))
    unif = rng.uniform(uniform_range[0], uniform_range[1], batch)
    pick = rng.uniform(size=batch) < uniform_prob
    sigma = np.where(pick, unif, logn) * math.sqrt(num_latent_frames)
    return torch.as_tensor(sigma, dtype=torch.float32)


def diffusion_loss(net: CosmosDiT, x0: torch.Tensor, given: torch.Tensor, cond_mask: torch.Tensor,
                   context: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                   loss_mask: torch.Tensor | None = None, loss_scale: float = 10.0,
                   sigma_data: float = 1.0) -> torch.Tensor:
    """loss_scale * mean(w(sigma) * (x0 - x0_hat)^2 [* loss_mask over frames (B,T)])."""
    x_sigma = x0 + _bcast(sigma, 5) * noise
    pred = denoise(net, x_sigma, sigma, given, cond_mask, context, sigma_data)
    err = (x0.float() - pred) ** 2 * _bcast(loss_weight(sigma, sigma_data), 5)
    if loss_mask is not None:
        err = err * loss_mask.float()[:, None, :, None, None]
    return loss_scale * err.mean()
