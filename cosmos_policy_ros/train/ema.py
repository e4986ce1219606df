"""Exponential moving average of the network weights (the evaluated weights of a short run).

Decay ramps as min(decay, (1+n)/(10+n)) so early averages are not dominated by the random init;
with a few thousand steps a fixed 0.999 would still carry much of step 0.

Under FSDP (train/parallel.py) the net's state dict holds DTensors sharded like its parameters; the
shadow is cloned from it, so each rank keeps and updates only its own shard (elementwise, no
communication), and the sharded checkpoint saves it as it is (train/dist_checkpoint.py).
"""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()
                       if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach().float(), alpha=1 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, sd: dict[str, torch.Tensor], num_updates: int) -> None:
        for k in self.shadow:
            self.shadow[k].copy_(sd[k])
        self.num_updates = num_updates

    def model_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """A full state dict of `model` with the averaged floats (buffers like counters as is)."""
        out = dict(model.state_dict())
        for k, v in self.shadow.items():
            out[k] = v.to(out[k].dtype)
        return out
