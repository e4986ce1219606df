"""Seeded '2ab' multistep sampler in log-sigma, sigma_max -> sigma_min, final x0 call (spec section 6).

Batched over samples that may each carry their own seed and step count: sample i follows exactly
the trajectory it would follow alone (per-sample sigmas), so a batch of B equals B single calls.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

# x0 predictor: (x_sigma (B,...), sigma (B,), index tensor of the active samples) -> x0 (B,...)
X0Fn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def sigma_schedule(num_steps: int, sigma_max: float = 80.0, sigma_min: float = 4.0,
                   rho: float = 7.0) -> list[float]:
    """Sigmas at which x0 is predicted. `num_steps` counts the final clean call; 1 and 2 -> [sigma_max]."""
    if num_steps < 1:
        raise ValueError("num_steps must be >= 1")
    n = num_steps - 1 if num_steps > 1 else num_steps
    if n <= 1:
        return [float(sigma_max)]
    i = np.arange(n + 1, dtype=np.float64) / n
    s = (sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return [float(v) for v in s]


def initial_noise(seeds: Sequence[int], shape: tuple[int, ...], sigma_max: float) -> torch.Tensor:
    """x_T = RandomState(seed).standard_normal(shape) * sigma_max per sample, float32 (B, *shape)."""
    return torch.stack([
        torch.from_numpy(np.random.RandomState(int(s)).standard_normal((1, *shape)).astype(np.float32)[0])
        for s in seeds]) * float(sigma_max)


def _phi1(z: torch.Tensor) -> torch.Tensor:
    return torch.expm1(z) / z


def _phi2(z: torch.Tensor) -> torch.Tensor:
    return (_phi1(z) - 1.0) / z


def sample(x0_fn: X0Fn, x_T: torch.Tensor, steps: Sequence[int] | int, sigma_max: float = 80.0,
           sigma_min: float = 4.0, rho: float = 7.0) -> torch.Tensor:
    """Run the solver; returns the final x0 predictions (float32, like x_T).

    steps: one count for all samples or one per sample. At iteration k the x0 function sees only the
    samples that still need a call (index tensor passed along), each at its own sigma.
    """
    B = x_T.shape[0]
    if isinstance(steps, int):
        steps = [steps] * B
    if len(steps) != B:
        raise ValueError(f"{len(steps)} step counts for a batch of {B}")
    scheds = [sigma_schedule(s, sigma_max, sigma_min, rho) for s in steps]
    n_calls = [len(s) for s in scheds]
    x = x_T.double()
    out = torch.empty_like(x_T, dtype=torch.float32)
    prev: list[tuple[torch.Tensor, float] | None] = [None] * B
    for k in range(max(n_calls)):
        active = [i for i in range(B) if n_calls[i] > k]
        idx = torch.tensor(active, dtype=torch.long)
        sig = torch.tensor([scheds[i][k] for i in active], dtype=torch.float64)
        x0 = x0_fn(x[idx].float(), sig.float(), idx).double()
        for j, i in enumerate(active):
            if k == n_calls[i] - 1:
                out[i] = x0[j].float()
                continue
            s, t = scheds[i][k], scheds[i][k + 1]
            if prev[i] is None:  # first step: Euler in x0 form
                x[i] = ((s - t) / s) * x0[j] + (t / s) * x[i]
            else:
                x0p, sp = prev[i]
                dt = torch.tensor(np.log(s / t), dtype=torch.float64)
                c2 = float(np.log(s / sp) / np.log(s / t))
                p1, p2 = _phi1(-dt), _phi2(-dt)
                b1, b2 = p1 - p2 / c2, p2 / c2
                x[i] = torch.exp(-dt) * x[i] + dt * (b1 * x0[j] + b2 * x0p)
            prev[i] = (x0[j], s)
    return out
