"""Sim joint-state rate with and without the executor streaming commands (issue 18, item 8).

The executor holds when a follower's joint states are older than watchdog.joint_state_timeout_s
(0.5 s), so the sim must publish them at its rate whatever the command traffic and rendering. Per
camera setting this starts the real sim node (subprocess) and measures here, per arm, the joint-state
rate and the largest gap, both between arrivals and between header stamps (the sim's own publishing
schedule), in two phases:

  sim alone    no commands
  + executor   the real executor node (backend sim, autostart) streaming 50 Hz commands, fed a chunk
               holding the start pose on every chunk request, so it stays RUNNING and any HOLDING is
               the joint-state watchdog (counted from the executor's log)

    .venv/bin/python bench/bench_sim_rate.py [--seconds 15] [--case demo|default|all] [--load 2] [--domain 69]
--load N runs N busy processes (pure Python loops) throughout, the load of a policy node beside the sim.
Prints figures; not a test. DDS stays on loopback (cosmos_policy_ros.ros_env.local_ros_env).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cosmos_policy_ros import topics
from cosmos_policy_ros.ros_env import apply_local_ros_env, local_ros_env

# name -> sim node parameters: the demo's small images, and the node's defaults (4 x 640x480 at 25 Hz)
CASES = {
    "demo": ["width:=64", "height:=64", "camera_rate_hz:=12.5"],
    "default": [],
}
WATCHDOG_S = 0.5  # config/executor.yaml watchdog.joint_state_timeout_s


@dataclass
class Streams:
    """Arrival times and header stamps of what the bench hears, per arm, plus executor commands."""

    arrivals: dict[str, list[float]] = field(default_factory=lambda: {"left": [], "right": []})
    stamps: dict[str, list[float]] = field(default_factory=lambda: {"left": [], "right": []})
    commands: list[float] = field(default_factory=list)

    def clear(self) -> None:
        for v in (*self.arrivals.values(), *self.stamps.values(), self.commands):
            v.clear()

    def on_joint_state(self, side: str, msg) -> None:
        self.arrivals[side].append(time.monotonic())
        self.stamps[side].append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)


def spin_for(ex, seconds: float, until=None) -> bool:
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        if until is not None and until():
            return True
        ex.spin_once(timeout_sec=0.01)
    return until is None


def start(module: str, params: list[str], env: dict, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", f"cosmos_policy_ros.nodes.{module}", "--ros-args"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def figures(streams: Streams, window: float) -> dict[str, dict]:
    out = {}
    for side in ("left", "right"):
        rx = np.diff(streams.arrivals[side]) * 1e3
        st = np.diff(streams.stamps[side]) * 1e3
        out[side] = dict(rate=len(streams.arrivals[side]) / window,
                         rx_max=rx.max() if rx.size else float("nan"),
                         rx_p99=np.percentile(rx, 99) if rx.size else float("nan"),
                         stamp_max=st.max() if st.size else float("nan"),
                         over=int(np.sum(rx >= WATCHDOG_S * 1e3)))
    out["cmd_rate"] = len(streams.commands) / window
    return out


def measure(ex, streams: Streams, seconds: float) -> dict:
    streams.clear()
    t0 = time.monotonic()
    spin_for(ex, seconds)
    return figures(streams, time.monotonic() - t0)


def run_case(name: str, ex, streams: Streams, env: dict, seconds: float, logdir: Path) -> dict:
    results = {}
    sim = start("sim_node", CASES[name], env, logdir / f"sim_{name}.log")
    exe = None
    try:
        if not spin_for(ex, 120, lambda: all(len(v) > 10 for v in streams.arrivals.values())):
            raise RuntimeError(f"no joint states from the sim; see {logdir / f'sim_{name}.log'}")
        spin_for(ex, 2.0)
        results["sim alone"] = measure(ex, streams, seconds)
        exe_log = logdir / f"executor_{name}.log"
        exe = start("executor_node", ["backend:=sim", "autostart:=true"], env, exe_log)
        streams.commands.clear()
        if not spin_for(ex, 60, lambda: len(streams.commands) > 50):
            raise RuntimeError(f"the executor streams no commands; see {exe_log}")
        spin_for(ex, 2.0)
        before = exe_log.read_text().count("joint states stale")
        results["+ executor"] = measure(ex, streams, seconds)
        results["+ executor"]["holds"] = exe_log.read_text().count("joint states stale") - before
    finally:
        if exe is not None:
            stop(exe)
        stop(sim)
    return results


def make_node(streams: Streams):
    import rclpy
    from interbotix_xs_msgs.msg import JointGroupCommand
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Header

    from cosmos_policy_ros.msg import ActionChunk
    from cosmos_policy_ros.nodes.chunk_msgs import fill_action_chunk
    from cosmos_policy_ros.robot.aloha import AlohaRobot

    robot = AlohaRobot.from_yaml()
    node = rclpy.create_node("bench_sim_rate")
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for side in ("left", "right"):
        node.create_subscription(JointState, robot.follower_topic(side, "joint_states"),
                                 lambda m, s=side: streams.on_joint_state(s, m), reliable)
    node.create_subscription(JointGroupCommand, robot.follower_topic("left", "joint_group"),
                             lambda m: streams.commands.append(time.monotonic()), 100)
    chunk_pub = node.create_publisher(ActionChunk, topics.ACTION_CHUNK, 10)
    hold = np.tile(robot.pose14("start", 1.0), (50, 1))  # the sim's reset pose, grippers open

    def on_request(_msg) -> None:  # answer every request at once: the executor stays RUNNING
        chunk_pub.publish(fill_action_chunk(ActionChunk(), hold, robot.joint_names,
                                            node.get_clock().now().to_msg(), 0.04, source="bench"))

    node.create_subscription(Header, topics.CHUNK_REQUEST, on_request, 10)
    return node


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="per phase")
    ap.add_argument("--case", choices=[*CASES, "all"], default="all")
    ap.add_argument("--load", type=int, default=0, help="busy processes running beside the nodes")
    ap.add_argument("--domain", type=int, default=69)
    args = ap.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    apply_local_ros_env(args.domain)
    env = local_ros_env(args.domain, force=True)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    streams = Streams()
    node = make_node(streams)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    load = os.getloadavg()[0]
    logdir = Path(tempfile.mkdtemp(prefix="bench_sim_rate_"))
    results = {}
    try:
        for name in CASES if args.case == "all" else [args.case]:
            results[name] = run_case(name, ex, streams, env, args.seconds, logdir)
    finally:
        for h in hogs:
            h.kill()
        node.destroy_node()
        rclpy.try_shutdown()

    print(f"\nsim joint states, {os.cpu_count()} CPUs, load average {load:.2f} before start -> "
          f"{os.getloadavg()[0]:.2f} after, {args.seconds:.0f} s per phase, {args.load} busy processes, "
          f"logs in {logdir}")
    print(f"{'case':8s} {'phase':11s} {'arm':5s} {'rate Hz':>8s} {'gap max':>9s} {'gap p99':>9s} "
          f"{'stamp gap max':>14s} {'gaps>0.5s':>9s} {'cmd Hz':>7s} {'holds':>6s}")
    for case, phases in results.items():
        for phase, r in phases.items():
            for side in ("left", "right"):
                a = r[side]
                print(f"{case:8s} {phase:11s} {side:5s} {a['rate']:8.1f} {a['rx_max']:7.0f}ms {a['rx_p99']:7.0f}ms "
                      f"{a['stamp_max']:12.0f}ms {a['over']:9d} {r['cmd_rate']:7.1f} {r.get('holds', '-'):>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
