"""Seeded in-process evaluation in SimAloha: success rate with a Wilson interval, a PNG strip per episode.

`evaluate(policy_fn, n, seeds)` is the clean entry point: policy_fn(obs) -> (chunk, 14) actions in
robot units, obs = {"images": {camera: HxWx3 uint8}, "proprio": (14,), "instruction": str}. The
first `execute` actions of each chunk run open loop at the sim's 50 Hz, then the policy is queried
again. The through-ROS-graph variant wraps the same function around the node graph.

    cosmos-aloha eval checkpoints/sim_small_transfer_cube -n 50 --out runs/eval
    cosmos-aloha eval checkpoints/sim_small_transfer_cube -n 10 --graph --out runs/eval_graph
    cosmos-aloha eval POLICY_BUNDLE -n 20 --planning PLANNING_BUNDLE --candidates 4
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from cosmos_policy_ros.inference.value import METHODS as VALUE_METHODS

PolicyFn = Callable[[Mapping], np.ndarray]


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a binomial proportion (sane at 0 and n, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    max_stage: int
    steps: int
    queries: int
    safety_interventions: int = 0
    policy_s: list[float] = field(default_factory=list)
    # which limit acted (first reason per tick: limit / relative / step / non-finite...) and by how much:
    # a gripper clipped from 1.02 to 1.0 counts like a wrist held back 0.5 rad, the sizes tell them apart
    safety_kinds: dict[str, int] = field(default_factory=dict)
    safety_max_arm_change_rad: float = 0.0


@dataclass
class EvalResult:
    task: str
    n: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_stage: float
    latency_s_median: float
    latency_s_p90: float
    wall_s: float
    episodes: list[EpisodeResult]

    def summary(self) -> str:
        text = (f"{self.task}: {self.successes}/{self.n} success = {100 * self.success_rate:.1f} % "
                f"(95 % Wilson CI {100 * self.ci95[0]:.1f}-{100 * self.ci95[1]:.1f} %), mean max stage "
                f"{self.mean_stage:.2f}/4, policy latency median {1000 * self.latency_s_median:.0f} ms "
                f"(p90 {1000 * self.latency_s_p90:.0f} ms) per chunk")
        safety = self.safety_summary()
        return text + (f"\n{safety}" if safety else "")

    def safety_summary(self) -> str:
        """How often and how much the executor's SafetyFilter changed the policy's actions."""
        steps = sum(e.steps for e in self.episodes)
        changed = sum(e.safety_interventions for e in self.episodes)
        if not steps or not changed:
            return ""
        kinds: dict[str, int] = {}
        for e in self.episodes:
            for k, v in e.safety_kinds.items():
                kinds[k] = kinds.get(k, 0) + v
        by_kind = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        worst = max(e.safety_max_arm_change_rad for e in self.episodes)
        return (f"safety filter changed {100 * changed / steps:.0f} % of the actions ({by_kind}); "
                f"largest arm-joint change {worst:.3f} rad")


def save_strip(frames: list[np.ndarray], path: Path, label: str) -> None:
    """Frames side by side (small ones doubled) under a one-line label: an episode at a glance."""
    from PIL import Image, ImageDraw
    if not frames:
        return
    strip = np.concatenate(frames, axis=1)
    k = 2 if strip.shape[0] <= 64 else 1
    img = Image.fromarray(strip).resize((strip.shape[1] * k, strip.shape[0] * k), Image.NEAREST)
    canvas = Image.new("RGB", (img.width, img.height + 14), (0, 0, 0))
    canvas.paste(img, (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), label, fill=(255, 255, 255))
    canvas.save(path)


def evaluate(policy_fn: PolicyFn, n: int, seeds: Sequence[int] | None = None, *, task: str = "transfer_cube",
             cameras: Sequence[str] = ("cam_high",), size: int = 64, instruction: str = "",
             execute: int = 50, steps: int | None = None, out_dir: str | Path | None = None,
             stop_on_success: bool = True, safety: bool = True, progress: bool = True,
             record_dir: str | Path | None = None) -> EvalResult:
    """Run n seeded episodes in-process; returns success statistics (and writes strips if out_dir).

    safety: pass every action through the executor's SafetyFilter (joint limits, per-step velocity
    cap, relative-target cap), as the ROS graph does, so in-process and graph numbers compare.
    record_dir: also write every rollout (success or failure, the commands actually sent) as an
    ALOHA HDF5 episode, the data the planning model's world/value objectives are fine-tuned on.
    """
    from cosmos_policy_ros.robot.safety import SafetyFilter
    from cosmos_policy_ros.sim.sim_aloha import SimAloha

    seeds = list(range(n)) if seeds is None else list(seeds)[:n]
    if len(seeds) < n:
        raise ValueError(f"{n} episodes requested but only {len(seeds)} seeds given")
    out = Path(out_dir) if out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    sim = SimAloha(task, width=size, height=size)
    horizon = int(steps or sim.tasks_cfg[task].episode_steps)
    results: list[EpisodeResult] = []
    t_wall = time.time()
    try:
        for seed in seeds:
            sim.reset(task, seed)
            ep = EpisodeResult(seed, False, 0, 0, 0)
            filt = SafetyFilter(sim.robot, dt=sim.dt) if safety else None
            prev = sim.qpos14()
            frames = []
            rec: dict[str, list] | None = {"qpos": [], "qvel": [], "actions": [], **{c: [] for c in cameras}} \
                if record_dir else None
            t = 0
            while t < horizon:
                images = sim.render(list(cameras), width=size, height=size)
                frames.append(images[cameras[0]])
                obs = {"images": images, "proprio": sim.qpos14(), "instruction": instruction}
                t0 = time.perf_counter()
                chunk = np.asarray(policy_fn(obs), dtype=np.float64)
                ep.policy_s.append(time.perf_counter() - t0)
                ep.queries += 1
                if chunk.ndim != 2 or chunk.shape[1] != 14:
                    raise ValueError(f"policy returned shape {chunk.shape}, expected (chunk, 14)")
                for i, a in enumerate(chunk[:execute]):
                    if filt is not None:
                        res = filt.filter(a, prev, measured=sim.qpos14())
                        if res.intervened:
                            arm = np.abs(np.delete(res.command - a, sim.robot.gripper_indices))
                            arm = arm[np.isfinite(arm)]  # a rejected non-finite action counts in the kinds
                            if arm.size:
                                ep.safety_max_arm_change_rad = max(ep.safety_max_arm_change_rad, float(arm.max()))
                        a, ep.safety_interventions = res.command, ep.safety_interventions + int(res.intervened)
                    if rec is not None:
                        now = images if i == 0 else sim.render(list(cameras), width=size, height=size)
                        for c in cameras:
                            rec[c].append(now[c])
                        rec["qpos"].append(sim.qpos14())
                        rec["qvel"].append(sim.qvel14())
                        rec["actions"].append(np.asarray(a, dtype=float))
                    sim.step(a)
                    prev = np.asarray(a, dtype=float)
                    t += 1
                    if t >= horizon:
                        break
                if stop_on_success and sim.success():
                    break
            ep.success, ep.max_stage, ep.steps = bool(sim.success()), int(sim.max_stage), t
            if filt is not None:
                ep.safety_kinds = dict(filt.kinds)
            frames.append(sim.render(list(cameras[:1]), width=size, height=size)[cameras[0]])
            results.append(ep)
            if rec is not None:
                from cosmos_policy_ros.data.aloha_hdf5 import write_episode
                write_episode(Path(record_dir) / f"rollout_{seed:05d}.hdf5", rec["qpos"], rec["qvel"], rec["actions"],
                              {c: np.stack(rec[c]) for c in cameras}, success=ep.success, task=task,
                              instruction=instruction, seed=seed)
            if out:
                save_strip(frames, out / f"episode_{seed:04d}.png",
                            f"seed {seed} {'SUCCESS' if ep.success else 'fail'} stage {ep.max_stage}")
            if progress:
                k = sum(r.success for r in results)
                print(f"seed {seed}: {'success' if ep.success else 'fail'} (stage {ep.max_stage}), "
                      f"{k}/{len(results)} so far", flush=True)
    finally:
        sim.close()
    k = sum(r.success for r in results)
    lat = np.array([s for r in results for s in r.policy_s]) if results else np.zeros(1)
    res = EvalResult(task, len(results), k, k / max(1, len(results)), wilson_interval(k, len(results)),
                     float(np.mean([r.max_stage for r in results])), float(np.median(lat)),
                     float(np.percentile(lat, 90)), time.time() - t_wall, results)
    if out:
        (out / "results.json").write_text(json.dumps(asdict(res), indent=1))
    return res


def engine_from_dir(path: str | Path, device: str | None = None, planning: str | Path | None = None):
    """(PolicyEngine, metadata) from an exported bundle, a training checkpoint or a run folder (its latest).

    Resolved and built exactly as the nodes do (deploy.bundle); the one difference: a training
    checkpoint is evaluated on its EMA weights, as the trainer means it to be (exported bundles say so
    themselves). planning: a second bundle whose world model / value function the planner uses (same
    statistics, refused otherwise).
    """
    from cosmos_policy_ros.deploy.bundle import META_FILE, build_engine, resolve_bundle

    paths = resolve_bundle(path)  # a bare weights file is refused there: it names no model config
    if paths.meta_file.name == META_FILE:
        paths = replace(paths, ema=True)
    eng = build_engine(paths, resolve_bundle(planning) if planning else None, device=device or "cpu")
    return eng, paths.meta


def engine_policy(engine, seed: int = 0, steps: int | None = None) -> PolicyFn:
    """Wrap a PolicyEngine as policy_fn; query k uses sampler seed seed+k (reproducible episodes)."""
    counter = {"k": 0}

    def fn(obs: Mapping) -> np.ndarray:
        out = engine.act(obs, seed=seed + counter["k"], steps=steps)
        counter["k"] += 1
        return out.actions

    return fn


def planner_policy(engine, plan_cfg, log: list | None = None) -> PolicyFn:
    """Best-of-N planning as policy_fn: query k plans with base seed base_seed + k * N (fresh candidates)."""
    from cosmos_policy_ros.inference.planning import plan
    counter = {"k": 0}

    def fn(obs: Mapping) -> np.ndarray:
        cfg = replace(plan_cfg, base_seed=plan_cfg.base_seed + counter["k"] * plan_cfg.num_candidates)
        counter["k"] += 1
        r = plan(engine, obs, cfg)
        if log is not None:
            log.append({"scores": [float(x) for x in r.scores], "best": int(r.best),
                        "seconds": float(r.timings["total_s"])})
        return r.actions

    return fn


def main(argv: list[str] | None = None) -> int:
    import torch
    p = argparse.ArgumentParser(prog="cosmos-aloha eval", description=__doc__.splitlines()[0])
    p.add_argument("policy", help="bundle dir (policy.json) or training checkpoint dir")
    p.add_argument("-n", type=int, default=50)
    p.add_argument("--first-seed", type=int, default=0, help="episode seeds first..first+n-1 (demos used 1000+)")
    p.add_argument("--execute", type=int, default=50, help="actions of each chunk run before re-querying")
    p.add_argument("--steps", type=int, help="sampler steps (default: model config action_steps)")
    p.add_argument("--out", help="directory for results.json and per-episode PNG strips")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-safety", action="store_true", help="send raw actions (no executor safety filter)")
    p.add_argument("--record", metavar="DIR", help="also write every rollout as an ALOHA HDF5 episode (for fine-tuning)")
    p.add_argument("--planning", metavar="BUNDLE", nargs="?", const="",
                   help="best-of-N planning (config/planner.yaml) with this world/value bundle (no value: the policy's own)")
    p.add_argument("--candidates", type=int, help="planning: candidates N (default: config/planner.yaml)")
    p.add_argument("--world-steps", type=lambda s: [int(x) for x in s.split(",")], help="planning: e.g. 1,3,5 (K futures)")
    p.add_argument("--value-steps", type=lambda s: [int(x) for x in s.split(",")], help="planning: e.g. 1,2,3 (M values)")
    p.add_argument("--aggregation", choices=VALUE_METHODS,
                   help="planning: how the K x M values of a candidate become its score (default: config/planner.yaml)")
    p.add_argument("--graph", action="store_true",
                   help="run the episodes through the real ROS node graph (sim -> policy -> executor) instead")
    ns = p.parse_args(argv)
    if ns.graph:  # the same seeds through DDS, the nodes and the executor's 50 Hz loop (cosmos-aloha demo)
        from cosmos_policy_ros import demo
        extra = [] if ns.planning is None else ["--mode", "planning", "--planning-checkpoint", ns.planning]
        return demo.main(["--episodes", str(ns.n), "--seed", str(ns.first_seed), "--checkpoint", ns.policy,
                          "--out", ns.out or "eval_graph", *extra])
    torch.set_num_threads(ns.threads)
    from cosmos_policy_ros import config as cfg
    try:
        eng, meta = engine_from_dir(ns.policy, planning=ns.planning or None)
    except (FileNotFoundError, ValueError, cfg.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lay = eng.cfg.layout
    plans: list = []
    if ns.planning is not None:
        from cosmos_policy_ros.deploy.planner_config import DEFAULT_PLANNER_CONFIG, PlannerConfig
        over = {k: v for k, v in (("num_candidates", ns.candidates), ("world_steps", ns.world_steps),
                                  ("value_steps", ns.value_steps), ("aggregation", ns.aggregation)) if v is not None}
        pc = cfg.load(PlannerConfig, DEFAULT_PLANNER_CONFIG, over).plan_config()
        fn = planner_policy(eng, pc, plans)
        print(f"planning: N={pc.num_candidates} K={len(pc.world_steps)} M={len(pc.value_steps)} "
              f"{pc.value_mode}/{pc.aggregation} with {ns.planning or ns.policy}")
    else:
        fn = engine_policy(eng, 0, ns.steps)
    res = evaluate(fn, ns.n, range(ns.first_seed, ns.first_seed + ns.n),
                   task=meta.get("train", {}).get("task", "transfer_cube"), cameras=lay.cameras,
                   size=lay.image_size, instruction=meta["instruction"], execute=ns.execute, out_dir=ns.out,
                   safety=not ns.no_safety, record_dir=ns.record)
    print(res.summary())
    if plans:
        picked = np.mean([p["best"] != 0 for p in plans])
        print(f"planning: {len(plans)} plans, median {np.median([p['seconds'] for p in plans]):.1f} s each, "
              f"a candidate other than the base sample chosen in {100 * picked:.0f} % of them")
        if ns.out:
            (Path(ns.out) / "plans.json").write_text(json.dumps(plans))
    if ns.record:
        print(f"recorded {res.n} rollouts ({res.successes} successes) to {ns.record}")
    return 0


import sys  # noqa: E402  (used by main only)

if __name__ == "__main__":
    raise SystemExit(main())
