"""How precise is an action chunk read back from its latent frame, per latent layout (copies of the chunk)?

The action chunk (chunk x 14, normalised to [-1, 1]) is tiled end to end over its latent frame
(model/layout.py tile_to_frame) and read back as the mean of the complete copies (read_from_frame). The DiT's
sample of that frame carries an error per latent value; averaging copies shrinks it, as far as the copies'
errors are independent. This bench

1. measures that error on the bundled checkpoint: for observations of scripted demos of its own training
   seeds (1000+), it samples the action frame with several seeds and compares every latent value with the
   tiled demo chunk (RMS per value, the spread between seeds, and the correlation rho between the errors of
   the two copies of the same action value that the 8x8x16 frame holds for the first 324 values);
2. writes demo chunks into frames of 8x8, 12x12 and 16x16 latents (64/96/128 px images, 16 channels) for
   chunks of 50 and 25 actions, adds Gaussian noise of that size (independent per value, and with the
   measured rho shared between the copies of one value), reads back, and prints the error in radians at the
   arm joints and in cm at the grasp site (the sim arm's forward kinematics, sim/ik.py).

    MUJOCO_GL=egl .venv/bin/python bench/bench_readback_noise.py [--episodes 2] [--obs 8] [--samples 4]
    .venv/bin/python bench/bench_readback_noise.py --sigma 0.07 --rho 0.3     # skip the measurement
Prints two tables; not part of the test suite. About 20 s on one core (measurement included).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

CHANNELS = 16
FRAMES = ((8, 64), (12, 96), (16, 128))     # latent side, image side
CHUNKS = (50, 25)


def demo_episodes(n: int, first_seed: int, size: int, camera: str):
    """n scripted demos (the bundled checkpoint's training seeds start at 1000), rendered as it was trained."""
    from cosmos_policy_ros.sim.episodes import run_demo_episode
    from cosmos_policy_ros.sim.sim_aloha import SimAloha

    sim = SimAloha("transfer_cube", width=size, height=size)
    try:
        return [run_demo_episode(sim, "transfer_cube", first_seed + i, cameras=(camera,), width=size, height=size)
                for i in range(n)]
    finally:
        sim.close()


def measure_dit_error(engine, episodes, n_obs: int, n_samples: int, instruction: str) -> dict:
    """Per-value error of the DiT's action frame against the tiled demo chunk, over observations x seeds."""
    from cosmos_policy_ros.model import layout as L

    lay, stats = engine.layout, engine.stats
    n = lay.chunk_len * lay.action_dim
    errors, spreads, readback = [], [], []
    for ep in episodes:
        cam = lay.cameras[0]
        for t in np.linspace(0, len(ep) - lay.chunk_len, n_obs // len(episodes)).astype(int):
            obs = {"images": {cam: ep.images[cam][t]}, "proprio": ep.qpos[t], "instruction": instruction}
            state = engine.prepare(obs)
            latent = engine.sample_actions(state, list(range(n_samples)))[:, :, lay.action].float()  # (S,C,h,w)
            target = torch.from_numpy(stats.normalize_actions(ep.actions[t:t + lay.chunk_len])).float()
            tiled = L.tile_to_frame(target.reshape(1, -1), tuple(latent.shape[1:]))
            errors.append((latent - tiled).reshape(n_samples, -1))
            spreads.append((latent - latent.mean(0, keepdim=True)).reshape(n_samples, -1))
            readback.append((L.read_from_frame(latent, n) - target.reshape(1, -1)).abs().mean())
    err = torch.cat(errors)                                   # (obs x samples, values in the frame)
    spare = err.shape[1] - n                                  # values of the second, partial copy
    rho = float(np.corrcoef(err[:, :spare].reshape(-1), err[:, n:n + spare].reshape(-1))[0, 1]) if spare else 0.0
    return {"sigma": float(err.pow(2).mean().sqrt()), "seed_spread": float(torch.cat(spreads).pow(2).mean().sqrt()),
            "bias": float(err.reshape(-1, n_samples, err.shape[1]).mean(1).pow(2).mean().sqrt()),
            "rho": rho, "readback_l1": float(torch.stack(readback).mean()), "observations": len(readback)}


class GraspFK:
    """Grasp-site position of each sim arm for 14-D joint vectors (left 6 + gripper, right 6 + gripper)."""

    def __init__(self):
        from cosmos_policy_ros.sim.demonstrator import ARM_JOINTS
        from cosmos_policy_ros.sim.ik import ArmIK
        from cosmos_policy_ros.sim.sim_aloha import SimAloha
        from cosmos_policy_ros.sim.world import grasp_site_name

        sim = SimAloha("transfer_cube", width=64, height=64)
        prefix = sim.wc.arm_prefix
        self.arms = {s: ArmIK(sim.model, [f"{prefix[s]}/{j}" for j in ARM_JOINTS], grasp_site_name(s))
                     for s in ("left", "right")}
        self.cols = {"left": slice(0, 6), "right": slice(7, 13)}

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(N,14) x2 -> (N, 2) m between the grasp sites each arm reaches."""
        out = np.zeros((len(a), 2))
        for k, side in enumerate(("left", "right")):
            ik, c = self.arms[side], self.cols[side]
            for i in range(len(a)):
                out[i, k] = np.linalg.norm(ik.forward(a[i, c])[0] - ik.forward(b[i, c])[0])
        return out


def readback_errors(chunks: np.ndarray, side: int, chunk: int, sigma: float, rho: float,
                    rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """(copies, read-back error (N, chunk, 14) normalised) for demo chunks in a side x side x 16 frame."""
    from cosmos_policy_ros.model import layout as L

    n = chunk * 14
    total = CHANNELS * side * side
    vec = torch.from_numpy(chunks[:, :chunk].reshape(len(chunks), n)).float()
    frame = L.tile_to_frame(vec, (CHANNELS, side, side))
    shared = torch.from_numpy(rng.standard_normal((len(chunks), n))).float()          # one draw per action value
    own = torch.from_numpy(rng.standard_normal(frame.shape)).float()                  # one per latent value
    noise = sigma * (np.sqrt(rho) * L.tile_to_frame(shared, (CHANNELS, side, side)) + np.sqrt(1 - rho) * own)
    back = L.read_from_frame(frame + noise, n)
    return total // n, (back - vec).numpy().reshape(len(chunks), chunk, 14)


def layout_table(chunks_norm: np.ndarray, stats, fk: GraspFK, sigma: float, rho: float, seed: int = 0) -> list[dict]:
    """Per layout (frame side x chunk): copies, joint error (rad) and grasp-site error (cm), independent and
    with rho."""
    rows = []
    for side, image in FRAMES:
        for chunk in CHUNKS:
            row = {"image": image, "latent": side, "chunk": chunk}
            for name, r in (("iid", 0.0), ("rho", rho)):
                copies, err = readback_errors(chunks_norm, side, chunk, sigma, r, np.random.default_rng(seed))
                truth = chunks_norm[:, :chunk].reshape(-1, 14)
                true_rad = stats.unnormalize_actions(truth)
                noisy_rad = stats.unnormalize_actions(truth + err.reshape(-1, 14))
                arm = np.r_[0:6, 7:13]
                dq = np.abs(noisy_rad - true_rad)[:, arm]
                cm = fk.distance(true_rad, noisy_rad) * 100
                row["copies"] = copies
                row[name] = {"rad_mean": float(dq.mean()), "rad_p95": float(np.percentile(dq, 95)),
                             "cm_mean": float(cm.mean()), "cm_p95": float(np.percentile(cm, 95))}
            rows.append(row)
    return rows


def main() -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from cosmos_policy_ros.deploy.bundle import build_engine, resolve_bundle
    from cosmos_policy_ros.inference.normalization import DatasetStats

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="", help="bundle (default: the bundled sim checkpoint)")
    p.add_argument("--episodes", type=int, default=2, help="scripted demos of the training seeds")
    p.add_argument("--first-seed", type=int, default=1000, help="the bundled checkpoint trained on 1000-1059")
    p.add_argument("--obs", type=int, default=8, help="observations measured (spread over the episodes)")
    p.add_argument("--samples", type=int, default=4, help="sampler seeds per observation")
    p.add_argument("--sigma", type=float, default=None, help="skip the measurement: per-value error (normalised)")
    p.add_argument("--rho", type=float, default=0.0, help="with --sigma: correlation of copies' errors")
    ns = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    bundle = resolve_bundle(ns.checkpoint)
    stats = DatasetStats.from_dict(bundle.stats)
    size = bundle.model_config.layout.image_size
    episodes = demo_episodes(ns.episodes, ns.first_seed, size, bundle.model_config.layout.cameras[0])
    if ns.sigma is None:
        engine = build_engine(bundle)
        m = measure_dit_error(engine, episodes, ns.obs, ns.samples, bundle.instruction)
        sigma, rho = m["sigma"], max(0.0, m["rho"])
        print(f"bundled DiT, {m['observations']} training observations x {ns.samples} seeds: per-value error RMS "
              f"{m['sigma']:.4f} (bias over seeds {m['bias']:.4f}, spread between seeds {m['seed_spread']:.4f}), "
              f"copy-to-copy error correlation rho {m['rho']:.2f}, read-back L1 {m['readback_l1']:.4f} "
              f"(normalised; {time.time() - t0:.0f} s)")
    else:
        sigma, rho = ns.sigma, ns.rho
    chunks = np.stack([stats.normalize_actions(ep.actions[t:t + 50]) for ep in episodes
                       for t in range(0, len(ep) - 50, 10)])
    rows = layout_table(chunks, stats, GraspFK(), sigma, rho)
    print(f"\nread-back error of {len(chunks)} demo chunks with Gaussian noise sigma {sigma:.4f} per latent value "
          f"(iid, and rho {rho:.2f} shared by a value's copies); arm joints in rad, grasp site in cm")
    print(f"{'image':>5} {'latent':>9} {'chunk':>5} {'copies':>6} | {'iid rad':>8} {'p95':>6} {'cm':>6} {'p95':>6} "
          f"| {'rho rad':>8} {'p95':>6} {'cm':>6} {'p95':>6}")
    for r in rows:
        a, b = r["iid"], r["rho"]
        print(f"{r['image']:>5} {r['latent']:>2}x{r['latent']:<2}x{CHANNELS:<2} {r['chunk']:>5} {r['copies']:>6} | "
              f"{a['rad_mean']:>8.4f} {a['rad_p95']:>6.3f} {a['cm_mean']:>6.2f} {a['cm_p95']:>6.2f} | "
              f"{b['rad_mean']:>8.4f} {b['rad_p95']:>6.3f} {b['cm_mean']:>6.2f} {b['cm_p95']:>6.2f}")
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
