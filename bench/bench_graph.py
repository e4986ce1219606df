"""Issue 6 figures: what the ROS graph adds to inference latency, and what batching buys the planner.

1. The same model (a random-weights bundle of --config) in-process (engine.act) vs through the graph
   (sim node -> policy node -> ActionChunk): the chunk's inference_latency_s is observation stamp ->
   publish, so graph - in-process = conversion, queueing and DDS overhead.
2. Planning N x K x M with one batched call per stage (inference/planning.plan) vs the upstream
   sequential loop of batch-1 passes, same seeds.

Run: .venv/bin/python bench/bench_graph.py [--config tiny_test|sim_small|small] [--chunks 8]
Prints figures; not part of the test suite.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "93")


def in_process(bundle: Path, n: int) -> tuple[list[float], object]:
    from cosmos_policy_ros.deploy.bundle import build_engine, resolve_bundle
    from cosmos_policy_ros.deploy.policy_config import apply_torch_threads

    apply_torch_threads(0)
    resolved = resolve_bundle(bundle)
    engine = build_engine(resolved)
    size = engine.cfg.layout.image_size
    rng = np.random.default_rng(0)
    obs = {"images": {c: rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for c in engine.layout.cameras},
           "proprio": np.zeros(14), "instruction": resolved.instruction}
    engine.act(obs)  # warm-up
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        engine.act(obs, seed=i)
        times.append(time.perf_counter() - t0)
    del size
    return times, engine


def start_sim(cams: list[str]) -> subprocess.Popen:
    from cosmos_policy_ros.ros_env import local_ros_env

    return subprocess.Popen([sys.executable, "-m", "cosmos_policy_ros.nodes.sim_node", "--ros-args", "-p", "width:=128",
                             "-p", "height:=96", "-p", "camera_rate_hz:=12.5", "-p", f"cameras:={','.join(cams)}"],
                            env=local_ros_env(int(os.environ["ROS_DOMAIN_ID"])),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def through_graph(bundle: Path, n: int) -> list[float]:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from cosmos_policy_ros.msg import ActionChunk
    from cosmos_policy_ros.ros_env import local_ros_env

    env = local_ros_env(int(os.environ["ROS_DOMAIN_ID"]))
    procs = [subprocess.Popen([sys.executable, "-m", "cosmos_policy_ros.nodes.policy_node", "--ros-args",
                               "-p", f"checkpoint:={bundle}", "-p", "trigger:=continuous"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    rclpy.init()
    node = rclpy.create_node("bench_graph")
    got: list = []
    node.create_subscription(ActionChunk, "/cosmos/action_chunk", got.append, 10)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    try:
        end = time.monotonic() + 600
        while len(got) < n + 1 and time.monotonic() < end:
            ex.spin_once(timeout_sec=0.1)
    finally:
        node.destroy_node()
        rclpy.shutdown()
        for p in procs:
            p.send_signal(2)
        for p in procs:
            p.wait(timeout=30)
    return [c.inference_latency_s for c in got[1:]]


def planning(engine, n_cand: int, k: int, m: int) -> tuple[float, float]:
    from cosmos_policy_ros.inference.planning import PlanConfig, plan

    rng = np.random.default_rng(1)
    obs = {"images": {c: rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for c in engine.layout.cameras},
           "proprio": np.zeros(14), "instruction": next(iter(engine.text._table))}
    cfg = PlanConfig(num_candidates=n_cand, world_steps=tuple(range(1, k + 1)), value_steps=tuple(range(1, m + 1)))
    state = engine.prepare(obs)
    t0 = time.perf_counter()
    plan(engine, state, cfg)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for q in range(n_cand):
        a = engine.sample_actions(state, [cfg.base_seed + q])
        for kk, ws in enumerate(cfg.world_steps):
            f = engine.predict_future(state, [cfg.base_seed + q + kk], ws, action_latents=a)
            for mm, vs in enumerate(cfg.value_steps):
                engine.predict_value(f, state.context, [cfg.base_seed + q + mm], vs, cfg.value_mode)
    return batched, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="tiny_test")
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--plan", default="8,3,5", help="N,K,M")
    a = ap.parse_args()
    from cosmos_policy_ros.deploy.random_bundle import make_random_bundle

    bundle = make_random_bundle(Path(tempfile.mkdtemp()) / "b", a.config)
    from cosmos_policy_ros.deploy.bundle import resolve_bundle

    cams = list(resolve_bundle(bundle).model_config.layout.cameras)
    sim = start_sim(cams)  # both measurements share the CPU with the rendering sim, as on a robot PC
    try:
        time.sleep(5)
        proc_t, engine = in_process(bundle, a.chunks)
        graph_t = through_graph(bundle, a.chunks)
    finally:
        sim.send_signal(2)
        sim.wait(timeout=30)
    p50i, p50g = np.median(proc_t), np.median(graph_t)
    print(f"model config {a.config}, {os.cpu_count()} CPUs")
    print(f"in-process engine.act      p50 {p50i * 1000:7.1f} ms  (n={len(proc_t)})")
    print(f"through the ROS graph      p50 {p50g * 1000:7.1f} ms  "
          f"(observation stamp -> chunk published, n={len(graph_t)})")
    print(f"ROS overhead               {(p50g - p50i) * 1000:7.1f} ms, ratio {p50g / p50i:.2f}")
    n, k, m = (int(x) for x in a.plan.split(","))
    batched, sequential = planning(engine, n, k, m)
    print(f"planning N={n} K={k} M={m}: batched {batched:.2f} s, sequential {sequential:.2f} s, "
          f"speed-up {sequential / batched:.2f}x; vs one direct chunk {batched / p50i:.1f}x")


if __name__ == "__main__":
    main()
