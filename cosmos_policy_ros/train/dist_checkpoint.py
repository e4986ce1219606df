"""The sharded training state of a checkpoint, with torch.distributed.checkpoint (DCP).

<ckpt>/state/   net    the DiT's weights, keyed by parameter name (get_state_dict; DTensor shards under FSDP)
                optim  AdamW moments and step per parameter name
                ema    the EMA shadow (sharded like the weights under FSDP)
                vae    the frozen VAE (the same on every rank: written once)

Each rank writes only its shards; a reader of any world size (one process included) gets them
resharded to its own layout, so a run resumes bit-exact on the same world size and continues on
another. Save and load are collectives: every rank calls them.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.tensor import DTensor

STATE_DIR = "state"


@contextlib.contextmanager
def _quiet():
    """One process has no process group; DCP warns that it assumes one process, which is what we mean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def has_state(ckpt_dir: Path) -> bool:
    return (ckpt_dir / STATE_DIR / ".metadata").is_file()


def save(ckpt_dir: Path, net: nn.Module, opt: torch.optim.Optimizer, ema: dict, vae: nn.Module) -> None:
    model_sd, optim_sd = get_state_dict(net, opt)
    with _quiet():
        dcp.save({"net": model_sd, "optim": optim_sd, "ema": dict(ema), "vae": vae.state_dict()},
                 checkpoint_id=ckpt_dir / STATE_DIR)


def load(ckpt_dir: Path, net: nn.Module, opt: torch.optim.Optimizer, ema: dict, vae: nn.Module) -> None:
    """Weights and optimizer into net/opt (resharded); EMA and VAE tensors in place."""
    model_sd, optim_sd = get_state_dict(net, opt)
    state = {"net": model_sd, "optim": optim_sd, "ema": ema, "vae": vae.state_dict()}
    with _quiet():
        dcp.load(state, checkpoint_id=ckpt_dir / STATE_DIR)
    set_state_dict(net, opt, model_state_dict=state["net"], optim_state_dict=state["optim"])


def load_weights(ckpt_dir: Path, net: nn.Module, ema: dict, vae: nn.Module) -> None:
    """Net, EMA and VAE only, in this process alone (export): no process group needed."""
    state = {"net": net.state_dict(), "ema": ema, "vae": vae.state_dict()}
    with _quiet():
        dcp.load(state, checkpoint_id=ckpt_dir / STATE_DIR, no_dist=True)
    net.load_state_dict(state["net"])


def full_weights(net: nn.Module, ema: dict) -> tuple[dict, dict]:
    """(net, EMA) as full CPU tensors - a collective under FSDP; only rank 0's result is complete."""
    net_sd = get_model_state_dict(net, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    ema_sd = {k: (v.full_tensor() if isinstance(v, DTensor) else v).cpu() for k, v in ema.items()}
    return net_sd, ema_sd
