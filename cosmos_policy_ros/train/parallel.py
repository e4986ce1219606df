"""How the DiT runs over the ranks: DDP or FSDP2, bf16 compute, activation checkpointing per DiT block.

  train.parallel   none: the net as is | ddp: torch DDP, every rank holds all weights, gradients averaged
                   | fsdp: FSDP2 `fully_shard` per DiT block + root, weights/gradients/AdamW moments sharded
  train.precision  bf16 with fsdp: MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32) - fp32 master
                   weights, bf16 compute and all-gathers; with none/ddp: bf16 autocast around the forward
  activation_checkpointing: each block's forward under torch.utils.checkpoint (non-reentrant): its
                   activations are recomputed in backward (same numbers in fp32, less memory)

One process is always `none` (there is nothing to spread); FSDP's sharded parameters are DTensors, so
the EMA built from `net.state_dict()` after `build` is sharded the same way.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.checkpoint import checkpoint

from .config import TrainConfig
from .distributed import Ranks


@dataclass
class Engine:
    module: nn.Module   # what the forward runs through: the DDP wrapper, the sharded net or the net itself
    kind: str           # none | ddp | fsdp, as applied
    autocast: bool      # bf16 autocast around the forward (none/ddp with bf16)

    def gradient_sync(self, last_micro_step: bool):
        """Reduce gradients only after the last micro step of an accumulated step."""
        if self.kind == "ddp" and not last_micro_step:
            return self.module.no_sync()
        if self.kind == "fsdp":
            self.module.set_requires_gradient_sync(last_micro_step)
        return contextlib.nullcontext()


def uses_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """precision auto: bf16 on CUDA, fp32 on CPU (the single-process loop before torchrun support)."""
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")


def checkpoint_blocks(net: nn.Module) -> None:
    """Recompute each DiT block's activations in backward. Overrides the instance's forward, so parameter
    names and state dicts stay those of the plain net (FSDP's hooks run outside, as with checkpoint_wrapper)."""
    for block in net.blocks:
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)


def build(net: nn.Module, cfg: TrainConfig, ranks: Ranks, device: torch.device) -> Engine:
    """Wrap or shard `net` in place for cfg.parallel; build the optimizer and EMA from `net` afterwards."""
    bf16 = uses_bf16(cfg, device)
    if cfg.activation_checkpointing:
        checkpoint_blocks(net)
    if not ranks.parallel:
        return Engine(net, "none", bf16)
    if cfg.parallel == "ddp":
        ids = [device.index] if device.type == "cuda" else None
        # every rank built the same seeded net (or loaded the same files): no broadcast at init, so building a
        # Trainer needs no collective and rank 0 may prepare the dataset cache while the others wait
        return Engine(DistributedDataParallel(net, device_ids=ids, init_sync=False, forward_sync_buffers=False),
                      "ddp", bf16)
    mesh = init_device_mesh(device.type, (ranks.world,))
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None,
                              reduce_dtype=torch.float32 if bf16 else None)
    for block in net.blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(net, mesh=mesh, mp_policy=mp)
    return Engine(net, "fsdp", False)


def clip_grad_norm(params, max_norm: float) -> float:
    """torch's clip over all ranks' shards; -> the global norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(list(params), max_norm)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)
