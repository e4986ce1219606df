"""How much of a checkpoint's chunk error is per-step noise that `sampler.action_smoothing` removes?

For observations of scripted demos (teacher-forced: the demo's own images and proprio at steps 0, 50, ...,
300) the checkpoint's engine predicts a chunk; the bench compares it with the demonstrator's next actions,
raw and averaged over windows of 3 to 15 actions (inference/chunk_smoothing.py):

* RMSE: arm joints against the demo chunk (rad); what smoothing cannot remove is the low-frequency error;
* zig-zag: RMS of the second difference over the chunk (rad per tick²); the demonstrator's is ~0.001;
* over cap: share of steps where some arm joint moves more than the executor's step cap (pi rad/s x 0.02 s),
  i.e. where the SafetyFilter would cut the command.

    MUJOCO_GL=egl .venv/bin/python bench/bench_chunk_smoothing.py [CHECKPOINT DEMOS ...] [--episodes 5]
Without CHECKPOINT and DEMOS (`make bench`): the demo's bundled checkpoint and demos rendered for it at unseen seeds.
Prints one table; not a test. About 1 min on one core for the sim_crop checkpoint.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

WINDOWS = (1, 3, 5, 9, 15)
STEP_CAP = np.pi * 0.02
ARM = [i for i in range(14) if i not in (6, 13)]     # the grippers are left out: normalised units, not rad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", nargs="?", default="",
                   help="bundle or training checkpoint (its EMA weights, as `cosmos-aloha eval`); default: the demo's")
    p.add_argument("demos", nargs="*", help="folders of demo episodes rendered for this checkpoint; default: fresh")
    p.add_argument("--episodes", type=int, default=5, help="spread evenly over the folders' episodes")
    p.add_argument("--threads", type=int, default=1)
    ns = p.parse_args()

    import torch
    from bench_image_use import bench_inputs, spread_episodes  # bench/ is on the path when a bench runs as a script

    from cosmos_policy_ros.data.aloha_hdf5 import read_episode
    from cosmos_policy_ros.evaluation.in_process import engine_from_dir
    from cosmos_policy_ros.inference.chunk_smoothing import smooth_chunk

    torch.set_num_threads(ns.threads)
    ns.checkpoint, ns.demos = bench_inputs(ns.checkpoint, ns.demos, ns.episodes)
    paths = spread_episodes(ns.demos, ns.episodes)
    engine, meta = engine_from_dir(ns.checkpoint, sampler={"action_smoothing": 1})
    cams, n = engine.cfg.layout.cameras, engine.cfg.layout.chunk_len
    t0 = time.perf_counter()
    pairs = []
    for path in paths:
        ep = read_episode(path, cams)
        for t in range(0, len(ep.actions) - n + 1, 50):
            obs = {"images": {c: ep.images[c][t] for c in cams}, "proprio": ep.qpos[t],
                   "instruction": meta["instruction"]}
            pairs.append((engine.act(obs, seed=len(pairs)).actions, ep.actions[t:t + n]))
    demo_zigzag = np.mean([np.sqrt(np.mean(np.diff(d[:, ARM], 2, axis=0) ** 2)) for _, d in pairs])
    print(f"{ns.checkpoint} (step {meta.get('step', '?')}): {len(pairs)} chunks from {len(paths)} demos "
          f"({time.perf_counter() - t0:.0f} s); demonstrator's zig-zag {demo_zigzag:.4f}")
    print("| window | RMSE arm (rad) | zig-zag (rad) | steps over the cap |\n|---|---|---|---|")
    for w in WINDOWS:
        rmse, zig, over = [], [], []
        for pred, demo in pairs:
            s = smooth_chunk(pred, w)[:, ARM]
            rmse.append(np.sqrt(np.mean((s - demo[:, ARM]) ** 2)))
            zig.append(np.sqrt(np.mean(np.diff(s, 2, axis=0) ** 2)))
            over.append(np.mean(np.abs(np.diff(s, axis=0)).max(1) > STEP_CAP))
        print(f"| {w} | {np.mean(rmse):.4f} | {np.mean(zig):.4f} | {100 * np.mean(over):.0f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
