"""Which rank this process is, and the process group torchrun asks for: one answer for the whole trainer.

`cosmos-aloha train` is the same command with or without torchrun. torchrun sets RANK / WORLD_SIZE /
LOCAL_RANK (and MASTER_ADDR / MASTER_PORT); `join` then makes the process group (nccl on CUDA, gloo on
CPU) and pins this rank to cuda:LOCAL_RANK. Without those variables nothing is initialised and the run
is the single-process loop. The trainer, the step batches and the checkpoints read `current()` rather
than the environment, so a process group made elsewhere (a test) counts the same.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cosmos_policy_ros.model.config import ConfigError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 alone logs, plots, writes JSON and exports."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        """More than one process: gradients and checkpoints go through the process group."""
        return self.world > 1


def launched_by_torchrun() -> bool:
    return all(v in os.environ for v in TORCHRUN_VARS)


def env_rank() -> int:
    """This process's rank from torchrun's environment (0 without torchrun), before any process group."""
    return int(os.environ.get("RANK", "0"))


def current() -> Ranks:
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def join(device: str | None = None) -> tuple[Ranks, str | None]:
    """Under torchrun: init the process group and pick this rank's device; else (Ranks(), device) untouched.

    device None picks CUDA when visible. A CUDA request without a visible GPU fails in one line.
    """
    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: rank {env_rank()} sees no CUDA device (train on the CPU: --device cpu)")
    if not launched_by_torchrun():
        return Ranks(), device
    local = int(os.environ["LOCAL_RANK"])
    if cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} CUDA devices visible: "
                              "--nproc-per-node must not exceed the GPUs of this node")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return current(), f"cuda:{local}" if cuda else "cpu"


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if current().parallel:
        dist.barrier()


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """Per flag: true on any rank. Decisions taken from a clock (time-based checkpoints, time budget) must be
    the same on every rank, or one rank waits in a collective the others never join."""
    if not current().parallel:
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """(n, k) per rank, n equal on every rank -> (world * n, k) on every rank, rank order."""
    if not current().parallel:
        return rows
    out = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(out, rows.contiguous())
    return torch.cat(out)
