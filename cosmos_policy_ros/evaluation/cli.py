"""`cosmos-aloha eval`: seeded sim evaluation of a bundle or checkpoint, in-process or through the ROS graph.

    cosmos-aloha eval checkpoints/sim_small_transfer_cube -n 50 --out runs/eval
    cosmos-aloha eval checkpoints/sim_small_transfer_cube -n 10 --graph --out runs/eval_graph
    cosmos-aloha eval checkpoints/sim_small_transfer_cube -n 10 --graph --lockstep   (= in-process, via ROS)
    cosmos-aloha eval POLICY_BUNDLE -n 20 --planning PLANNING_BUNDLE --candidates 4
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros import demo
from cosmos_policy_ros.deploy.bundle import launch_synchronous_steps
from cosmos_policy_ros.deploy.planner_config import DEFAULT_PLANNER_CONFIG, PlannerConfig
from cosmos_policy_ros.errors import EXPECTED_ERRORS, one_line, run_main
from cosmos_policy_ros.evaluation.in_process import PolicyFn, engine_from_dir, engine_policy, evaluate, planner_policy
from cosmos_policy_ros.inference.value import METHODS as VALUE_METHODS
from cosmos_policy_ros.robot.scheduler import actions_per_chunk_error


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cosmos-aloha eval", description=__doc__.splitlines()[0])
    p.add_argument("policy", help="bundle dir (policy.json) or training checkpoint dir")
    p.add_argument("-n", type=int, default=50)
    p.add_argument("--first-seed", type=int, default=0, help="episode seeds first..first+n-1 (demos used 1000+)")
    p.add_argument("--execute", type=int, default=None,
                   help="actions of each chunk run before re-querying (default: the bundle's policy.json "
                        "synchronous_steps, as it was evaluated; else 50, the whole chunk)")
    p.add_argument("--steps", type=int, help="sampler steps (default: model config action_steps)")
    p.add_argument("--out", help="directory for results.json and per episode a PNG strip, an animated GIF of the "
                   "viewer (config/sim_node.yaml viewer) and a plot of the executed chunks")
    p.add_argument("--no-media", action="store_true", help="with --out: PNG strips only (no GIFs, no chunk plots)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--camera-guidance", type=float, metavar="W",
                   help="in-process: override the checkpoint's sampler.camera_guidance (0 = off; docs/training.md)")
    p.add_argument("--action-smoothing", type=int, metavar="K",
                   help="in-process: override the checkpoint's sampler.action_smoothing (odd window; 1 = off)")
    p.add_argument("--no-safety", action="store_true", help="send raw actions (no executor safety filter)")
    p.add_argument("--record", metavar="DIR",
                   help="also write every rollout as an ALOHA HDF5 episode (for fine-tuning)")
    p.add_argument("--planning", metavar="BUNDLE", nargs="?", const="",
                   help="best-of-N planning (config/planner.yaml) with this world/value bundle "
                        "(no value: the policy's own)")
    p.add_argument("--candidates", type=int, help="planning: candidates N (default: config/planner.yaml)")
    p.add_argument("--world-steps", type=_int_list, help="planning: e.g. 1,3,5 (K futures)")
    p.add_argument("--value-steps", type=_int_list, help="planning: e.g. 1,2,3 (M values)")
    p.add_argument("--aggregation", choices=VALUE_METHODS,
                   help="planning: how the K x M values of a candidate become its score (default: config/planner.yaml)")
    p.add_argument("--graph", action="store_true",
                   help="run the episodes through the real ROS node graph (sim -> policy -> executor) instead")
    p.add_argument("--lockstep", action="store_true",
                   help="with --graph: the graph in lockstep (the sim waits for each chunk; episodes of the task's "
                        "length, as in-process): the same seeds give the in-process results, whatever this "
                        "machine's speed (docs/sim.md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse(argv)
    if ns.lockstep and not ns.graph:
        print("error: --lockstep is a mode of the ROS graph: add --graph (in-process evaluation is lockstep already)",
              file=sys.stderr)
        return 2
    if ns.execute is not None and (why := actions_per_chunk_error(ns.execute)):
        print(f"error: --execute: {why}", file=sys.stderr)
        return 2
    if ns.graph:
        return run_graph(ns)
    torch.set_num_threads(ns.threads)
    try:
        over = {k: v for k, v in (("camera_guidance", ns.camera_guidance),
                                  ("action_smoothing", ns.action_smoothing)) if v is not None}
        eng, meta = engine_from_dir(ns.policy, planning=ns.planning or None, sampler=over)
        if ns.execute is None:
            ns.execute = launch_synchronous_steps(ns.policy) or 50
    except (ValueError, *EXPECTED_ERRORS) as exc:  # config, checkpoint, statistics, embeddings: one line
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    lay = eng.cfg.layout
    plans: list[dict] = []
    fn = engine_policy(eng, 0, ns.steps) if ns.planning is None else _planner(ns, eng, plans)
    res = evaluate(fn, ns.n, range(ns.first_seed, ns.first_seed + ns.n),
                   task=meta.get("train", {}).get("task", "transfer_cube"), cameras=lay.cameras,
                   size=eng.preprocessing.square_render_side(lay.image_size, lay.cameras),
                   instruction=meta["instruction"], execute=ns.execute, out_dir=ns.out,
                   safety=not ns.no_safety, record_dir=ns.record, media=not ns.no_media)
    print(res.summary())
    if ns.out and not ns.no_media:
        print(f"per episode in {ns.out}: episode_SEED.gif (viewer), episode_SEED_chunks.png (executed chunks), "
              "episode_SEED.png (strip); listed in results.json")
    if plans:
        _report_plans(plans, ns.out)
    if ns.record:
        print(f"recorded {res.n} rollouts ({res.successes} successes) to {ns.record}")
    return 0


def run_graph(ns: argparse.Namespace) -> int:
    """The same seeds through DDS, the nodes and the executor's 50 Hz loop (`cosmos-aloha demo`)."""
    extra = [] if ns.planning is None else ["--mode", "planning", "--planning-checkpoint", ns.planning]
    extra += ["--lockstep"] if ns.lockstep else []
    # in-process: open loop for K (the graph's default: the bundle's synchronous_steps, as in-process)
    extra += ["--execute", str(ns.execute)] if ns.lockstep and ns.execute is not None else []
    return demo.main(["--episodes", str(ns.n), "--seed", str(ns.first_seed), "--checkpoint", ns.policy,
                      "--out", ns.out or "eval_graph", *extra])


def _planner(ns: argparse.Namespace, eng, plans: list[dict]) -> PolicyFn:
    """Best-of-N as the policy, config/planner.yaml overridden by the command line; plans logged to `plans`."""
    over = {k: v for k, v in (("num_candidates", ns.candidates), ("world_steps", ns.world_steps),
                              ("value_steps", ns.value_steps), ("aggregation", ns.aggregation)) if v is not None}
    pc = cfg.load(PlannerConfig, DEFAULT_PLANNER_CONFIG, over).plan_config()
    print(f"planning: N={pc.num_candidates} K={len(pc.world_steps)} M={len(pc.value_steps)} "
          f"{pc.value_mode}/{pc.aggregation} with {ns.planning or ns.policy}")
    return planner_policy(eng, pc, plans)


def _report_plans(plans: list[dict], out: str | None) -> None:
    picked = np.mean([p["best"] != 0 for p in plans])
    print(f"planning: {len(plans)} plans, median {np.median([p['seconds'] for p in plans]):.1f} s each, "
          f"a candidate other than the base sample chosen in {100 * picked:.0f} % of them")
    if out:
        (Path(out) / "plans.json").write_text(json.dumps(plans))


if __name__ == "__main__":
    raise SystemExit(run_main(main, prog="cosmos-aloha eval", code=2))
