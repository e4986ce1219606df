"""Training step time and peak GPU memory of the 2B config (random weights), next to the planner's prediction.

Runs a few optimizer steps of the Cosmos Policy objective on random latents of the layout's shape, the way
`cosmos-aloha train` sets a GPU up: fp32 master weights and AdamW, bf16 compute (FSDP2 MixedPrecisionPolicy, or
autocast for plain/DDP), optional per-block activation checkpointing. One process (FSDP over a world of one
still shards nothing, but runs FSDP's all-gather/reduce path). Prints per setup: seconds per micro-batch,
samples/s, achieved TFLOP/s and MFU, peak memory (torch.cuda.max_memory_allocated) and what
`cosmos-aloha train --plan` predicts for it.

Usage (a GPU box; about 2-4 minutes for the default setups):
  .venv/bin/python bench/bench_train_2b.py [--setups fsdp:ckpt:8 ddp:off:2] [--steps 3] [--out result.json]
  .venv/bin/python bench/bench_train_2b.py --device cpu --config tiny_test --setups fsdp:ckpt:2   (smoke test)
Without a CUDA GPU the 2B config refuses in one line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cosmos_policy_ros.model import layout as L  # noqa: E402
from cosmos_policy_ros.model.config import load_model_config  # noqa: E402
from cosmos_policy_ros.model.dit import CosmosDiT  # noqa: E402
from cosmos_policy_ros.model.layout import LatentLayout  # noqa: E402
from cosmos_policy_ros.model.precondition import sample_training_sigma  # noqa: E402
from cosmos_policy_ros.train import memory_plan as mp  # noqa: E402
from cosmos_policy_ros.train.objective import diffusion_loss  # noqa: E402


def parse_setup(text: str) -> tuple[str, bool, int]:
    """'fsdp:ckpt:8' -> ('fsdp', True, 8); strategy none|ddp|fsdp, ckpt|off, micro-batch."""
    try:
        strategy, ck, micro = text.split(":")
        if strategy not in ("none", "ddp", "fsdp") or ck not in ("ckpt", "off"):
            raise ValueError
        return strategy, ck == "ckpt", int(micro)
    except ValueError:
        raise SystemExit(f"error: bad setup {text!r}: expected STRATEGY:CKPT:MICRO, e.g. fsdp:ckpt:8") from None


def checkpoint_blocks(net: CosmosDiT) -> None:
    """Recompute each block's activations in the backward pass (non-reentrant torch.utils.checkpoint)."""
    from torch.utils.checkpoint import checkpoint
    for block in net.blocks:
        inner = block.forward
        block.forward = lambda *a, _f=inner: checkpoint(_f, *a, use_reentrant=False)


def build(cfg, device: torch.device, strategy: str, ckpt: bool):
    with torch.device("meta"):
        net = CosmosDiT(cfg.dit)
    net = net.to_empty(device=device)
    net.init_weights(generator=None)
    net.float().train()
    if ckpt:
        checkpoint_blocks(net)
    autocast = True
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for block in net.blocks:
            fully_shard(block, mp_policy=policy)
        fully_shard(net, mp_policy=policy)
        autocast = False
    elif strategy == "ddp":
        net = torch.nn.parallel.DistributedDataParallel(net)
    return net, autocast


def run_setup(cfg, device, strategy: str, ckpt: bool, micro: int, steps: int, sizes: mp.ModelSizes) -> dict:
    lay = LatentLayout.from_config(cfg.layout)
    side = cfg.layout.image_size // cfg.vae.spatial_factor
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    net, autocast = build(cfg, device, strategy, ckpt)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1,
                            fused=device.type == "cuda")
    rng = np.random.default_rng(0)
    x0 = torch.randn(micro, cfg.dit.in_channels, lay.num_frames, side, side, device=device)
    mask = L.condition_mask(lay, "policy", micro, device=device)
    ctx = torch.randn(micro, cfg.text_len, cfg.dit.crossattn_emb_channels, device=device)
    times = []
    for s in range(steps + 1):  # the first step warms up kernels and allocates the optimizer state
        sync(device)
        t0 = time.perf_counter()
        sigma = sample_training_sigma(micro, rng, num_latent_frames=lay.num_frames).to(device)
        noise = torch.randn_like(x0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss, _, _ = diffusion_loss(net, x0, mask, ctx, sigma, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sync(device)
        if s:
            times.append(time.perf_counter() - t0)
    step = float(np.median(times))
    flops = (4 if ckpt else 3) * sizes.fwd_flops * micro / step
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else float("nan")
    del net, opt
    return {"strategy": strategy, "checkpointing": ckpt, "micro_batch": micro, "s_per_micro_batch": step,
            "samples_per_s": micro / step, "tflops": flops / 1e12, "peak_bytes": peak, "loss": float(loss.detach())}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="cosmos_policy_2b_aloha", help="config/model/<name>.yaml")
    p.add_argument("--device", default="cuda")
    p.add_argument("--setups", nargs="+", default=["fsdp:ckpt:8", "fsdp:ckpt:16", "none:off:2"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--gpu", help="GPU kind of config/train/gpus.yaml for the prediction (default: by memory)")
    p.add_argument("--out", help="write the figures as JSON here")
    ns = p.parse_args(argv)
    device = torch.device(ns.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: {ns.config} needs a CUDA GPU (a 2B training step on a CPU takes many minutes); "
              "smoke-test with --device cpu --config tiny_test", file=sys.stderr)
        return 2
    cfg = load_model_config(ROOT / "config" / "model" / f"{ns.config}.yaml")
    sizes = mp.measure(cfg)
    gpus, assume = mp.load_gpus()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        mem_gb = props.total_memory / 1e9
        kind = ns.gpu or min(gpus, key=lambda k: abs(gpus[k].memory_gb - mem_gb))
        gpu = mp.Gpu(f"{props.name}", mem_gb, gpus[kind].peak_bf16_tflops)
        print(f"GPU: {props.name}, {mem_gb:.1f} GB; peak bf16 taken from {kind}: {gpu.peak_bf16_tflops} TFLOP/s")
    else:
        gpu = gpus[ns.gpu or "h100_80"]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    import torch.distributed as dist
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    results = []
    print(f"{cfg.name}: {sizes.dit_params / 1e9:.3f} B DiT parameters, {sizes.tokens} tokens/sample")
    for text in ns.setups:
        strategy, ckpt, micro = parse_setup(text)
        pred = mp.plan_setup(sizes, gpu, 1, "ddp" if strategy in ("none", "ddp") else "fsdp", ckpt, assume)
        predicted = pred.fixed_bytes + micro * pred.act_bytes_per_sample
        try:
            r = run_setup(cfg, device, strategy, ckpt, micro, ns.steps, sizes)
        except torch.OutOfMemoryError:
            r = {"strategy": strategy, "checkpointing": ckpt, "micro_batch": micro, "error": "out of memory"}
            torch.cuda.empty_cache()
        r["predicted_peak_bytes"] = predicted
        r["mfu"] = r.get("tflops", float("nan")) / gpu.peak_bf16_tflops
        results.append(r)
        if "error" in r:
            print(f"{text:>14}: out of memory (planner predicted {predicted / 1e9:.1f} GB)")
        else:
            print(f"{text:>14}: {r['s_per_micro_batch']:.3f} s per micro-batch, {r['samples_per_s']:.2f} samples/s, "
                  f"{r['tflops']:.0f} TFLOP/s (MFU {r['mfu']:.0%}), peak {r['peak_bytes'] / 1e9:.1f} GB "
                  f"(planner {predicted / 1e9:.1f} GB), loss {r['loss']:.3f}")
    dist.destroy_process_group()
    if ns.out:
        Path(ns.out).write_text(json.dumps({"config": cfg.name, "device": str(device), "gpu": gpu.name,
                                            "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
