"""Hybrid training noise levels: 70 % log-normal(ln 4, 1.2), 30 % U[1, 85], times sqrt(T') (spec 10.3).

Drawn from a numpy Generator whose state is checkpointed, so a resumed run draws the same sigmas.
The formula is `model.precondition.sample_training_sigma`; this wrapper fixes the config mapping.
"""
from __future__ import annotations

import numpy as np
import torch

from cosmos_policy_ros.model.precondition import sample_training_sigma

from .config import TrainConfig


def draw_sigma(batch: int, rng: np.random.Generator, cfg: TrainConfig, num_latent_frames: int) -> torch.Tensor:
    return sample_training_sigma(batch, rng, p_mean=cfg.p_mean, p_std=cfg.p_std, uniform_prob=cfg.uniform_prob,
                                 uniform_range=tuple(cfg.uniform_range), num_latent_frames=num_latent_frames)
