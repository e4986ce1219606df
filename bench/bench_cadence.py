"""The released checkpoint's cadence through the node graph in the sim: executor ``chunk_mode: synchronous``.

Upstream ALOHA deployment plays 25 Hz actions, executes a whole chunk, then re-queries with the arm at rest.
This bench starts the graph of ``cosmos-aloha up direct --sim chunk_mode:=synchronous autostart:=true
sim_width:=64 sim_height:=64 sim_camera_rate_hz:=12.5`` (bundled checkpoint) under the Supervisor in a private
loopback DDS domain, subscribes to /cosmos/action_chunk, the left follower's joint_group commands and the
executor status, and prints per chunk:

* actions executed: the chunk's action times (arrival + time_from_start, synchronous re-anchors to arrival)
  that fall before the next chunk's arrival, of the chunk's length;
* commands: left-arm commands received between the chunk's arrival and the next one's;
* rest: next arrival − the last time the left-arm command changed (the arm holding its last action);
* latency: the chunk's ``inference_latency_s`` (observation ready to published), and arrival − header.stamp.

    .venv/bin/python bench/bench_cadence.py [--seconds 40] [--domain 85]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=40.0, help="measurement window after the first chunk")
    ap.add_argument("--domain", type=int, default=85)
    ap.add_argument("--startup-timeout", type=float, default=300.0)
    ap.add_argument("--verbose", action="store_true", help="print the nodes' output")
    args = ap.parse_args()

    from cosmos_policy_ros.graph import load_graph, resolve
    from cosmos_policy_ros.ros_env import local_ros_env
    from cosmos_policy_ros.supervisor import Supervisor, python_module_argv

    env = local_ros_env(domain_id=args.domain, force=True)
    os.environ.update(env)
    given = {"use_sim": "true", "chunk_mode": "synchronous", "autostart": "true", "sim_width": "64",
             "sim_height": "64", "sim_camera_rate_hz": "12.5"}
    specs = resolve("direct", given, load_graph())
    lines: list[str] = []
    sup = Supervisor([(s.key, python_module_argv(s.module, s.ros_args())) for s in specs], env=env,
                     out=(lambda line: print(line, flush=True)) if args.verbose else lines.append)
    load_start = os.getloadavg()[0]

    import rclpy
    from interbotix_xs_msgs.msg import JointGroupCommand
    from rclpy.executors import SingleThreadedExecutor

    from cosmos_policy_ros import topics
    from cosmos_policy_ros.msg import ActionChunk, ExecutorStatus
    from cosmos_policy_ros.robot.aloha import AlohaRobot

    robot = AlohaRobot.from_yaml()
    chunks: list[tuple[float, ActionChunk]] = []   # (monotonic arrival, msg)
    cmds: list[tuple[float, np.ndarray]] = []
    statuses: list[ExecutorStatus] = []
    wall_arrival: list[float] = []                 # system-clock arrival, for arrival - header.stamp

    sup.start()
    rclpy.init()
    node = rclpy.create_node("bench_cadence")
    ex = SingleThreadedExecutor()
    ex.add_node(node)

    def on_chunk(m):
        chunks.append((time.monotonic(), m))
        wall_arrival.append(time.time())

    node.create_subscription(ActionChunk, topics.ACTION_CHUNK, on_chunk, 10)
    node.create_subscription(JointGroupCommand, robot.follower_topic("left", "joint_group"),
                             lambda m: cmds.append((time.monotonic(), np.array(m.cmd, dtype=float))), 200)
    node.create_subscription(ExecutorStatus, topics.EXECUTOR_STATUS, statuses.append, 10)
    t_end = None
    try:
        deadline = time.monotonic() + args.startup_timeout
        while not chunks:
            if time.monotonic() > deadline or any(c.proc.poll() is not None for c in sup.children):
                print("\n".join(lines[-40:]))
                print("bench_cadence: no chunk arrived (graph failed or too slow)", file=sys.stderr)
                return 1
            ex.spin_once(timeout_sec=0.1)
        load_run = os.getloadavg()[0]
        t_end = chunks[0][0] + args.seconds
        while time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.01)
    finally:
        sup.request_stop("bench finished")
        sup.wait(timeout=0)
        node.destroy_node()
        rclpy.try_shutdown()
    load_end = os.getloadavg()[0]

    print(f"\ncadence through the graph (direct --sim, chunk_mode synchronous, 64x64 @ 12.5 Hz cameras), "
          f"{args.seconds:.0f} s from the first chunk; {os.cpu_count()} CPUs, load average "
          f"{load_start:.2f} before start, {load_run:.2f} at first chunk, {load_end:.2f} at end")
    print(f"{'seq':>4s} {'arrival s':>9s} {'actions':>10s} {'commands':>9s} {'rest s':>7s} {'latency s':>10s} "
          f"{'arr-stamp s':>11s} {'period s':>9s}")
    rows = []
    t0 = chunks[0][0]
    for i in range(len(chunks) - 1):   # the last chunk has no successor: its rest is unknown
        (ta, m), (tn, _) = chunks[i], chunks[i + 1]
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in m.trajectory.points]
        executed = sum(1 for t in times if ta + t < tn)
        inside = [(t, c) for t, c in cmds if ta <= t < tn]
        last_change = ta
        for (_, a), (t, b) in zip(inside, inside[1:]):
            if np.max(np.abs(a - b)) > 1e-9:
                last_change = t
        rest = tn - last_change
        stamp = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
        dt = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        rows.append(dict(executed=executed, n=len(times), dt=dt, span=times[-1] + dt, commands=len(inside), rest=rest,
                         latency=m.inference_latency_s, age=wall_arrival[i] - stamp, period=tn - ta))
        r = rows[-1]
        print(f"{m.sequence:4d} {ta - t0:9.2f} {executed:4d} of {len(times):3d} {len(inside):9d} {rest:7.2f} "
              f"{r['latency']:10.2f} {r['age']:11.2f} {r['period']:9.2f}")
    if not rows:
        print("fewer than two chunks: nothing to measure")
        return 1
    med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    print(f"median: {med['executed']:.0f} of {med['n']:.0f} actions executed per chunk (action spacing "
          f"{med['dt'] * 1e3:.0f} ms, chunk span {med['span']:.2f} s), {med['commands']:.0f} commands,"
          f" rest {med['rest']:.2f} s between chunks, inference latency {med['latency']:.2f} s, "
          f"arrival - stamp {med['age']:.2f} s, chunk period {med['period']:.2f} s ({len(rows)} chunks)")
    if statuses:
        st = statuses[-1]
        print(f"executor: mode {st.chunk_mode}, state {st.state}, {st.chunks_accepted} accepted, "
              f"{st.chunks_rejected} rejected, period {st.loop_period_mean_s * 1e3:.2f} ms, "
              f"|err| p50/p99 {st.loop_period_p50_error_s * 1e3:.2f}/{st.loop_period_p99_error_s * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
