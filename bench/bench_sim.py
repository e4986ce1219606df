"""Simulated ALOHA figures: step+render rate for 3 and 4 cameras at 240x320 and 480x640, physics-only
step rate, and the scripted demonstrator's success over seeded episodes per task.

    MUJOCO_GL=egl .venv/bin/python bench/bench_sim.py [--seeds 50] [--frames 40] [--skip-demo]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos_policy_ros.sim.gl import ensure_gl_backend  # noqa: E402

BACKEND = ensure_gl_backend()

import numpy as np  # noqa: E402

from cosmos_policy_ros.sim.episodes import run_demo_episode  # noqa: E402
from cosmos_policy_ros.sim.sim_aloha import SimAloha  # noqa: E402

THREE = ("cam_high", "cam_left_wrist", "cam_right_wrist")
FOUR = THREE + ("cam_low",)


def bench_render(frames: int) -> None:
    print(f"GL backend: {BACKEND or os.environ.get('MUJOCO_GL')}")
    with SimAloha("transfer_cube") as sim:
        sim.reset(seed=0)
        n = 500
        t = time.perf_counter()
        for _ in range(n):
            sim.step()
        dt = (time.perf_counter() - t) / n
        print(f"physics only: {1 / dt:8.0f} control steps/s ({dt * 1e3:.2f} ms per 50 Hz step = 10 x 0.002 s)")
        for h, w in ((240, 320), (480, 640)):
            for cams in (THREE, FOUR):
                sim.reset(seed=0)
                sim.render(cams, width=w, height=h)  # warm up the GL context
                rng = np.random.default_rng(0)
                start = np.array([0.0, -0.96, 1.16, 0.0, -0.3, 0.0])
                t = time.perf_counter()
                t_render = 0.0
                for _ in range(frames):
                    a = np.concatenate([start + rng.normal(0, 0.05, 6), [0.5], start + rng.normal(0, 0.05, 6), [0.5]])
                    sim.step(a)
                    t0 = time.perf_counter()
                    sim.render(cams, width=w, height=h)
                    t_render += time.perf_counter() - t0
                total = time.perf_counter() - t
                print(f"{len(cams)} cameras {w}x{h}: {frames / total:6.1f} steps/s with rendering, "
                      f"{t_render / frames / len(cams) * 1e3:6.1f} ms per camera image")


def bench_demo(seeds: int) -> None:
    for task, need in (("transfer_cube", 0.90), ("insertion", 0.70)):
        with SimAloha(task) as sim:
            t = time.perf_counter()
            eps = [run_demo_episode(sim, task, s) for s in range(seeds)]
            el = time.perf_counter() - t
        wins = [e.seed for e in eps if e.success]
        fails = [(e.seed, e.max_stage) for e in eps if not e.success]
        rate = len(wins) / seeds
        print(f"demonstrator {task}: {len(wins)}/{seeds} = {rate:.0%} success (target {need:.0%}) "
              f"{el / seeds:.2f} s/episode of {len(eps[0])} steps without images"
              + (f"; failures (seed, max stage): {fails}" if fails else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    bench_render(args.frames)
    if not args.skip_demo:
        bench_demo(args.seeds)


if __name__ == "__main__":
    main()
