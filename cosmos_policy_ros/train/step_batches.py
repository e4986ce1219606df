"""The batch of training step s as a pure function of (seed, s): every rank plans the same global batch and
materialises only its own slice.

  global batch of step s: positions 0 .. B-1                        B = train.batch_size (global)
  | rank 0: micro 0 | micro 1 | .. | rank 1: micro 0 | micro 1 | .. |  micro = train.micro_batch per rank
  numpy Generator(PCG64([seed, s]))          sample indices, kinds (exactly 50/25/25 of B, shuffled over the
                                             positions), sigma, augmentation copy (sample sets that have some)
  torch Generator(seed from (seed, s, pos))  the noise of the sample at position pos

Why: the union over ranks and micro steps is the single-process batch of the same global size, a
DataLoader may prepare steps ahead in worker processes, and a resumed run draws exactly what the
uninterrupted one would have: no RNG state needs checkpointing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cosmos_policy_ros.model.config import ConfigError

from .config import TrainConfig
from .noise import draw_sigma


@dataclass
class MicroBatch:
    x0: torch.Tensor                 # (n, C, T, h, w) clean latent sequences
    cond_mask: torch.Tensor          # (n, T) conditioning frames
    loss_mask: torch.Tensor | None   # (n, T) frames that carry loss, None: all
    sigma: torch.Tensor              # (n,)
    noise: torch.Tensor              # like x0
    kinds: torch.Tensor              # (n,) 0 policy, 1 world model, 2 value
    position: torch.Tensor           # (n,) positions in the global batch


@dataclass
class StepPlan:
    index: np.ndarray                # (B,) sample indices
    kinds: torch.Tensor              # (B,)
    sigma: torch.Tensor              # (B,)
    aug_copy: np.ndarray | None      # (B,) augmentation copy per sample, None: the set has one


def step_generator(seed: int, step: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, step]))


def micro_layout(batch_size: int, micro_batch: int, world: int) -> tuple[int, int]:
    """-> (per-rank micro batch, accumulation steps); micro_batch 0 = the whole per-rank share."""
    if batch_size % world:
        raise ConfigError(f"train.batch_size {batch_size} (the global batch) does not split over {world} ranks")
    share = batch_size // world
    micro = micro_batch or share
    if share % micro:
        raise ConfigError(f"train.batch_size {batch_size} / ({world} ranks x micro_batch {micro}) is not a whole "
                          "number of accumulation steps")
    return micro, share // micro


def plan_step(data, cfg: TrainConfig, step: int, num_frames: int) -> StepPlan:
    rng = step_generator(cfg.seed, step)
    B = cfg.batch_size
    probs = _draw_probabilities(data, cfg)
    index = rng.integers(0, len(data), B) if probs is None else rng.choice(len(data), B, p=probs)
    kinds = data.kinds_for(B, cfg.mix)[torch.from_numpy(rng.permutation(B))]
    sigma = draw_sigma(B, rng, cfg, num_frames)
    copies = getattr(data, "num_aug_copies", 1)
    return StepPlan(index, kinds, sigma, rng.integers(0, copies, B) if copies > 1 else None)


def _draw_probabilities(data, cfg: TrainConfig) -> np.ndarray | None:
    """The sample set's per-sample probabilities for train.early_steps/early_weight, computed once per set."""
    if cfg.early_steps <= 0 or cfg.early_weight == 1.0:
        return None
    key = (cfg.early_steps, cfg.early_weight)
    cached = getattr(data, "_draw_probs", None)
    if cached is None or cached[0] != key:
        cached = (key, data.table.draw_probabilities(cfg.early_steps, cfg.early_weight))
        data._draw_probs = cached
    return cached[1]


def sample_noise(seed: int, step: int, positions: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    out = torch.empty(len(positions), *shape)
    for i, pos in enumerate(positions):
        s = int(np.random.SeedSequence([seed, step, int(pos)]).generate_state(1, np.uint64)[0])
        out[i] = torch.randn(shape, generator=torch.Generator().manual_seed(s))
    return out


class StepBatches(Dataset):
    """Map-style dataset indexed by step: item s = this rank's micro batches of step s."""

    def __init__(self, data, cfg: TrainConfig, num_frames: int, rank: int, world: int):
        self.data, self.cfg, self.num_frames, self.rank = data, cfg, num_frames, rank
        self.micro, self.accumulation = micro_layout(cfg.batch_size, cfg.micro_batch, world)

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, step: int) -> list[MicroBatch]:
        plan = plan_step(self.data, self.cfg, step, self.num_frames)
        first = self.rank * self.micro * self.accumulation
        return [self._micro(plan, step, np.arange(first + j * self.micro, first + (j + 1) * self.micro))
                for j in range(self.accumulation)]

    def _micro(self, plan: StepPlan, step: int, pos: np.ndarray) -> MicroBatch:
        q = self.cfg.value_query
        kinds = plan.kinds[pos]
        extra = {} if plan.aug_copy is None else {"aug_copy": plan.aug_copy[pos]}
        x0, mask = self.data.batch(plan.index[pos], kinds, q, **extra)
        return MicroBatch(x0=x0, cond_mask=mask, loss_mask=self.data.loss_mask(kinds, q), sigma=plan.sigma[pos],
                          noise=sample_noise(self.cfg.seed, step, pos, tuple(x0.shape[1:])), kinds=kinds,
                          position=torch.from_numpy(pos))


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # workers assemble batches; the training threads stay the trainer's


def step_loader(batches: StepBatches, first: int, stop: int, num_workers: int) -> DataLoader:
    """Steps first..stop-1 in order; num_workers > 0 prepares them ahead in worker processes."""
    return DataLoader(batches, batch_size=None, sampler=range(first, stop), num_workers=num_workers,
                      persistent_workers=False, worker_init_fn=_one_thread if num_workers else None)
