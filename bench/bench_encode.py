"""Encode throughput of the training latent cache at real size, and what the cache costs on disk.

The 2B config's Wan2.1 VAE (random weights: speed does not depend on them) encodes synthetic 480x640
three-camera steps through the cache's own path (train/latent_store.py FrameEncoder: the nodes' preprocess_image
to 224, optional augmentation, the 17-pixel-frame prefix, VAE), batched as `train.encode_batch`. Prints:
- steps/s and camera-frames/s of preprocessing alone and of the whole encode (on --device; bf16 autocast on CUDA)
- bytes per step in the cache for float16 and float32, and the float16 rounding error against float32
- the cache size of a lab data set (episodes x steps) at each dtype

Usage: .venv/bin/python bench/bench_encode.py [--steps 4] [--batch 4] [--device cpu|cuda] [--augment 0]
A CPU run with a handful of steps takes about a minute on two cores; CUDA refuses in one line without a GPU.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cosmos_policy_ros.model.config import load_model_config  # noqa: E402
from cosmos_policy_ros.model.layout import LatentLayout  # noqa: E402
from cosmos_policy_ros.model.vae import WanVAE  # noqa: E402
from cosmos_policy_ros.train.config import TrainConfig  # noqa: E402
from cosmos_policy_ros.train.latent_store import EncodeSettings, FrameEncoder, vae_fingerprint  # noqa: E402
from cosmos_policy_ros.train.prepare import training_preprocessing  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "config/model/cosmos_policy_2b_aloha.yaml"))
    p.add_argument("--steps", type=int, default=4, help="robot steps to encode (3 camera frames each)")
    p.add_argument("--batch", type=int, default=4, help="steps per VAE call (train.encode_batch)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--augment", type=int, default=0, help="augmented copies (train.augment_copies)")
    p.add_argument("--resize", default="torch", choices=("torch", "pil_256_224"))
    p.add_argument("--episodes", type=int, default=300, help="lab data set size for the disk estimate")
    p.add_argument("--episode-steps", type=int, default=1000)
    ns = p.parse_args(argv)
    device = torch.device(ns.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device here; run with --device cpu (a handful of steps)")
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = load_model_config(ns.config)
    vae = WanVAE(cfg.vae)
    vae.init_weights(torch.Generator().manual_seed(0))
    vae.latent_mean.copy_(torch.tensor(cfg.vae.latent_mean))
    vae.latent_std.copy_(torch.tensor(cfg.vae.latent_std))
    vae = vae.float().eval().to(device)
    lay = LatentLayout.from_config(cfg.layout)
    tcfg = TrainConfig(augment_copies=ns.augment, image_resize=ns.resize, encode_batch=ns.batch)

    settings = EncodeSettings(vae=vae_fingerprint(vae), image_size=cfg.layout.image_size, cameras=lay.cameras,
                              preprocess=dataclasses.asdict(training_preprocessing(tcfg)), copies=ns.augment,
                              augment_seed=0 if ns.augment else None)
    enc = FrameEncoder(vae, lay, settings, device, ns.batch)
    rng = np.random.default_rng(0)
    raw = {c: (rng.random((ns.steps, 480, 640, 3)) * 255).astype(np.uint8) for c in lay.cameras}

    t0 = time.perf_counter()
    for c in lay.cameras:
        enc.preprocess(raw[c])
    t_pre = time.perf_counter() - t0

    enc.encode("warmup", {c: raw[c][:1] for c in lay.cameras})   # first call: allocator, cudnn autotune
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = []
    for s in range(0, ns.steps, ns.batch):
        out.append(enc.encode("bench", {c: raw[c][s:s + ns.batch] for c in lay.cameras}))
    _sync(device)
    t_enc = time.perf_counter() - t0
    enc.close()
    z = np.concatenate(out, axis=1)                     # (copies, steps, cameras, C, h, w) float32
    per_step = int(np.prod(z.shape[2:]))
    err = np.abs(z.astype(np.float16).astype(np.float32) - z)
    copies = z.shape[0]

    print(f"config {Path(ns.config).stem}: image {cfg.layout.image_size}, cameras {len(lay.cameras)}, "
          f"latent {z.shape[3:]} per camera, device {device}, batch {ns.batch}, copies {copies}")
    print(f"preprocess 480x640 -> {cfg.layout.image_size} ({ns.resize}): "
          f"{ns.steps * len(lay.cameras) / t_pre:.1f} camera-frames/s")
    print(f"encode (preprocess + {'augment + ' if ns.augment else ''}VAE): {ns.steps / t_enc:.2f} steps/s = "
          f"{ns.steps * len(lay.cameras) * copies / t_enc:.1f} camera-frames/s "
          f"({t_enc / ns.steps:.2f} s per step, {ns.steps} steps)")
    if device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    print(f"latent |z| mean {np.abs(z).mean():.3f}, max {np.abs(z).max():.3f}; float16 rounding error: "
          f"max {err.max():.2e}, mean {err.mean():.2e} (relative max {(err / np.maximum(np.abs(z), 1e-3)).max():.1e})")
    for dt, nbytes in (("float16", 2), ("float32", 4)):
        b = per_step * nbytes
        total = b * copies * ns.episodes * ns.episode_steps
        print(f"cache {dt}: {b / 1024:.1f} KiB per step per copy ({b // len(lay.cameras)} B per camera frame); "
              f"{ns.episodes} episodes x {ns.episode_steps} steps x {copies} copies = {total / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
