"""Collision guard cost per 50 Hz tick (robot/collision.py), over random configurations near the workspace.

Prints the capsule model's build time and size, then p50/p99 of one clearance evaluation (both arms, every
checked pair; with and without the broad phase) and of SafetyFilter.filter per tick without the guard, with
it on ticks it lets through (one evaluation) and on ticks it shortens (two, the second a batch of 7).
``--mujoco`` also times the alternative we did not take: MuJoCo's mj_geomDistance on the link meshes.

    .venv/bin/python bench/bench_collision.py [--n 3000] [--mujoco]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from cosmos_policy_ros.robot.aloha import AlohaRobot  # noqa: E402
from cosmos_policy_ros.robot.collision import CollisionModel  # noqa: E402
from cosmos_policy_ros.robot.safety import SafetyConfig, SafetyFilter  # noqa: E402


def percentiles(samples_s: list[float]) -> str:
    us = np.array(samples_s) * 1e6
    return f"p50 {np.percentile(us, 50):7.1f} us  p99 {np.percentile(us, 99):7.1f} us  (n={len(us)})"


def workspace_samples(robot: AlohaRobot, n: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """Commands around the start pose: arm joints start ± spread rad (clipped to the limits), grippers 0..1."""
    q = robot.pose14("start", gripper=0.5) + rng.uniform(-spread, spread, (n, 14))
    q[:, list(robot.gripper_indices)] = rng.uniform(0, 1, (n, 2))
    return np.clip(q, robot.lower, robot.upper)


def timed(fn, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def bench_guard(robot: AlohaRobot, n: int, rng: np.random.Generator) -> None:
    t0 = time.perf_counter()
    on = SafetyFilter(robot, SafetyConfig(collision=True))
    print(f"capsule model: built in {time.perf_counter() - t0:.2f} s (MuJoCo import + fit; once per process)")
    model: CollisionModel = on.guard.model
    print(f"  {len(model.capsules.labels)} capsules, {model.pair_count} checked pairs "
          f"({len(model.pair_a)} arm-arm, {len(model.table_caps)} link-table)")
    off = SafetyFilter(robot, SafetyConfig(collision=False))

    configs = workspace_samples(robot, n, 1.0, rng)
    for exact in (False, True):
        costs = [timed(model.clearances, q[None], exact)[0] for q in configs]
        print(f"one clearance evaluation, {'every pair exact' if exact else 'broad phase    '}: {percentiles(costs)}")

    # Executor-like: 50 Hz ticks chasing goals near the workspace (a policy out of its data), 25 ticks each,
    # the previous command being the last one sent (its clearances cached, as in the executor).
    goals = workspace_samples(robot, n // 25 + 1, 1.2, rng)
    prev = robot.pose14("start", gripper=0.5)
    passed, shortened, plain = [], [], []
    for goal in goals:
        for _ in range(25):
            plain.append(timed(off.filter, goal, prev, prev)[0])
            dt, res = timed(on.filter, goal, prev, prev)
            (shortened if res.reason.startswith("collision") else passed).append(dt)
            prev = res.command
    print(f"SafetyFilter.filter per tick, no guard:          {percentiles(plain)}")
    print(f"SafetyFilter.filter per tick, guard, step kept:  {percentiles(passed)}")
    if shortened:
        print(f"SafetyFilter.filter per tick, guard shortened:   {percentiles(shortened)}")
    print(f"guard interventions: {on.kinds.get('collision', 0)} of {len(plain)} ticks")


def bench_mujoco(robot: AlohaRobot, n: int, rng: np.random.Generator) -> None:
    """The same pairs as mesh-mesh / mesh-table distances in MuJoCo (convex hulls, mj_geomDistance)."""
    import mujoco  # heavy: only for this comparison

    from cosmos_policy_ros.sim.assets import gym_aloha_assets_dir

    cc = robot.config.collision
    m = mujoco.MjModel.from_xml_path(str(gym_aloha_assets_dir() / cc.scene))
    d = mujoco.MjData(m)
    name = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or "" for g in range(m.ngeom)]
    arm = {s: [g for g in range(m.ngeom) if name[g].startswith(p + "/") and m.geom_contype[g]]
           for s, p in cc.arm_prefix.items()}
    table = name.index("table")
    qadr = [m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f"{cc.arm_prefix[s]}/{j}")]
            for s in ("left", "right") for j in robot.config.arm_joints]
    costs = []
    for q in workspace_samples(robot, n, 1.0, rng):
        t = time.perf_counter()
        d.qpos[qadr] = np.delete(q, robot.gripper_indices)
        mujoco.mj_kinematics(m, d)
        for a in arm["left"]:
            for b in arm["right"]:
                mujoco.mj_geomDistance(m, d, a, b, 0.05, None)
        for a in arm["left"] + arm["right"]:
            mujoco.mj_geomDistance(m, d, a, table, 0.05, None)
        costs.append(time.perf_counter() - t)
    pairs = len(arm["left"]) * len(arm["right"]) + len(arm["left"]) + len(arm["right"])
    print(f"MuJoCo mj_geomDistance, {pairs} mesh pairs (no broad phase): {percentiles(costs)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="random configurations")
    ap.add_argument("--mujoco", action="store_true", help="also time MuJoCo mesh distances for comparison")
    ns = ap.parse_args(argv)
    robot = AlohaRobot.from_yaml()
    rng = np.random.default_rng(0)
    bench_guard(robot, ns.n, rng)
    if ns.mujoco:
        bench_mujoco(robot, min(ns.n, 500), rng)
    return 0


if __name__ == "__main__":
    sys.exit(main())
