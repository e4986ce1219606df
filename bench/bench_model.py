"""Model benchmarks on CPU (prints figures; not part of CI).

1. Chunk latency and peak memory vs config size: VAE encode of the cameras + one policy sampling
   (action_steps DiT calls) + optional image decode, for tiny/small (and any YAML given).
2. Samples/s vs batch size for DiT sampling (what the planner's batched stages get).
3. Full 2B DiT: parameter count on the meta device and the time of ONE forward pass at batch 1
   (only with --with-2b; needs ~8 GB RAM in fp32, random weights).

Usage: .venv/bin/python bench/bench_model.py [--configs tiny_test small] [--batches 1 2 4 8] [--with-2b]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cosmos_policy_ros.model import layout as L  # noqa: E402
from cosmos_policy_ros.model.config import load_model_config  # noqa: E402
from cosmos_policy_ros.model.dit import CosmosDiT, param_count  # noqa: E402
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _inputs(model, B):
    cfg = model.cfg
    S = cfg.layout.image_size
    imgs = {c: torch.randint(0, 255, (B, S, S, 3), dtype=torch.uint8) for c in model.layout.cameras}
    ctx = torch.randn(B, cfg.text_len, cfg.dit.crossattn_emb_channels)
    return imgs, ctx


def bench_chunk(name: str, repeats: int, decode: bool) -> None:
    cfg = load_model_config(ROOT / "config" / "model" / f"{name}.yaml")
    model = CosmosPolicyModel.build(cfg, "cpu", seed=0)
    lay = model.layout
    imgs, ctx = _inputs(model, 1)
    mask = L.condition_mask(lay, "policy", 1)
    enc, gen, dec = [], [], []
    for r in range(repeats + 1):  # first run warms up oneDNN kernels
        t0 = time.perf_counter()
        z = model.encode_video(L.build_pixel_sequence(imgs, lay))
        t1 = time.perf_counter()
        out = model.generate(z, mask, ctx, [r], cfg.sampler.action_steps)
        t2 = time.perf_counter()
        if decode:
            model.decode_frames(out, lay.future_camera_frames)
        t3 = time.perf_counter()
        if r:
            enc.append(t1 - t0), gen.append(t2 - t1), dec.append(t3 - t2)
    def med(v):
        return sorted(v)[len(v) // 2]
    S = cfg.layout.image_size
    tokens = lay.num_frames * (S // cfg.vae.spatial_factor // cfg.dit.patch_spatial) ** 2
    print(f"{name:>12}: DiT {param_count(model.net) / 1e6:8.3f} M, VAE {param_count(model.vae) / 1e6:7.3f} M, "
          f"{len(lay.cameras)} cams {S}px, {tokens} tokens | encode {med(enc) * 1e3:8.1f} ms, "
          f"sample({cfg.sampler.action_steps} steps) {med(gen) * 1e3:8.1f} ms"
          + (f", decode {med(dec) * 1e3:8.1f} ms" if decode else "")
          + f" | chunk {(med(enc) + med(gen)) * 1e3:8.1f} ms | peak RSS {peak_rss_mb():.0f} MB")


def bench_batch(name: str, batches: list[int], steps: int) -> None:
    cfg = load_model_config(ROOT / "config" / "model" / f"{name}.yaml")
    model = CosmosPolicyModel.build(cfg, "cpu", seed=0)
    lay = model.layout
    S = cfg.layout.image_size // cfg.vae.spatial_factor
    base = None
    for B in batches:
        given = torch.randn(B, cfg.dit.in_channels, lay.num_frames, S, S)
        _, ctx = _inputs(model, B)
        mask = L.condition_mask(lay, "policy", B)
        model.generate(given[:1], mask[:1], ctx[:1], [0], 1)  # warm-up
        t0 = time.perf_counter()
        model.generate(given, mask, ctx, list(range(B)), steps)
        dt = time.perf_counter() - t0
        sps = B / dt
        base = base or sps
        print(f"{name:>12}: batch {B:3d}: {dt * 1e3:8.1f} ms for {steps} steps -> {sps:7.2f} samples/s "
              f"(x{sps / base:4.2f} vs batch 1)")


def bench_2b() -> None:
    cfg = load_model_config(ROOT / "config" / "model" / "cosmos_policy_2b_aloha.yaml")
    with torch.device("meta"):
        net = CosmosDiT(cfg.dit)
    print(f"2B DiT on meta: {param_count(net):,} params (released: {cfg.released_param_count:,})")
    net = net.to_empty(device="cpu")
    net.init_weights(std_scale=0.1)
    B, T, H = 1, 11, 28
    x = torch.randn(B, 16, T, H, H)
    with torch.no_grad():
        t0 = time.perf_counter()
        net(x, torch.rand(B, T), torch.randn(B, cfg.text_len, 1024))
        dt = time.perf_counter() - t0
    print(f"2B DiT one forward (B=1, 2156 tokens, fp32 CPU): {dt:.1f} s | peak RSS {peak_rss_mb():.0f} MB "
          f"-> a 10-step chunk ~{10 * dt:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["tiny_test", "small"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    ap.add_argument("--batch-steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode", action="store_true", help="also time decoding the future camera images")
    ap.add_argument("--with-2b", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("== chunk latency (batch 1) ==")
    for name in args.configs:
        bench_chunk(name, args.repeats, args.decode)
    print("== samples/s vs batch size (DiT sampling only) ==")
    for name in args.configs:
        bench_batch(name, args.batches, args.batch_steps)
    if args.with_2b:
        print("== full 2B ==")
        bench_2b()


if __name__ == "__main__":
    main()
