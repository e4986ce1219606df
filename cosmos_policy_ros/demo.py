"""`cosmos-aloha demo` (and `make demo`): the direct node graph on the simulated ALOHA, measured.

Starts the same graph as `cosmos-aloha up direct --sim` (sim -> policy -> executor -> sim) in a
private DDS domain on loopback, runs seeded episodes through the sim's reset service, and reports
what it measured: success per episode, success rate with a Wilson interval, chunk latency, executor
rate and safety interventions. With no trained checkpoint it says so and runs random weights — the
arms move, nothing is solved, and the report says exactly that.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cosmos_policy_ros.deploy.bundle import default_checkpoint
from cosmos_policy_ros.graph import load_graph, resolve
from cosmos_policy_ros.ros_env import local_ros_env
from cosmos_policy_ros.supervisor import Supervisor, python_module_argv
from cosmos_policy_ros.train.evaluate import save_strip, wilson_interval


def parse(argv):
    p = argparse.ArgumentParser(prog="cosmos-aloha demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=int(os.environ.get("DEMO_EPISODES", 5)))
    p.add_argument("--task", default="transfer_cube")
    p.add_argument("--checkpoint", default="", help="bundle folder (default: the bundled small checkpoint)")
    p.add_argument("--mode", choices=("direct", "planning"), default="direct",
                   help="direct: the policy node; planning: the planner node (best-of-N with world model + value)")
    p.add_argument("--planning-checkpoint", default="", help="planning mode: world/value bundle (default: the bundled one)")
    p.add_argument("--planner-config", default="planner_cpu.yaml", help="planning mode: best-of-N settings")
    p.add_argument("--chunk-mode", default="", help="executor chunk mode (default: blend for direct; synchronous for "
                   "planning, whose plans take longer than a chunk lasts on a CPU)")
    p.add_argument("--episode-s", type=float, default=None,
                   help="simulated seconds per episode (default 10; 30 in planning mode, where the arm holds while it plans)")
    p.add_argument("--seed", type=int, default=1000, help="first episode seed")
    p.add_argument("--width", type=int, default=None,
                   help="sim camera width (default: the checkpoint's square training size, else 128)")
    p.add_argument("--height", type=int, default=None, help="sim camera height (default: as --width, else 96)")
    p.add_argument("--camera-rate", type=float, default=12.5)
    p.add_argument("--domain-id", type=int, default=None)
    p.add_argument("--out", default="demo_out", help="folder for the report (JSON) and per-episode PNG strips")
    p.add_argument("--strip-every-s", type=float, default=1.0, help="simulated seconds between strip frames")
    p.add_argument("--verbose", action="store_true", help="show every node's output")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv if argv is not None else sys.argv[1:])
    if a.episode_s is None:
        a.episode_s = 30.0 if a.mode == "planning" else 10.0
    a.chunk_mode = a.chunk_mode or ("synchronous" if a.mode == "planning" else "blend")
    domain = a.domain_id if a.domain_id is not None else 100 + os.getpid() % 30
    env = local_ros_env(domain_id=domain, force=True)
    os.environ.update(env)
    checkpoint = Path(a.checkpoint) if a.checkpoint else default_checkpoint()
    note = ""
    if not checkpoint.exists():
        from cosmos_policy_ros.deploy.random_bundle import make_random_bundle

        checkpoint = make_random_bundle(Path(tempfile.mkdtemp(prefix="cosmos_demo_")) / "random", "tiny_test")
        note = ("NO TRAINED CHECKPOINT IS BUNDLED: running the graph with RANDOM weights. The arms move, "
                "the task is not solved; success below is what random weights achieve.")
        print(f"demo: {note}", flush=True)
    if a.width is None or a.height is None:
        a.width, a.height = _camera_size(checkpoint, a.width, a.height)
    given = {"use_sim": "true", "task": a.task, "policy_checkpoint": "" if not a.checkpoint and not note else str(checkpoint),
             "autostart": "true", "sim_width": str(a.width), "sim_height": str(a.height),
             "sim_camera_rate_hz": str(a.camera_rate), "planning_checkpoint": a.planning_checkpoint,
             "planner_config": a.planner_config,
             "chunk_mode": a.chunk_mode}
    specs = resolve(a.mode, given, load_graph())
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
    finally:
        sup.request_stop("demo finished")
        result = sup.wait(timeout=0)
    if report is None:
        print("\n".join(lines[-40:]))
        print(f"demo: FAILED ({result.reason})", file=sys.stderr)
        return 1
    out = Path(a.out)
    (out / "demo_report.json").write_text(json.dumps(report, indent=1))
    _print_report(report)
    print(f"demo: report written to {out / 'demo_report.json'}, one PNG strip per episode in {out}/episode_*.png")
    return 0


def _run_episodes(a, sup: Supervisor, checkpoint: Path, note: str) -> dict | None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from cosmos_policy_ros.perception.cameras import load_cameras
    from cosmos_policy_ros.perception.image_codec import image_to_rgb

    from cosmos_policy_ros.msg import ActionChunk, ExecutorStatus
    from cosmos_policy_ros.srv import ResetEpisode

    rclpy.init()
    node = rclpy.create_node("cosmos_demo")
    status, chunks, ex_status = [], [], []
    from rclpy.qos import DurabilityPolicy, QoSProfile

    node.create_subscription(String, "/sim/status", lambda m: status.append(json.loads(m.data)),
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    node.create_subscription(ActionChunk, "/cosmos/action_chunk", chunks.append, 10)
    node.create_subscription(ExecutorStatus, "/cosmos/executor/status", ex_status.append, 10)
    cams = load_cameras()
    primary = next(n for n, c in cams.cameras.items() if c.role == "primary")
    strip = {"seed": None, "next_t": 0.0, "frames": [], "last": None}

    def on_image(msg):  # one frame per strip_every_s of simulated time of the running episode
        strip["last"] = msg
        st = status[-1] if status else None
        if st is None or st["seed"] != strip["seed"] or st["time"] < strip["next_t"]:
            return
        strip["frames"].append(image_to_rgb(msg))
        strip["next_t"] += a.strip_every_s

    node.create_subscription(Image, cams.topic(primary), on_image, qos_profile_sensor_data)
    reset = node.create_client(ResetEpisode, "/sim/reset")
    stop = node.create_client(Trigger, "/cosmos/executor/stop")
    start = node.create_client(Trigger, "/cosmos/executor/start")
    ex = SingleThreadedExecutor()
    ex.add_node(node)

    def spin(pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            if any(c.proc.poll() is not None for c in sup.children):
                dead = [c.name for c in sup.children if c.proc.poll() is not None]
                print(f"demo: node(s) {dead} exited", file=sys.stderr)
                return False
            ex.spin_once(timeout_sec=0.05)
        return pred()

    def call(client, req, timeout=30.0):
        if not client.wait_for_service(timeout_sec=timeout):
            return None
        fut = client.call_async(req)
        return fut.result() if spin(fut.done, timeout) else None

    episodes = []
    try:
        print("demo: waiting for the first action chunk (model warm-up)...", flush=True)
        if not spin(lambda: len(chunks) > 0, 300):
            return None
        for i in range(a.episodes):
            seed = a.seed + i
            call(stop, Trigger.Request())
            r = call(reset, ResetEpisode.Request(task=a.task, seed=seed))
            if r is None or not r.success:
                print(f"demo: reset failed: {r.message if r else 'no answer'}", file=sys.stderr)
                return None
            spin(lambda: status and status[-1]["seed"] == seed and status[-1]["step"] < 25, 20)
            n_chunks = len(chunks)
            strip.update(seed=seed, next_t=0.0, frames=[])
            call(start, Trigger.Request())
            t0 = time.monotonic()
            ok = spin(lambda: status and status[-1]["seed"] == seed and
                      (status[-1]["success"] or status[-1]["time"] >= a.episode_s), 60 + a.episode_s * 30)
            if not ok:
                return None
            s = status[-1]
            strip["seed"] = None
            if strip["last"] is not None:
                strip["frames"].append(image_to_rgb(strip["last"]))
            png = Path(a.out) / f"episode_{seed:05d}.png"
            save_strip(strip["frames"], png, f"seed {seed} {'SUCCESS' if s['success'] else 'fail'} "
                       f"stage {s['max_stage']} (through the ROS graph, {a.strip_every_s:g} s per frame)")
            ep_chunks = chunks[n_chunks:]
            episodes.append({"seed": seed, "success": bool(s["success"]), "max_stage": s["max_stage"],
                             "sim_time_s": s["time"], "wall_s": time.monotonic() - t0, "chunks": len(ep_chunks),
                             "latency_s": [c.inference_latency_s for c in ep_chunks], "strip": png.name})
            print(f"demo: episode {i + 1}/{a.episodes} seed {seed}: {'SUCCESS' if s['success'] else 'failure'} "
                  f"(stage {s['max_stage']}/4, {s['time']:.1f} s simulated, {len(ep_chunks)} chunks)", flush=True)
        call(stop, Trigger.Request())
    finally:
        node.destroy_node()
        rclpy.shutdown()
    lat = np.array([x for e in episodes for x in e["latency_s"]] or [math.nan])
    last = ex_status[-1] if ex_status else None
    succ = sum(e["success"] for e in episodes)
    lo, hi = wilson_interval(succ, len(episodes))
    return {"note": note, "mode": a.mode, "chunk_mode": a.chunk_mode, "checkpoint": str(checkpoint), "task": a.task, "episodes": episodes,
            "success_rate": succ / max(1, len(episodes)), "success_ci95": [lo, hi],
            "chunk_latency_p50_s": float(np.nanpercentile(lat, 50)), "chunk_latency_p95_s": float(np.nanpercentile(lat, 95)),
            "executor": None if last is None else {
                "loop_period_mean_s": last.loop_period_mean_s, "loop_period_p99_error_s": last.loop_period_p99_error_s,
                "interventions": last.interventions, "last_intervention": last.last_intervention,
                "chunks_accepted": last.chunks_accepted, "chunks_rejected": last.chunks_rejected}}


def _camera_size(checkpoint: Path, width: int | None, height: int | None) -> tuple[int, int]:
    """Render what the checkpoint was trained on: our sim checkpoints saw square renders at the model's
    image size (a 4:3 render squashed to a square would show the policy another field of view)."""
    from cosmos_policy_ros.config import ConfigError
    from cosmos_policy_ros.deploy.bundle import resolve_bundle

    size = None
    try:
        meta = resolve_bundle(checkpoint).meta
        if meta.get("center_crop") is False:   # made by our trainer from sim renders
            size = int(meta["model"]["layout"]["image_size"])
    except (ConfigError, KeyError, TypeError, ValueError):
        pass  # not our checkpoint format: the nodes report what is wrong with it
    return (width or size or 128, height or width or size or 96)


def _recorded_evaluations(checkpoint: str) -> list[str]:
    """The checkpoint's own evaluation files (written by `cosmos-aloha eval`), one line each."""
    lines = []
    for f in sorted(Path(checkpoint).glob("eval_*.json")):
        try:
            d = json.loads(f.read_text())
            lo, hi = d["ci95"]
            lines.append(f"{f.name}: {d['successes']}/{d['n']} = {d['success_rate']:.0%} (95% CI {lo:.0%}-{hi:.0%}), "
                         f"mean stage {d['mean_stage']:.2f}/4")
        except (OSError, ValueError, KeyError):
            continue
    return lines


def _print_report(r: dict) -> None:
    what = "best-of-N planner" if r.get("mode") == "planning" else "direct policy"
    print(f"\n=== cosmos_policy_ros demo: {what} on the simulated ALOHA ===")
    if r["note"]:
        print(f"NOTE: {r['note']}")
    print(f"checkpoint: {r['checkpoint']}   task: {r['task']}")
    for line in _recorded_evaluations(r["checkpoint"]):
        print(f"  recorded in-process evaluation of this checkpoint: {line}")
    print(f"{'seed':>6} {'result':>8} {'stage':>6} {'sim s':>6} {'wall s':>7} {'chunks':>7}")
    for e in r["episodes"]:
        print(f"{e['seed']:>6} {'success' if e['success'] else 'failure':>8} {e['max_stage']:>4}/4 "
              f"{e['sim_time_s']:>6.1f} {e['wall_s']:>7.1f} {e['chunks']:>7}")
    n = len(r["episodes"])
    lo, hi = r["success_ci95"]
    print(f"success: {round(r['success_rate'] * n)}/{n} = {r['success_rate']:.0%} (95% CI {lo:.0%}-{hi:.0%})")
    print(f"chunk latency (observation -> published): p50 {r['chunk_latency_p50_s'] * 1000:.0f} ms, "
          f"p95 {r['chunk_latency_p95_s'] * 1000:.0f} ms")
    ex = r["executor"]
    if ex:
        print(f"executor: mean period {ex['loop_period_mean_s'] * 1000:.1f} ms, p99 period error "
              f"{ex['loop_period_p99_error_s'] * 1000:.1f} ms, chunks accepted {ex['chunks_accepted']}, rejected "
              f"{ex['chunks_rejected']}, safety interventions {ex['interventions']}")


if __name__ == "__main__":
    sys.exit(main())
