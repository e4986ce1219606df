"""Which training setup fits a model on given GPUs: DDP or FSDP, activation checkpointing, micro-batch.

Sizes are computed, not guessed: the DiT is built on the meta device (no memory, no compute) and one forward
pass of one sample runs there with a saved-tensor hook that adds up what autograd keeps for the backward pass.
Attention is counted as the fused GPU kernels store it (q, k, v, output and a float32 log-sum-exp per row), not
as the CPU math path, which would keep the full attention matrix. FLOPs come from torch's FlopCounterMode on
the same meta pass. What the planner cannot count (CUDA context, allocator fragmentation, achievable FLOPs) is
stated in config/train/gpus.yaml.

Per GPU, for P DiT parameters (AdamW, fp32 master weights, bf16 compute):
  states   4P master + 4P gradients + 8P moments (+ 4P EMA)        DDP: all of it; FSDP: divided by the GPUs
  DDP      + 4P gradient buckets + 2P bf16 weight copies (autocast)
  FSDP     + the unsharded bf16 weights of two blocks (current + prefetched) and one block's unsharded gradients
  frozen VAE weights, then micro-batch x activations per sample.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cosmos_policy_ros.config import config_path, read_yaml
from cosmos_policy_ros.errors import CosmosError
from cosmos_policy_ros.model.config import ModelConfig, load_model_config
from cosmos_policy_ros.model.dit import CosmosDiT
from cosmos_policy_ros.model.layout import LatentLayout
from cosmos_policy_ros.model.vae import WanVAE

GB = 1e9
GPUS_FILE = "train/gpus.yaml"
DEFAULT_MODEL = "model/cosmos_policy_2b_aloha.yaml"   # under config/


class PlanError(CosmosError, ValueError):
    """The planner's inputs are unusable (one line)."""


# ---------------------------------------------------------------- what the model needs, measured on meta


class _FusedAttentionProbe(torch.autograd.Function):
    """Stands in for scaled_dot_product_attention on the meta device, keeping what the fused GPU kernels keep."""

    @staticmethod
    def forward(ctx, q, k, v):
        out = torch.empty_like(q)
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad):  # never called: the probe only runs forward
        raise NotImplementedError


@dataclass(frozen=True)
class ModelSizes:
    """One sample through the DiT at the layout's size, in the dtype given to `measure`."""

    name: str
    dit_params: int
    block_params: int          # one DiT block (all blocks are the same size)
    num_blocks: int
    vae_params: int
    tokens: int                # DiT tokens per sample
    act_bytes: int             # saved for backward, whole DiT, no checkpointing
    act_block_bytes: int       # saved by one block
    block_input_bytes: int     # one block's hidden-state input (what per-block checkpointing keeps)
    fwd_flops: int             # one forward pass of one sample

    @property
    def act_outside_bytes(self) -> int:
        return self.act_bytes - self.num_blocks * self.act_block_bytes

    def act_checkpointed_bytes(self) -> int:
        """Per sample with per-block checkpointing: each block's input, the rest, one block recomputed at a time."""
        return self.num_blocks * self.block_input_bytes + self.act_outside_bytes + self.act_block_bytes


def _saved_bytes(fn) -> tuple[int, int]:
    """(bytes, count) of distinct tensors autograd saves while fn() runs; parameters (and views of them) excluded."""
    seen: dict[int, int] = {}
    keep = []

    def pack(t: torch.Tensor):
        base = t._base if t._base is not None else t
        if not isinstance(base, nn.Parameter):
            seen.setdefault(id(base), base.numel() * base.element_size())
            keep.append(base)  # ids stay unique while the graph lives
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values()), len(seen)


def measure(cfg: ModelConfig, dtype: torch.dtype = torch.bfloat16) -> ModelSizes:
    """Parameter counts, activation bytes and FLOPs of one sample, from a forward pass on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    lay = LatentLayout.from_config(cfg.layout)
    with torch.device("meta"):
        net = CosmosDiT(cfg.dit).to(dtype)
        vae = WanVAE(cfg.vae)
    side = cfg.latent_side
    T = lay.num_frames
    x = torch.zeros(1, cfg.dit.in_channels, T, side, side, device="meta", dtype=dtype)
    ts = torch.zeros(1, T, device="meta", dtype=dtype)
    ctx = torch.zeros(1, cfg.text_len, cfg.dit.crossattn_emb_channels, device="meta", dtype=dtype)
    for p in net.parameters():
        p.requires_grad_(True)

    with FlopCounterMode(display=False) as counter:
        net(x, ts, ctx)
    fwd_flops = int(counter.get_total_flops())

    real_sdpa = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = _FusedAttentionProbe.apply
    try:
        act, _ = _saved_bytes(lambda: net(x, ts, ctx))
        p, pt = cfg.dit.patch_spatial, cfg.dit.patch_temporal
        Tp, Hp = T // pt, side // p
        h = torch.zeros(1, Tp, Hp, Hp, cfg.dit.model_channels, device="meta", dtype=dtype)
        emb = torch.zeros(1, Tp, cfg.dit.model_channels, device="meta", dtype=dtype)
        lora = torch.zeros(1, Tp, 3 * cfg.dit.model_channels, device="meta", dtype=dtype)
        rope = net.pos_embedder(Tp, Hp, Hp)
        act_block, _ = _saved_bytes(lambda: net.blocks[0](h, emb, lora, ctx, rope))
    finally:
        torch.nn.functional.scaled_dot_product_attention = real_sdpa
    block_params = sum(q.numel() for q in net.blocks[0].parameters())
    return ModelSizes(
        name=cfg.name, dit_params=sum(q.numel() for q in net.parameters()), block_params=block_params,
        num_blocks=len(net.blocks), vae_params=sum(q.numel() for q in vae.parameters()), tokens=Tp * Hp * Hp,
        act_bytes=act, act_block_bytes=act_block, block_input_bytes=h.numel() * h.element_size(),
        fwd_flops=fwd_flops)


# ---------------------------------------------------------------- GPUs and setups


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gb: float
    peak_bf16_tflops: float


@dataclass(frozen=True)
class Assumptions:
    reserve_gb: float = 3.0
    fragmentation: float = 0.08
    mfu: float = 0.25
    global_batch: int = 200

    def usable_bytes(self, gpu: Gpu) -> float:
        return gpu.memory_gb * GB * (1 - self.fragmentation) - self.reserve_gb * GB


def load_gpus(path: str | Path | None = None) -> tuple[dict[str, Gpu], Assumptions]:
    """config/train/gpus.yaml -> ({name: Gpu}, Assumptions)."""
    raw = read_yaml(path or config_path(GPUS_FILE))
    try:
        gpus = {n: Gpu(n, float(g["memory_gb"]), float(g["peak_bf16_tflops"])) for n, g in raw["gpus"].items()}
        a = raw.get("assumptions", {})
        assume = Assumptions(**{k: type(getattr(Assumptions, k))(v) for k, v in a.items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(f"{path or GPUS_FILE}: bad GPU table ({exc})") from None
    return gpus, assume


@dataclass(frozen=True)
class Setup:
    """One way to train: strategy, activation checkpointing, micro-batch per GPU; and what it costs."""

    strategy: str              # "ddp" or "fsdp"
    checkpointing: bool
    fixed_bytes: float         # weights, gradients, optimizer, EMA, buffers, VAE (per GPU)
    act_bytes_per_sample: float
    max_micro_batch: int       # largest micro-batch that fits (0: not even one sample)
    micro_batch: int           # largest that fits AND divides the global batch over the GPUs (0: none)
    accumulation: int          # micro-steps per optimizer step
    peak_bytes: float          # at micro_batch
    step_s: float              # estimated optimizer-step time for the global batch (nan if it does not fit)

    @property
    def fits(self) -> bool:
        return self.micro_batch > 0


def fixed_bytes(sizes: ModelSizes, strategy: str, gpus: int, ema: bool) -> float:
    P, Pb = sizes.dit_params, sizes.block_params
    states = (4 + 4 + 8 + (4 if ema else 0)) * P
    vae = 4 * sizes.vae_params
    if strategy == "ddp":  # one process (gpus == 1) has no DDP gradient buckets
        return states + (4 * P if gpus > 1 else 0) + 2 * P + vae
    if strategy == "fsdp":
        other = P - sizes.num_blocks * Pb       # embedders, final layer: one more FSDP unit
        return states / gpus + 2 * 2 * Pb + 2 * other + 2 * Pb + vae
    raise PlanError(f"unknown strategy {strategy!r} (ddp or fsdp)")


def plan_setup(sizes: ModelSizes, gpu: Gpu, gpus: int, strategy: str, checkpointing: bool, assume: Assumptions,
               ema: bool = True, global_batch: int | None = None) -> Setup:
    G = global_batch or assume.global_batch
    fixed = fixed_bytes(sizes, strategy, gpus, ema)
    act = float(sizes.act_checkpointed_bytes() if checkpointing else sizes.act_bytes)
    room = assume.usable_bytes(gpu) - fixed
    max_micro = max(0, int(room // act)) if room > 0 else 0
    per_gpu = G / gpus
    micro = 0
    if per_gpu == int(per_gpu):
        micro = max((m for m in range(1, min(max_micro, int(per_gpu)) + 1) if int(per_gpu) % m == 0), default=0)
    accum = int(per_gpu) // micro if micro else 0
    passes = 4 if checkpointing else 3         # fwd + bwd (2x fwd) (+ the recomputed forward)
    step = (passes * sizes.fwd_flops * per_gpu / (gpu.peak_bf16_tflops * 1e12 * assume.mfu)) if micro else math.nan
    return Setup(strategy, checkpointing, fixed, act, max_micro, micro, accum, fixed + micro * act, step)


def plan(sizes: ModelSizes, gpu: Gpu, gpus: int, assume: Assumptions, ema: bool = True,
         global_batch: int | None = None) -> list[Setup]:
    """Every strategy x checkpointing combination; the chosen one is `best(...)`."""
    if gpus < 1:
        raise PlanError("--gpus must be >= 1")
    return [plan_setup(sizes, gpu, gpus, s, c, assume, ema, global_batch)
            for s in ("ddp", "fsdp") for c in (False, True)]


def best(setups: list[Setup]) -> Setup | None:
    """The fitting setup with the shortest estimated step; on a tie the larger micro-batch (fewer, fuller kernels:
    the estimate assumes the same utilisation at every micro-batch), then DDP (simpler)."""
    fitting = [s for s in setups if s.fits]
    return min(fitting, key=lambda s: (round(s.step_s, 3), -s.micro_batch, s.strategy != "ddp"), default=None)


def format_table(sizes: ModelSizes, gpu: Gpu, gpus: int, assume: Assumptions, setups: list[Setup],
                 global_batch: int) -> str:
    chosen = best(setups)
    lines = [
        f"{sizes.name}: DiT {sizes.dit_params / 1e9:.3f} B parameters ({sizes.num_blocks} blocks of "
        f"{sizes.block_params / 1e6:.1f} M), VAE {sizes.vae_params / 1e6:.0f} M, {sizes.tokens} tokens per sample, "
        f"{sizes.fwd_flops / 1e12:.2f} TFLOP forward per sample",
        f"activations per sample (bf16, fused attention): {sizes.act_bytes / GB:.2f} GB, with per-block "
        f"checkpointing {sizes.act_checkpointed_bytes() / GB:.2f} GB",
        f"{gpus} x {gpu.name} ({gpu.memory_gb:g} GB, {assume.usable_bytes(gpu) / GB:.1f} GB usable), global batch "
        f"{global_batch}, step time (compute only) at {assume.mfu:.0%} of {gpu.peak_bf16_tflops:g} TFLOP/s",
        "step s: compute only (communication and data loading not counted); bench/bench_train_2b.py measures",
        "",
        f"{'strategy':8} {'act.ckpt':8} {'fixed GB':>9} {'act GB/sample':>13} {'max micro':>9} {'micro':>5} "
        f"{'accum':>5} {'peak GB':>8} {'step s':>7}  fits",
    ]
    for s in setups:
        mark = "  <- chosen" if s is chosen else ""
        step = f"{s.step_s:7.1f}" if s.fits else f"{'-':>7}"
        name = "single" if s.strategy == "ddp" and gpus == 1 else s.strategy  # one process: no DDP wrapper
        lines.append(f"{name:8} {('on' if s.checkpointing else 'off'):8} {s.fixed_bytes / GB:9.1f} "
                     f"{s.act_bytes_per_sample / GB:13.2f} {s.max_micro_batch:9d} {s.micro_batch:5d} "
                     f"{s.accumulation:5d} {s.peak_bytes / GB:8.1f} {step}  {'yes' if s.fits else 'no'}{mark}")
    if chosen is None:
        lines.append("nothing fits: more GPUs (FSDP shards the optimizer state) or a card with more memory")
    else:
        lines.append(f"config: parallel: {chosen.strategy}, activation_checkpointing: "
                     f"{str(chosen.checkpointing).lower()}, micro_batch: {chosen.micro_batch}, batch_size: "
                     f"{global_batch}, precision: bf16")
    return "\n".join(lines)


def model_config_for(path: str | Path) -> ModelConfig:
    """A model YAML (config/model/...) or a training recipe whose `model:` names/holds one."""
    p = Path(path)
    if not p.is_file():
        p = config_path(path)
    raw = read_yaml(p)
    if "train" in raw or (isinstance(raw.get("model"), str)):
        from .config import load_recipe
        cfg, _ = load_recipe(p)
        if cfg is None:
            raise PlanError(f"{p}: the recipe takes its model from --init-from; give the model YAML instead")
        return cfg
    return load_model_config(p)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpus", type=int, default=1, help="GPUs in the run (all nodes)")
    p.add_argument("--gpu", default="h100_80", help="GPU kind from config/train/gpus.yaml")
    p.add_argument("--gpu-memory-gb", type=float, help="instead of --gpu's memory (decimal GB)")
    p.add_argument("--global-batch", type=int, help="global batch (default: config/train/gpus.yaml, 200)")
    p.add_argument("--no-ema", dest="ema", action="store_false",
                   help="leave out the fp32 EMA copy of the weights (the trainer keeps one; upstream did not)")


def run_plan(model: str | Path, ns: argparse.Namespace) -> str:
    """The table `cosmos-aloha train --plan` prints (ns: the arguments of `add_arguments`)."""
    gpus, assume = load_gpus()
    if ns.gpu not in gpus:
        raise PlanError(f"unknown GPU {ns.gpu!r} (known: {', '.join(gpus)}; or give --gpu-memory-gb)")
    gpu = gpus[ns.gpu]
    if ns.gpu_memory_gb:
        gpu = Gpu(f"{ns.gpu_memory_gb:g} GB GPU", ns.gpu_memory_gb, gpu.peak_bf16_tflops)
    G = ns.global_batch or assume.global_batch
    sizes = measure(model_config_for(model))
    return format_table(sizes, gpu, ns.gpus, assume, plan(sizes, gpu, ns.gpus, assume, ns.ema, G), G)
