"""The sim node over real DDS speaks the Interbotix/realsense topics and obeys driver commands."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from cosmos_policy_ros import topics

pytestmark = pytest.mark.ros

CAMS = ["cam_high", "cam_left_wrist", "cam_right_wrist", "cam_low"]


@pytest.fixture(scope="module")
def sim_process():
    proc = subprocess.Popen(
        [sys.executable, "-m", "cosmos_policy_ros.nodes.sim_node", "--ros-args", "-p", "width:=160",
         "-p", "height:=120", "-p", "seed:=3", "-r", "__node:=test_sim"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    yield proc
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    print(out)


def test_sim_node_topics_commands_and_bad_input(sim_process, ros_context):
    import rclpy
    from helpers import spin_until
    from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from cosmos_policy_ros.perception.image_codec import image_to_rgb
    from cosmos_policy_ros.srv import ResetEpisode

    node = rclpy.create_node("sim_test_client", context=ros_context)
    images, states, status = {}, {"left": [], "right": []}, []
    for cam in CAMS:
        node.create_subscription(Image, f"/{cam}/camera/color/image_rect_raw",
                                 lambda m, c=cam: images.setdefault(c, []).append(m), qos_profile_sensor_data)
    for side in states:
        node.create_subscription(JointState, f"/follower_{side}/joint_states", states[side].append, 10)
    node.create_subscription(String, topics.SIM_STATUS, lambda m: status.append(json.loads(m.data)),
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    group = node.create_publisher(JointGroupCommand, "/follower_left/commands/joint_group", 10)
    single = node.create_publisher(JointSingleCommand, "/follower_left/commands/joint_single", 10)
    reset = node.create_client(ResetEpisode, topics.SIM_RESET)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    try:
        assert spin_until(ex, lambda: all(len(images.get(c, [])) >= 2 for c in CAMS)
                          and all(len(v) >= 5 for v in states.values()), timeout=60), \
            f"missing streams: images {({c: len(v) for c, v in images.items()})}, " \
            f"states {({s: len(v) for s, v in states.items()})}"
        js = states["left"][-1]
        assert list(js.name) == ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate",
                                 "gripper", "left_finger", "right_finger"]
        assert len(js.position) == len(js.velocity) == len(js.effort) == 9
        assert js.position[8] == pytest.approx(-js.position[7]) and js.velocity[7] == 0.0
        img = images["cam_high"][-1]
        assert (img.width, img.height, img.encoding) == (160, 120, "rgb8")
        rgb = image_to_rgb(img)
        assert rgb.std() > 10, "overhead image looks blank"

        target = [0.4, -0.7, 0.9, 0.1, -0.2, 0.3]
        good = JointGroupCommand(name="arm", cmd=target)

        def reached():
            return states["left"] and np.allclose(states["left"][-1].position[:6], target, atol=0.03)

        deadline = time.monotonic() + 30
        while not reached() and time.monotonic() < deadline:
            group.publish(good)
            single.publish(JointSingleCommand(name="gripper", cmd=1.2))
            spin_until(ex, lambda: False, timeout=0.1)
        assert reached(), f"left arm at {list(states['left'][-1].position[:6])}, wanted {target}"
        assert not np.allclose(states["right"][-1].position[:6], target, atol=0.03)

        # bad input: wrong length for the group ("all" has the 7 motors) -> refused as the driver does, the
        # sim keeps publishing the same target; NaN -> what the real driver makes of it: the zero-radian goal
        n_before = len(states["left"])
        group.publish(JointGroupCommand(name="arm", cmd=[0.0] * 5))
        group.publish(JointGroupCommand(name="all", cmd=[0.0] * 6))
        assert spin_until(ex, lambda: status and status[-1]["bad_commands"] >= 2, timeout=15), status[-1:]
        assert spin_until(ex, lambda: len(states["left"]) > n_before + 10, timeout=15)
        assert reached(), "a refused command moved the arm"
        group.publish(JointGroupCommand(name="arm", cmd=[float("nan")] * 6))
        assert spin_until(ex, lambda: status[-1]["bad_commands"] >= 3
                          and np.allclose(states["left"][-1].position[:6], 0.0, atol=0.05), timeout=15), \
            f"NaN goals: left arm at {list(states['left'][-1].position[:6])}, the driver sends it to 0 rad"

        assert reset.wait_for_service(timeout_sec=10)
        fut = reset.call_async(ResetEpisode.Request(task="transfer_cube", seed=11))
        assert spin_until(ex, fut.done, timeout=30) and fut.result().success, fut.result()
        assert spin_until(ex, lambda: status and status[-1]["seed"] == 11 and status[-1]["step"] < 50, timeout=15)
        fut = reset.call_async(ResetEpisode.Request(task="juggling", seed=1))
        assert spin_until(ex, fut.done, timeout=10)
        assert not fut.result().success and "unknown task 'juggling'" in fut.result().message
    finally:
        node.destroy_node()
    assert sim_process.poll() is None, "sim node died"


def test_sim_node_serves_the_driver_services_with_the_drivers_semantics(sim_process, ros_context):
    """Like the real xs_sdk after bring-up: a gripper command in rad closes the gripper (linear_position reads
    metres) until set_operating_modes switches it to current_based_position; an arm without torque sags."""
    import rclpy
    from helpers import spin_until
    from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
    from interbotix_xs_msgs.srv import OperatingModes, RobotInfo, TorqueEnable
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import JointState

    from cosmos_policy_ros.robot.aloha import AlohaRobot
    from cosmos_policy_ros.robot.xs_driver_emulation import GripperGeometry

    robot = AlohaRobot.from_yaml()
    node = rclpy.create_node("sim_driver_client", context=ros_context)
    states = []
    node.create_subscription(JointState, "/follower_right/joint_states", states.append, 10)
    group = node.create_publisher(JointGroupCommand, "/follower_right/commands/joint_group", 10)
    single = node.create_publisher(JointSingleCommand, "/follower_right/commands/joint_single", 10)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)

    def call(srv_type, service, **fields):
        client = node.create_client(srv_type, f"/follower_right/{service}")
        assert client.wait_for_service(timeout_sec=30), service
        fut = client.call_async(srv_type.Request(**fields))
        assert spin_until(ex, fut.done, timeout=10), service
        return fut.result()

    def gripper_after(rad, seconds=1.5):
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            single.publish(JointSingleCommand(name="gripper", cmd=rad))
            spin_until(ex, lambda: False, timeout=0.05)
        return float(robot.follower_finger_to_normalized(states[-1].position[7]))

    try:
        assert call(RobotInfo, "get_robot_info", cmd_type="single", name="gripper").mode == "linear_position"
        gripper_after(2 * 0.055)  # linear_position: the distance between the fingers, m
        assert states[-1].position[6] == pytest.approx(GripperGeometry().motor_angle(2 * 0.055), abs=0.03)
        opened = robot.config.gripper.follower_joint_open
        assert gripper_after(opened) < 0.15, "rad read as metres: the zero-radian goal closes the gripper"
        call(OperatingModes, "set_operating_modes", cmd_type="single", name="gripper", mode="current_based_position",
             profile_type="velocity", profile_velocity=0, profile_acceleration=0)
        assert gripper_after(opened) > 0.9
        shoulder = states[-1].position[1]
        call(TorqueEnable, "torque_enable", cmd_type="group", name="arm", enable=False)
        assert spin_until(ex, lambda: states[-1].position[1] < shoulder - 0.2, timeout=5), "the arm did not sag"
        call(TorqueEnable, "torque_enable", cmd_type="group", name="arm", enable=True)
        start = list(robot.config.poses.start)
        assert spin_until(ex, lambda: group.publish(JointGroupCommand(name="arm", cmd=start)) or
                          np.allclose(states[-1].position[:6], start, atol=0.03), timeout=15)
    finally:
        node.destroy_node()
    assert sim_process.poll() is None, "sim node died"


def _sim(*params):
    args = [sys.executable, "-m", "cosmos_policy_ros.nodes.sim_node", "--ros-args", "-p", "width:=64",
            "-p", "height:=48", "-p", "cameras:=cam_high"]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


@pytest.mark.parametrize("mode", ["fast", "lockstep"])
def test_sim_time_modes_publish_clock(mode, ros_context):
    """fast: /clock runs ahead of wall time; lockstep: the sim advances with complete command sets."""
    import rclpy
    from helpers import spin_until
    from interbotix_xs_msgs.msg import JointGroupCommand
    from rclpy.executors import SingleThreadedExecutor
    from rosgraph_msgs.msg import Clock

    proc = _sim(f"time_mode:={mode}", "camera_rate_hz:=5.0")
    node = rclpy.create_node(f"clock_listener_{mode}", context=ros_context)
    clocks = []
    node.create_subscription(Clock, "/clock", lambda m: clocks.append(m.clock.sec + m.clock.nanosec * 1e-9), 10)
    pubs = {s: node.create_publisher(JointGroupCommand, f"/follower_{s}/commands/joint_group", 10)
            for s in ("left", "right")}
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    try:
        assert spin_until(ex, lambda: len(clocks) >= 3, timeout=60), "no /clock"
        t_wall, t_sim = time.monotonic(), clocks[-1]
        if mode == "fast":
            spin_until(ex, lambda: False, timeout=2.0)
            assert clocks[-1] - t_sim > 1.5 * (time.monotonic() - t_wall), "fast mode is not faster than real time"
        else:
            # without commands the sim only steps on its timeout (0.2 s of wall time per 20 ms step)
            spin_until(ex, lambda: False, timeout=2.0)
            idle_rate = (clocks[-1] - t_sim) / (time.monotonic() - t_wall)
            assert idle_rate < 0.2, f"lockstep sim ran at {idle_rate:.2f}x real time without commands"
            t_wall, t_sim = time.monotonic(), clocks[-1]
            for _ in range(40):
                for p in pubs.values():
                    p.publish(JointGroupCommand(name="arm", cmd=[0.0, -0.96, 1.16, 0.0, -0.3, 0.0]))
                spin_until(ex, lambda: False, timeout=0.03)
            driven = (clocks[-1] - t_sim) / (time.monotonic() - t_wall)
            assert driven > 2 * idle_rate, f"commands did not drive the lockstep sim ({driven:.2f} vs {idle_rate:.2f})"
    finally:
        node.destroy_node()
        proc.send_signal(2)
        out = proc.communicate(timeout=20)[0]
    assert f"{mode} time" in out


def test_joint_states_keep_their_rate_under_command_flood_and_heavy_rendering(ros_context):
    """Issue 18: joint states must not wait for rendering, nor for command traffic.

    Four 640x480 cameras rendered at every 50 Hz step cost far more than 20 ms on a CPU, and both
    arms get 50 Hz arm and gripper commands; the executor holds when a follower's joint states are
    0.5 s old, so the largest gap must stay well under that and the rate near the sim's 50 Hz.
    """
    import rclpy
    from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState

    proc = subprocess.Popen(
        [sys.executable, "-m", "cosmos_policy_ros.nodes.sim_node", "--ros-args", "-p", "camera_rate_hz:=50.0",
         "-r", "__node:=test_sim_flood"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    node = rclpy.create_node("sim_flood_client", context=ros_context)
    arrivals = {"left": [], "right": []}
    images = []
    for side in arrivals:
        node.create_subscription(JointState, f"/follower_{side}/joint_states",
                                 lambda m, s=side: arrivals[s].append(time.monotonic()),
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(Image, "/cam_high/camera/color/image_rect_raw", images.append, 2)
    group = {s: node.create_publisher(JointGroupCommand, f"/follower_{s}/commands/joint_group", 10) for s in arrivals}
    single = {s: node.create_publisher(JointSingleCommand, f"/follower_{s}/commands/joint_single", 10)
              for s in arrivals}
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    seconds = 6.0
    try:
        from helpers import spin_until

        assert spin_until(ex, lambda: images and all(len(v) >= 10 for v in arrivals.values()), timeout=90), \
            "the sim node did not start publishing"
        for v in arrivals.values():
            v.clear()
        t0 = next_t = time.monotonic()
        while time.monotonic() < t0 + seconds:
            for s in arrivals:  # what the executor sends every 20 ms
                group[s].publish(JointGroupCommand(name="arm", cmd=[0.0, -0.96, 1.16, 0.0, -0.3, 0.0]))
                single[s].publish(JointSingleCommand(name="gripper", cmd=0.8))
            next_t += 0.02
            while time.monotonic() < next_t:
                ex.spin_once(timeout_sec=max(0.0, next_t - time.monotonic()))
        window = time.monotonic() - t0
    finally:
        node.destroy_node()
        proc.send_signal(2)
        out = proc.communicate(timeout=30)[0]
    for side, times in arrivals.items():
        t = np.array([t0, *times, t0 + window])
        gap, rate = np.diff(t).max(), len(times) / window
        # the old node paused up to 1.01 s here; 0.45 s leaves room for a loaded CI machine, under the watchdog
        assert gap < 0.45, f"{side} joint states paused {gap:.2f} s (executor watchdog 0.5 s)\n{out}"
        assert rate > 30.0, f"{side} joint states at {rate:.1f} Hz, the sim steps at 50 Hz\n{out}"
