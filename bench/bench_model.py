"""Model benchmarks: CPU figures for the small configs; the full chunk and planning on a GPU (not part of CI).

1. Chunk latency and peak memory vs config size: VAE encode of the cameras + one policy sampling
   (action_steps DiT calls) + optional image decode, for tiny/small (and any YAML given).
2. Samples/s vs batch size for DiT sampling (what the planner's batched stages get).
3. Full 2B DiT: parameter count on the meta device and the time of ONE forward pass at batch 1
   (only with --with-2b; needs ~8 GB RAM in fp32, random weights).
4. --config NAME [--device cuda]: one model (random weights) through the PolicyEngine as the nodes run it:
   encode (3 cameras, VAE), sample (action_steps), decode (future cameras), chunk latency and peak GPU memory
   for the direct policy, then best-of-N planning (N 8, K 3, M 5: stage times, total, peak memory).
   The 2B config refuses to start without a CUDA GPU (a chunk would take about an hour on a CPU).

Usage: .venv/bin/python bench/bench_model.py [--configs tiny_test small] [--batches 1 2 4 8] [--with-2b]
       .venv/bin/python bench/bench_model.py --device cuda --config cosmos_policy_2b_aloha [--precision autocast]
           [--compile [reduce-overhead]] [--repeats 3] [--max-batch 40]
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

from cosmos_policy_ros.inference.engine import PolicyEngine  # noqa: E402
from cosmos_policy_ros.inference.normalization import DatasetStats  # noqa: E402
from cosmos_policy_ros.inference.planning import PlanConfig, plan  # noqa: E402
from cosmos_policy_ros.model import layout as L  # noqa: E402
from cosmos_policy_ros.model.config import load_model_config  # noqa: E402
from cosmos_policy_ros.model.dit import CosmosDiT, param_count  # noqa: E402
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel  # noqa: E402
from cosmos_policy_ros.model.text import T5EmbeddingStore  # noqa: E402

# Configs too large to run on a CPU (a chunk of the 2B model: ~1 h at 352 s per DiT pass, docs/model.md).
GPU_ONLY = ("cosmos_policy_2b_aloha",)
INSTRUCTION = "fold shirt"


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


def refusal(config: str, device: str, cuda_available: bool) -> str | None:
    """The one line that stops a run which would take hours (or cannot start), else None."""
    if device == "cuda" and not cuda_available:
        return (f"bench_model: --device cuda, but torch {torch.__version__} sees no CUDA GPU "
                f"(torch.cuda.is_available() is False); run this on the GPU machine")
    if device == "cpu" and config in GPU_ONLY:
        return (f"bench_model: {config} on a CPU would take about an hour per chunk (352 s per DiT pass); "
                f"run it with --device cuda on a GPU machine")
    return None


@torch.no_grad()
def random_weights(model: CosmosPolicyModel, seed: int = 0) -> None:
    """Random weights drawn on the model's device (a 2B CPU draw would take minutes): matrices and convs
    N(0, 1/fan_in), norm weights and VAE gammas 1, biases 0."""
    g = torch.Generator(device=model.device).manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.zero_()
        elif name.endswith("gamma") or p.ndim == 1:
            p.fill_(1.0)
        else:
            p.normal_(0.0, p[0].numel() ** -0.5, generator=g)


def _engine(name: str, device: str, precision: str, max_batch: int | None) -> PolicyEngine:
    cfg = load_model_config(ROOT / "config" / "model" / f"{name}.yaml")
    dtype = torch.float32 if precision in ("fp32", "autocast") else torch.bfloat16
    model = CosmosPolicyModel.build(cfg, device, dtype, seed=None)
    random_weights(model)
    model.autocast_dtype = torch.bfloat16 if precision == "autocast" else None
    lay = cfg.layout
    stats = {f"{kind}_{stat}": [float(v)] * lay.action_dim
             for kind in ("actions", "proprio") for stat, v in (("min", -1), ("max", 1))}
    g = torch.Generator().manual_seed(0)
    text = T5EmbeddingStore({INSTRUCTION: torch.randn(cfg.text_len, cfg.dit.crossattn_emb_channels, generator=g)})
    return PolicyEngine(model, DatasetStats.from_dict(stats, dim=lay.action_dim), text, max_batch=max_batch)


def _observation(engine: PolicyEngine, rng) -> dict:
    """Three 480x640 camera frames (the RealSense size; resized as upstream) and a proprio vector."""
    return {"images": {c: rng.integers(0, 255, (480, 640, 3), dtype="uint8") for c in engine.layout.cameras},
            "proprio": rng.uniform(-0.5, 0.5, engine.cfg.layout.proprio_dim), "instruction": INSTRUCTION}


def _peak_gb(device: str) -> str:
    if device != "cuda":
        return f"peak RSS {peak_rss_mb() / 1024:.1f} GB"
    return f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GB allocated, " \
           f"{torch.cuda.max_memory_reserved() / 2**30:.1f} GB reserved"


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def bench_engine(name: str, device: str, precision: str, compile_net: str | None, repeats: int,
                 max_batch: int | None, planning: bool) -> None:
    """Direct chunk and best-of-N planning as the nodes run them (random weights, median of repeats)."""
    import numpy as np

    engine = _engine(name, device, precision, max_batch)
    if compile_net:
        engine.model.compile_net(compile_net)
    rng = np.random.default_rng(0)
    obs = _observation(engine, rng)
    compiled = f", torch.compile {compile_net}" if compile_net else ""
    print(f"{name} on {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}), precision "
          f"{precision}{compiled}, DiT {param_count(engine.model.net) / 1e9:.3f} B params, VAE window "
          f"{engine.cfg.vae.temporal_window}, torch {torch.__version__}")
    _reset_peak(device)
    runs = []
    for r in range(repeats + 1):  # the first run warms up kernels (and compiles)
        out = engine.act(obs, seed=r, decode_images=True)
        runs.append(out.timings)
    t = {k: sorted(x[k] for x in runs[1:])[len(runs[1:]) // 2] for k in runs[-1]}
    print(f"direct: encode {t['encode_s'] * 1e3:.0f} ms | sample ({engine.cfg.sampler.action_steps} steps) "
          f"{t['sample_s'] * 1e3:.0f} ms | decode (future cameras) {t['decode_s'] * 1e3:.0f} ms | "
          f"chunk (encode + sample) {(t['encode_s'] + t['sample_s']) * 1e3:.0f} ms | {_peak_gb(device)}")
    if not planning:
        return
    pc = PlanConfig(num_candidates=8, world_steps=(1, 3, 5), value_steps=(1, 2, 3, 4, 5))
    _reset_peak(device)
    results = [plan(engine, obs, pc).timings for _ in range(max(1, repeats // 2) + 1)]
    t = {k: sorted(x[k] for x in results[1:])[len(results[1:]) // 2] for k in results[-1]}
    print(f"planning N 8, K 3, M 5 (batched stages{f', max batch {max_batch}' if max_batch else ''}): encode "
          f"{t['encode_s'] * 1e3:.0f} ms | actions {t['actions_s'] * 1e3:.0f} ms | world {t['world_s'] * 1e3:.0f} ms | "
          f"value {t['value_s'] * 1e3:.0f} ms | total {t['total_s']:.2f} s | {_peak_gb(device)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["tiny_test", "small"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    ap.add_argument("--batch-steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--decode", action="store_true", help="also time decoding the future camera images")
    ap.add_argument("--with-2b", action="store_true")
    ap.add_argument("--config", help="one config through the engine: direct chunk and planning (mode 4)")
    ap.add_argument("--device", choices=["cuda", "cpu"], help="for --config (default: cuda if available)")
    ap.add_argument("--precision", choices=["bf16", "autocast", "fp32"], default=None,
                    help="bf16: bf16 weights (upstream, default on cuda); autocast: fp32 weights + bf16 autocast")
    ap.add_argument("--compile", nargs="?", const="default", default=None,
                    choices=["default", "reduce-overhead", "max-autotune"],
                    help="torch.compile the DiT with this mode (reduce-overhead: + CUDA graphs); first runs compile")
    ap.add_argument("--max-batch", type=int, default=None, help="cap on the DiT batch (planning's value stage)")
    ap.add_argument("--no-planning", action="store_true", help="direct chunk only")
    args = ap.parse_args()
    if args.config:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        line = refusal(args.config, device, torch.cuda.is_available())
        if line:
            print(line, file=sys.stderr)
            return 2
        precision = args.precision or ("bf16" if device == "cuda" else "fp32")
        bench_engine(args.config, device, precision, args.compile, args.repeats, args.max_batch,
                     not args.no_planning)
        return 0
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
