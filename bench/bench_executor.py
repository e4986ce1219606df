"""Executor loop jitter while a CPU-heavy "model" node runs beside it.

Starts the real executor node (subprocess, interbotix backend) and a fake model node (subprocess)
that answers /cosmos/chunk_request with chunks after burning CPU on every core (torch matmuls when
torch is installed, numpy otherwise) — the load a Cosmos policy puts on a CPU-only machine. This
process publishes joint states and measures the command stream. Two phases: idle, then loaded.

Figures: executor-side |period - 20 ms| p50/p99 (from ExecutorStatus, last 1000 ticks), overruns,
and receiver-side command rate and inter-arrival p50/p99 on /follower_left/commands/joint_group.

    .venv/bin/python bench/bench_executor.py [--seconds 10] [--priority 0] [--mode blend] [--no-collision]
DDS stays on loopback (cosmos_policy_ros.ros_env.local_ros_env).
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np

from cosmos_policy_ros import topics


def fake_model_main(threads: int) -> None:
    """The CPU hog: a node that 'infers' (busy matmuls on all cores) and publishes a chunk per request."""
    import rclpy
    from builtin_interfaces.msg import Duration
    from std_msgs.msg import Header
    from trajectory_msgs.msg import JointTrajectoryPoint

    from cosmos_policy_ros.msg import ActionChunk
    from cosmos_policy_ros.robot.aloha import AlohaRobot

    robot = AlohaRobot.from_yaml()
    start = robot.pose14("start", 0.5)
    try:
        import torch

        torch.set_num_threads(threads)
        a = torch.randn(768, 768)

        def burn(seconds):
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                a @ a
    except ImportError:
        a = np.random.rand(768, 768)

        def burn(seconds):
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                a @ a

    rclpy.init()
    node = rclpy.create_node("fake_cosmos_model")
    pub = node.create_publisher(ActionChunk, topics.ACTION_CHUNK, 10)
    pending = []
    node.create_subscription(Header, topics.CHUNK_REQUEST, lambda h: pending.append(h), 10)
    seq = 0
    while rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.0)
        if not pending:
            burn(0.05)  # the model process never idles: it is busy between requests too
            continue
        pending.clear()
        stamp = node.get_clock().now()
        burn(0.4)  # "inference"
        seq += 1
        msg = ActionChunk(sequence=seq, source="policy", inference_latency_s=0.4)
        msg.header.stamp = stamp.to_msg()
        msg.trajectory.joint_names = robot.joint_names
        t0 = stamp.nanoseconds * 1e-9
        for i in range(50):
            t = 0.04 * i
            q = start + 0.2 * math.sin(math.pi * (t0 + t))
            p = JointTrajectoryPoint(positions=[float(x) for x in q])
            p.time_from_start = Duration(sec=int(t), nanosec=int((t - int(t)) * 1e9))
            msg.trajectory.points.append(p)
        pub.publish(msg)


def measure(node, ex, got, statuses, seconds):
    from helpers_local import spin_for

    got.clear()
    t0 = time.monotonic()
    spin_for(ex, seconds)
    window = time.monotonic() - t0
    times = np.array(got)
    gaps = np.diff(times) * 1e3
    st = statuses[-1]
    return dict(rate=len(times) / window, gap_p50=np.percentile(gaps, 50), gap_p99=np.percentile(gaps, 99),
                gap_max=gaps.max(), err_p50=st.loop_period_p50_error_s * 1e3, err_p99=st.loop_period_p99_error_s * 1e3,
                mean=st.loop_period_mean_s * 1e3, overruns=st.loop_overruns, state=st.state,
                accepted=st.chunks_accepted)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--priority", type=int, default=0, help="executor loop SCHED_FIFO priority (0 = normal)")
    ap.add_argument("--mode", default="blend")
    ap.add_argument("--no-collision", action="store_true",
                    help="run the executor with safety.collision false (the collision guard off)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="hog threads")
    ap.add_argument("--fake-model", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fake_model:
        fake_model_main(args.threads)
        return 0

    from cosmos_policy_ros.ros_env import apply_local_ros_env, local_ros_env

    domain = int(os.environ.get("ROS_DOMAIN_ID", 60 + os.getpid() % 30))
    apply_local_ros_env(domain)
    env = local_ros_env(domain)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_srvs.srv import Trigger

    from cosmos_policy_ros.msg import ExecutorStatus
    from cosmos_policy_ros.robot.aloha import AlohaRobot

    global helpers_local  # tiny spin helper, kept here so the bench has no test imports
    import types

    helpers_local = types.ModuleType("helpers_local")

    def spin_for(ex, seconds):
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.01)

    helpers_local.spin_for = spin_for
    sys.modules["helpers_local"] = helpers_local

    robot = AlohaRobot.from_yaml()
    procs = []
    # a copy of config/executor.yaml: loop_priority as asked; no driver set-up (this bench plays the driver's
    # joint states itself and measures the loop, not the xs_sdk)
    import tempfile

    import yaml

    from cosmos_policy_ros.config import read_yaml

    data = read_yaml("executor.yaml")
    data["loop_priority"] = args.priority
    data["interbotix"]["configure_driver"] = False
    if args.no_collision:
        data["safety"]["collision"] = False
    tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    yaml.safe_dump(data, tmp)
    tmp.close()
    extra = ["-p", f"config:={tmp.name}"]
    exe = subprocess.Popen([sys.executable, "-m", "cosmos_policy_ros.nodes.executor_node", "--ros-args",
                            "-p", f"chunk_mode:={args.mode}", "-p", "backend:=interbotix", "-p", "autostart:=true",
                            *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs.append(exe)
    rclpy.init()
    node = rclpy.create_node("bench_executor")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    from interbotix_xs_msgs.msg import JointGroupCommand

    got, statuses = [], []
    node.create_subscription(JointGroupCommand, robot.follower_topic("left", "joint_group"),
                             lambda m: got.append(time.monotonic()), 100)
    node.create_subscription(ExecutorStatus, topics.EXECUTOR_STATUS, statuses.append, 10)
    pubs = [node.create_publisher(JointState, robot.follower_topic(s, "joint_states"), qos_profile_sensor_data)
            for s in robot.config.arms]
    finger = float(robot.normalized_to_follower_finger(0.5))
    start = robot.pose14("start", 0.5)

    def js():
        for p in pubs:
            p.publish(JointState(name=robot.driver_joint_names,
                                 position=[float(x) for x in start[:6]] + [1.0, finger, -finger]))

    node.create_timer(0.01, js)
    results = {}
    load = os.getloadavg()[0]
    try:
        cli = node.create_client(Trigger, f"{topics.EXECUTOR_SERVICES}/start")
        t_end = time.monotonic() + 30
        while not cli.service_is_ready() and time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.1)
        spin_for(ex, 2.0)
        results["idle (no model)"] = measure(node, ex, got, statuses, args.seconds)
        hog = subprocess.Popen([sys.executable, __file__, "--fake-model", "--threads", str(args.threads)], env=env)
        procs.append(hog)
        t_end = time.monotonic() + 30
        while (not statuses or statuses[-1].chunks_accepted < 2) and time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.1)
        results[f"CPU-heavy model node ({args.threads} threads)"] = measure(node, ex, got, statuses, args.seconds)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        node.destroy_node()
        rclpy.try_shutdown()

    print(f"\nexecutor loop jitter, {os.cpu_count()} CPUs, load average {load:.2f} before start, "
          f"mode {args.mode}, loop priority {args.priority or 'normal'}, collision guard "
          f"{'off' if args.no_collision else 'on'}, {args.seconds:.0f} s per phase")
    print(f"{'condition':42s} {'rate Hz':>8s} {'period':>8s} {'|err| p50':>10s} {'|err| p99':>10s} {'overruns':>9s} "
          f"{'rx gap p50':>11s} {'rx gap p99':>11s} {'rx gap max':>11s} {'chunks':>7s}")
    for name, r in results.items():
        print(f"{name:42s} {r['rate']:8.2f} {r['mean']:7.3f}ms {r['err_p50']:8.3f}ms {r['err_p99']:8.3f}ms "
              f"{r['overruns']:9d} {r['gap_p50']:9.2f}ms {r['gap_p99']:9.2f}ms {r['gap_max']:9.2f}ms "
              f"{r['accepted']:7d} {r['state']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
