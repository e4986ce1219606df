"""`cosmos-aloha demo` (and `make demo`): the direct node graph on the simulated ALOHA, measured.

Starts the same graph as `cosmos-aloha up direct --sim` (sim -> policy -> executor -> sim) in a
private DDS domain on loopback, runs seeded episodes through the sim's reset service, and reports
what it measured: success per episode, success rate with a Wilson interval, chunk latency, executor
rate and safety interventions; per episode it writes an animated GIF of the sim's viewer (a large view of
the workspace, captioned with seed, time and stage), a plot of the executed chunks and a PNG strip. It runs
the bundled checkpoint that solves the task most often (DEMO_CHECKPOINT: sim_crop), as its policy.json says it
was evaluated, on seeds no demonstration used; `make demo` adds `--lockstep`, so the episodes are those of
`cosmos-aloha eval` on the same seeds whatever this machine's speed. With no trained checkpoint it says so and
runs random weights — the arms move, nothing is solved, and the report says exactly that.

This module is the caller: arguments, the Supervisor that starts the graph, the report file. The
episodes themselves run in `evaluation.graph` (the runner) and are reported by `evaluation.report`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.deploy.bundle import default_checkpoint, default_demo_checkpoint, resolve_bundle
from cosmos_policy_ros.evaluation.graph import GraphEpisodeError, GraphEpisodeRunner, GraphEpisodeSettings
from cosmos_policy_ros.evaluation.report import graph_report, media_lines, print_graph_report
from cosmos_policy_ros.graph import load_graph, resolve
from cosmos_policy_ros.robot.scheduler import actions_per_chunk_error
from cosmos_policy_ros.ros_env import local_ros_env
from cosmos_policy_ros.supervisor import Supervisor, python_module_argv


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cosmos-aloha demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=int(os.environ.get("DEMO_EPISODES", 5)))
    p.add_argument("--task", default="transfer_cube")
    p.add_argument("--checkpoint", default="",
                   help="bundle folder (default, direct mode: the bundled checkpoints/sim_crop_transfer_cube, run as "
                        "its policy.json says: chunk mode synchronous, re-querying every 25 actions; planning mode: "
                        "checkpoints/sim_small_transfer_cube, whose planning model the bundled one is)")
    p.add_argument("--mode", choices=("direct", "planning"), default="direct",
                   help="direct: the policy node; planning: the planner node (best-of-N with world model + value)")
    p.add_argument("--planning-checkpoint", default="",
                   help="planning mode: world/value bundle (default: the bundled one)")
    p.add_argument("--planner-config", default="planner_cpu.yaml", help="planning mode: best-of-N settings")
    p.add_argument("--chunk-mode", default="", help="executor chunk mode (default: the checkpoint's, else the graph's "
                   "mode default: blend for direct; synchronous for planning, whose plans outlast a chunk on a CPU)")
    p.add_argument("--episode-s", type=float, default=None,
                   help="simulated seconds per episode (default 10; 30 in planning mode, where the arm holds "
                        "while it plans)")
    p.add_argument("--lockstep", action="store_true",
                   help="the graph in lockstep (graph argument lockstep:=true, docs/sim.md): the sim waits for each "
                        "chunk, every node runs on simulated time, chunk mode synchronous; episodes last the task's "
                        "episode_steps (as in-process) unless --episode-s; the result does not depend on this "
                        "machine's speed")
    p.add_argument("--execute", type=int, default=None, metavar="K",
                   help="chunk_mode synchronous (so --lockstep): play the first K actions of each chunk, then request "
                        "the next (graph argument synchronous_steps; default: the checkpoint's policy.json "
                        "synchronous_steps, else config/executor.yaml: the whole chunk)")
    p.add_argument("--seed", type=int, default=0,
                   help="first episode seed (0-49: the bundled checkpoints' reported evaluation; their "
                        "demonstrations used 1000-1119)")
    p.add_argument("--width", type=int, default=None,
                   help="sim camera width (default: the checkpoint's square training size, else 128)")
    p.add_argument("--height", type=int, default=None, help="sim camera height (default: as --width, else 96)")
    p.add_argument("--camera-rate", type=float, default=12.5)
    p.add_argument("--domain-id", type=int, default=None)
    p.add_argument("--out", default="demo_out",
                   help="folder for the report (JSON) and per episode a GIF, a chunk plot and a PNG strip")
    p.add_argument("--strip-every-s", type=float, default=1.0, help="simulated seconds between strip frames")
    p.add_argument("--verbose", action="store_true", help="show every node's output")
    a = p.parse_args(argv)
    if a.execute is not None and (why := actions_per_chunk_error(a.execute)):
        p.error(f"--execute: {why}")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv if argv is not None else sys.argv[1:])
    lockstep_episode_s = a.episode_s  # lockstep: None = the task's horizon, as the in-process evaluation
    if a.lockstep and a.episode_s is None:
        a.episode_s = task_episode_s(a.task)
    if a.episode_s is None:
        a.episode_s = 30.0 if a.mode == "planning" else 10.0
    domain = a.domain_id if a.domain_id is not None else 100 + os.getpid() % 30
    env = local_ros_env(domain_id=domain, force=True)
    os.environ.update(env)
    checkpoint, note = _checkpoint(a.checkpoint, a.mode)
    if a.width is None or a.height is None:
        a.width, a.height = camera_size(checkpoint, a.width, a.height)
    specs = resolve(a.mode, _graph_arguments(a, checkpoint, lockstep_episode_s), load_graph())
    a.chunk_mode = dict(next(s for s in specs if s.key == "executor").parameters)["chunk_mode"]
    if a.execute is not None and a.chunk_mode != "synchronous":
        print(f"demo: error: --execute {a.execute} plays the first K actions of each chunk in chunk_mode synchronous "
              f"(--lockstep, --mode planning or --chunk-mode synchronous); this graph runs {a.chunk_mode}",
              file=sys.stderr)
        return 2
    print(f"demo: graph '{a.mode}' on the simulated ALOHA (ROS_DOMAIN_ID={domain}, loopback only): "
          f"{', '.join(s.name for s in specs)}; checkpoint {checkpoint}", flush=True)
    lines: list[str] = []
    # node output is kept and shown only on failure (or with --verbose)
    sup = Supervisor([(s.key, python_module_argv(s.module, s.ros_args())) for s in specs], env=env,
                     out=(lambda line: print(line, flush=True)) if a.verbose else lines.append)
    sup.start()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    try:
        report = _run_episodes(a, sup, checkpoint, note)
    except GraphEpisodeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        report = None
    finally:
        sup.request_stop("demo finished")
        result = sup.wait(timeout=0)
    if report is None:
        print("\n".join(lines[-40:]))
        print(f"demo: FAILED ({result.reason})", file=sys.stderr)
        return 1
    out = Path(a.out)
    (out / "demo_report.json").write_text(json.dumps(report, indent=1))
    print_graph_report(report)
    print(f"demo: report written to {out / 'demo_report.json'}; to look at, per episode:")
    for line in media_lines(report["episodes"], out):
        print(f"  {line}")
    return 0


def _checkpoint(given: str, mode: str) -> tuple[Path, str]:
    """The bundle to run and a note for the report: random weights when no trained checkpoint is bundled.
    Planning mode's default is the policy the bundled planning model was fine-tuned from."""
    checkpoint = Path(given) if given else default_checkpoint() if mode == "planning" else default_demo_checkpoint()
    if checkpoint.exists():
        return checkpoint, ""
    from cosmos_policy_ros.deploy.random_bundle import make_random_bundle  # heavy (torch), needed only here

    checkpoint = make_random_bundle(Path(tempfile.mkdtemp(prefix="cosmos_demo_")) / "random", "tiny_test")
    note = ("NO TRAINED CHECKPOINT IS BUNDLED: running the graph with RANDOM weights. The arms move, "
            "the task is not solved; success below is what random weights achieve.")
    print(f"demo: {note}", flush=True)
    return checkpoint, note


def _graph_arguments(a: argparse.Namespace, checkpoint: Path,
                     lockstep_episode_s: float | None = None) -> dict[str, str]:
    """Launch arguments of config/graph.yaml for the demo's graph (the checkpoint named: the demo's default is not
    the nodes')."""
    return {"use_sim": "true", "task": a.task, "policy_checkpoint": str(checkpoint),
            "autostart": "true", "sim_width": str(a.width), "sim_height": str(a.height),
            "sim_camera_rate_hz": str(a.camera_rate), "planning_checkpoint": a.planning_checkpoint,
            "planner_config": a.planner_config, "chunk_mode": a.chunk_mode,
            "sim_viewer": "true",  # the GIFs' large view of the workspace
            "synchronous_steps": "" if a.execute is None else str(a.execute),
            # lockstep: the runner starts each episode (an autostart would ask the policy for a chunk before
            # the first reset, and the chunks' sampler seeds would no longer match the in-process evaluation's)
            **({"lockstep": "true", "autostart": "false",
                "lockstep_episode_s": "" if lockstep_episode_s is None else str(lockstep_episode_s)}
               if a.lockstep else {})}


def _run_episodes(a: argparse.Namespace, sup: Supervisor, checkpoint: Path, note: str) -> dict:
    """The seeds through the started graph; the report (demo_report.json) built from their EpisodeResults."""
    settings = GraphEpisodeSettings(task=a.task, episode_s=a.episode_s, strip_every_s=a.strip_every_s, out=Path(a.out),
                                    lockstep=a.lockstep)
    with GraphEpisodeRunner(settings, dead_nodes=lambda: _exited(sup)) as runner:
        episodes = runner.run(range(a.seed, a.seed + a.episodes))
        executor = runner.executor_summary()
    return graph_report(episodes, note=note, mode=a.mode, chunk_mode=a.chunk_mode, checkpoint=str(checkpoint),
                        task=a.task, executor=executor)


def _exited(sup: Supervisor) -> list[str]:
    return [c.name for c in sup.children if c.proc.poll() is not None]


def task_episode_s(task: str) -> float:
    """Simulated seconds of the task's episode (config/sim/tasks.yaml episode_steps at the sim's 50 Hz)."""
    from cosmos_policy_ros.sim.world_config import load_tasks_config, load_world_config  # noqa: PLC0415

    return load_tasks_config()[task].episode_steps * load_world_config().control_dt


def camera_size(checkpoint: Path, width: int | None, height: int | None) -> tuple[int, int]:
    """Render what the checkpoint was trained on: our sim checkpoints saw square renders at the model's
    image size (a 4:3 render squashed to a square would show the policy another field of view), larger when
    the bundle crops a camera (as its demos were rendered: Preprocessing.square_render_side)."""
    size = None
    try:
        bundle = resolve_bundle(checkpoint)
        meta = bundle.meta
        stated = meta.get("preprocess") if isinstance(meta.get("preprocess"), dict) else {}
        if meta.get("center_crop", stated.get("center_crop")) is False:   # made by our trainer from sim renders
            lay = bundle.model_config.layout
            size = bundle.preprocessing.square_render_side(int(lay.image_size), lay.cameras)
    except (ConfigError, KeyError, TypeError, ValueError):
        pass  # not our checkpoint format: the nodes report what is wrong with it
    return (width or size or 128, height or width or size or 96)


if __name__ == "__main__":
    sys.exit(main())
