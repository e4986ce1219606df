"""How precisely must a transfer-cube policy locate the cube? The scripted demonstrator, told a wrong position.

Runs the scripted demonstrator in the sim with its belief of the cube's (x, y) offset by d in a random
direction (the same offset all episode long), for several d, and prints success and stage per d. This is
the reach error a learned policy can afford: compare it with bench_cube_probe.py (how well the latents
locate the cube) and with the policy's own misses (docs/training.md).

    .venv/bin/python bench/bench_grasp_tolerance.py [--episodes 6] [--offsets-cm 0 1 1.5 2 3]
Prints a table; not part of the test suite.
"""
from __future__ import annotations

import argparse
import os

import numpy as np


def main() -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from cosmos_policy_ros.sim.demonstrator import ScriptedDemonstrator
    from cosmos_policy_ros.sim.sim_aloha import SimAloha

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=6, help="episodes per offset (seeds 3000+)")
    p.add_argument("--offsets-cm", type=float, nargs="+", default=[0, 1, 1.5, 2, 3])
    ns = p.parse_args()

    task = "transfer_cube"
    sim = SimAloha(task, width=64, height=64)
    rng = np.random.RandomState(0)
    print(f"{'offset cm':>9} | success | max stage per episode")
    try:
        for d_cm in ns.offsets_cm:
            results = []
            for k in range(ns.episodes):
                sim.reset(task, 3000 + k)
                demo = ScriptedDemonstrator(sim.model, task, sim.wc.arm_prefix)
                angle = rng.uniform(0, 2 * np.pi)
                offset = d_cm / 100 * np.array([np.cos(angle), np.sin(angle)])

                def belief():
                    poses = {name: pose.copy() for name, pose in sim.object_poses().items()}
                    for pose in poses.values():
                        pose[:2] += offset
                    return poses

                demo.reset(sim.qpos14(), belief())
                for _ in range(sim.tasks_cfg[task].episode_steps):
                    sim.step(demo.act(sim.qpos14(), belief()))
                results.append((sim.success(), sim.max_stage))
            print(f"{d_cm:>9.1f} | {sum(r[0] for r in results):>3}/{len(results):<3} | {[r[1] for r in results]}",
                  flush=True)
    finally:
        sim.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
