"""The executor's interbotix backend against the emulated xs_sdk over real DDS (loopback).

The emulated driver (nodes/xs_sdk_emulator_node.py) starts as Interbotix's follower bring-up leaves
the real one: gripper in linear_position, where our radian commands mean metres. The backend must
configure it before streaming, refuse to run without a driver, and clear a gripper overload fault
with a reboot before it starts.

COSMOS_TEST_CONFIGURE_DRIVER=false runs the first test with the backend's driver set-up switched
off (interbotix.configure_driver: false): it must then FAIL (the grippers close and stay closed).
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")

from builtin_interfaces.msg import Duration  # noqa: E402
from helpers import spin_until  # noqa: E402
from interbotix_xs_msgs.msg import JointSingleCommand  # noqa: E402
from interbotix_xs_msgs.srv import OperatingModes, RegisterValues, RobotInfo, TorqueEnable  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectoryPoint  # noqa: E402

from cosmos_policy_ros import topics  # noqa: E402
from cosmos_policy_ros.config import config_path, read_yaml  # noqa: E402
from cosmos_policy_ros.msg import ActionChunk  # noqa: E402
from cosmos_policy_ros.robot.aloha import AlohaRobot  # noqa: E402
from cosmos_policy_ros.robot.xs_driver_emulation import HW_OVERLOAD, GripperGeometry  # noqa: E402
from cosmos_policy_ros.ros_env import local_ros_env  # noqa: E402

ROBOT = AlohaRobot.from_yaml()
GEOMETRY = GripperGeometry()  # the emulated driver's
CONFIGURE = os.environ.get("COSMOS_TEST_CONFIGURE_DRIVER", "true") != "false"
FINGER_TOLERANCE_M = 1e-3  # measured left finger vs the finger position of the commanded gripper angle


def _start(module: str, *params: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", module, "--ros-args"]
    for p in params:
        argv += ["-p", p]
    return subprocess.Popen(argv, env=local_ros_env(int(os.environ["ROS_DOMAIN_ID"])), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=20)[0] or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0] or ""


def executor_config(tmp_path, **interbotix) -> str:
    """executor.yaml with an interbotix section of its own (the rest as shipped)."""
    data = read_yaml(config_path("executor.yaml"))
    data["interbotix"] = {**data["interbotix"], **interbotix}
    data["watchdog"]["chunk_timeout_s"] = 3.0
    path = tmp_path / "executor.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def make_chunk(node, seq: int, gripper: float, n: int = 50, period: float = 0.04) -> ActionChunk:
    """A policy chunk that holds the start pose with both grippers at ``gripper`` (0 closed .. 1 open)."""
    msg = ActionChunk()
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.trajectory.joint_names = ROBOT.joint_names
    q = ROBOT.pose14("start", gripper=gripper)
    for i in range(n):
        t = i * period
        p = JointTrajectoryPoint(positions=[float(x) for x in q])
        p.time_from_start = Duration(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)))
        msg.trajectory.points.append(p)
    msg.sequence, msg.source, msg.value = seq, "test", float("nan")
    return msg


class Bench:
    """The test's side of the graph: joint states and gripper commands seen, a policy, driver service clients."""

    def __init__(self, ctx):
        self.node = rclpy.create_node("bringup_test", context=ctx)
        self.ex = SingleThreadedExecutor(context=ctx)
        self.ex.add_node(self.node)
        self.states: dict[str, list] = {s: [] for s in ROBOT.config.arms}
        self.commands: dict[str, list] = {s: [] for s in ROBOT.config.arms}
        for side in ROBOT.config.arms:
            self.node.create_subscription(JointState, ROBOT.follower_topic(side, "joint_states"),
                                          self.states[side].append, 10)
            self.node.create_subscription(JointSingleCommand, ROBOT.follower_topic(side, "joint_single"),
                                          self.commands[side].append, 100)
        self.single = self.node.create_publisher(JointSingleCommand, ROBOT.follower_topic("left", "joint_single"), 10)
        self.gripper = 0.8  # what the "policy" asks for
        self.seq = 0
        self.chunk_pub = self.node.create_publisher(ActionChunk, topics.ACTION_CHUNK, 10)
        self.node.create_subscription(Header, topics.CHUNK_REQUEST, self._on_request, 10)

    def _on_request(self, _):
        self.seq += 1
        self.chunk_pub.publish(make_chunk(self.node, self.seq, self.gripper))

    def spin(self, predicate, timeout: float) -> bool:
        return spin_until(self.ex, predicate, timeout=timeout)

    def call(self, srv_type, service: str, timeout: float = 10.0, **fields):
        """Asked again every 2 s: right after discovery the server may not know our response reader yet and
        Fast DDS drops the answer ("failed to send response (timeout)"); the calls used here are idempotent."""
        client = self.node.create_client(srv_type, service)
        assert client.wait_for_service(timeout_sec=timeout), f"{service} not available"
        end = time.monotonic() + timeout
        while True:
            fut = client.call_async(srv_type.Request(**fields))
            if self.spin(fut.done, min(2.0, max(0.0, end - time.monotonic()))):
                break
            client.remove_pending_request(fut)
            assert time.monotonic() < end, f"{service} did not answer"
        self.node.destroy_client(client)
        return fut.result()

    def executor_service(self, name: str, timeout: float = 15.0):
        """Call start/home/...; retried while the executor has no joint states yet (it has just come up)."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.call(Trigger, f"{topics.EXECUTOR_SERVICES}/{name}", max(1.0, deadline - time.monotonic()))
            if res.success or "no joint state received yet" not in res.message or time.monotonic() > deadline:
                return res
            self.spin(lambda: False, 0.2)

    def finger_error(self, side: str) -> float:
        """|measured left finger - finger of the last commanded gripper angle| (m)."""
        commanded = GEOMETRY.finger_position(self.commands[side][-1].cmd)
        return abs(self.states[side][-1].position[7] - commanded)

    def close(self):
        self.node.destroy_node()


@pytest.fixture
def bench(ros_context):
    b = Bench(ros_context)
    yield b
    b.close()


def test_first_start_makes_the_grippers_follow_the_policy(bench, tmp_path):
    emulator = _start("cosmos_policy_ros.nodes.xs_sdk_emulator_node", "pose:=start")
    executor = None
    try:
        modes = bench.call(RobotInfo, "/follower_left/get_robot_info", 20, cmd_type="single", name="gripper").mode
        assert modes == "linear_position"  # as Interbotix's follower bring-up leaves the driver
        executor = _start("cosmos_policy_ros.nodes.executor_node", "backend:=interbotix",
                          f"config:={executor_config(tmp_path, configure_driver=CONFIGURE)}")
        res = bench.executor_service("start", timeout=40)
        assert res.success, res.message
        for gripper in (0.8, 0.2):  # open-ish, then closed-ish: the measured fingers follow both ways
            bench.gripper = gripper
            t0 = time.monotonic()
            want = float(ROBOT.normalized_to_follower_joint(gripper))
            # wait until the policy's gripper is commanded and the fingers have followed (or 15 s: a loaded CI
            # machine delays joint states, and a stale-state hold commands the measured position meanwhile)
            bench.spin(lambda: time.monotonic() > t0 + 1.5 and all(
                bench.commands[s] and bench.states[s] and abs(bench.commands[s][-1].cmd - want) <= 1e-4
                and bench.finger_error(s) < FINGER_TOLERANCE_M for s in bench.states), 15)
            assert all(bench.commands[s] for s in bench.states)
            for side in ROBOT.config.arms:
                cmd = bench.commands[side][-1].cmd
                assert cmd == pytest.approx(want, abs=1e-4)
                err = bench.finger_error(side)
                print(f"{side}: policy gripper {gripper}, command {cmd:.4f} rad -> finger "
                      f"{GEOMETRY.finger_position(cmd):.4f} m, measured {bench.states[side][-1].position[7]:.4f} m")
                mode = bench.call(RobotInfo, f"/follower_{side}/get_robot_info", cmd_type="single", name="gripper").mode
                assert err < FINGER_TOLERANCE_M, (
                    f"{side} finger {bench.states[side][-1].position[7]:.4f} m, commanded "
                    f"{GEOMETRY.finger_position(cmd):.4f} m (gripper mode {mode})")
        info = bench.call(RobotInfo, "/follower_right/get_robot_info", cmd_type="single", name="gripper")
        assert info.mode == "current_based_position"
        limit = bench.call(RegisterValues, "/follower_right/get_motor_registers", cmd_type="single", name="gripper",
                           reg="Current_Limit").values
        assert list(limit) == [200]
    finally:
        out = _stop(executor) if executor else ""
        emu_out = _stop(emulator)
        print(out[-3000:], emu_out[-3000:])
    assert "Traceback" not in out + emu_out


def test_no_driver_is_one_line_and_nothing_streamed(bench, tmp_path):
    t0 = time.monotonic()
    executor = _start("cosmos_policy_ros.nodes.executor_node", "backend:=interbotix", "autostart:=true",
                      f"config:={executor_config(tmp_path, driver_timeout_s=2.0)}")
    bench.spin(lambda: executor.poll() is not None, 40)
    out = _stop(executor)
    bench.spin(lambda: False, 0.3)
    assert executor.returncode == 1, out
    errors = [ln for ln in out.splitlines() if ln.startswith("[cosmos_executor] error: ")]
    assert len(errors) == 1 and "no Interbotix xs_sdk driver answers" in errors[0], out
    assert "/follower_left/set_operating_modes" in errors[0] and "driver_timeout_s" in errors[0]
    assert "Traceback" not in out
    assert not bench.commands["left"] and not bench.commands["right"], "commands were streamed without a driver"
    print(f"refused after {time.monotonic() - t0:.1f} s: {errors[0]}")


def test_a_gripper_overload_is_cleared_by_the_reboot_before_start(bench, tmp_path):
    emulator = _start("cosmos_policy_ros.nodes.xs_sdk_emulator_node", "pose:=start", "gripper_object_m:=0.05")
    executor = None
    try:
        executor = _start("cosmos_policy_ros.nodes.executor_node", "backend:=interbotix",
                          f"config:={executor_config(tmp_path)}")
        assert bench.spin(lambda: all(len(v) > 5 for v in bench.states.values()), 20)
        bench.call(Trigger, f"{topics.EXECUTOR_SERVICES}/stop", 40)  # the executor is up (IDLE) and configured
        # a previous session (Interbotix's record_episodes ends so) left the left gripper in position mode, and it
        # closes on an object: no current limit -> overload
        bench.call(OperatingModes, "/follower_left/set_operating_modes", cmd_type="single", name="gripper",
                   mode="position", profile_type="velocity", profile_velocity=0, profile_acceleration=0)

        def error_status():
            return list(bench.call(RegisterValues, "/follower_left/get_motor_registers", cmd_type="single",
                                   name="gripper", reg="Hardware_Error_Status").values)

        g = ROBOT.config.gripper
        for cmd in (g.follower_joint_open,) * 25 + (g.follower_joint_close,) * 150:
            bench.single.publish(JointSingleCommand(name="gripper", cmd=cmd))
            bench.spin(lambda: False, 0.02)
        assert error_status() == [HW_OVERLOAD]
        finger = bench.states["left"][-1].position[7]
        assert finger == pytest.approx(0.05, abs=1e-3)  # on the object
        for _ in range(25):  # a faulted gripper ignores commands
            bench.single.publish(JointSingleCommand(name="gripper", cmd=ROBOT.config.gripper.follower_joint_open))
            bench.spin(lambda: False, 0.02)
        assert bench.states["left"][-1].position[7] == pytest.approx(finger, abs=1e-4)
        bench.commands["left"].clear()
        res = bench.executor_service("start", timeout=40)
        assert res.success, res.message
        assert error_status() == [0]
        t0 = time.monotonic()
        assert bench.spin(lambda: bench.commands["left"] and time.monotonic() > t0 + 1.5, 10)
        assert bench.finger_error("left") < FINGER_TOLERANCE_M, "the gripper does not follow after the reboot"
    finally:
        out = _stop(executor) if executor else ""
        emu_out = _stop(emulator)
        print(out[-3000:], emu_out[-3000:])
    assert "gripper reported Hardware_Error_Status 0x20" in out
    assert "Traceback" not in out + emu_out


def test_home_reboots_and_a_torque_off_arm_is_refused_with_one_line(bench, tmp_path):
    """Sleep with torque off leaves the arm limp; home must refuse (it would not follow) instead of streaming."""
    emulator = _start("cosmos_policy_ros.nodes.xs_sdk_emulator_node", "pose:=start")
    executor = None
    try:
        executor = _start("cosmos_policy_ros.nodes.executor_node", "backend:=interbotix",
                          f"config:={executor_config(tmp_path)}")
        assert bench.spin(lambda: all(len(v) > 5 for v in bench.states.values()), 20)
        res = bench.executor_service("home", timeout=40)
        assert res.success, res.message
        bench.call(TorqueEnable, "/follower_right/torque_enable", cmd_type="group", name="arm", enable=False)
        assert bench.spin(lambda: not math.isclose(bench.states["right"][-1].position[1],
                                                   ROBOT.config.poses.start[1], abs_tol=0.05), 5), "no sag"
        bench.call(Trigger, f"{topics.EXECUTOR_SERVICES}/stop")
        res = bench.executor_service("home")
        assert not res.success and "follower_right arm torque is off" in res.message, res.message
        assert np.isfinite(bench.states["right"][-1].position[1])
    finally:
        out = _stop(executor) if executor else ""
        emu_out = _stop(emulator)
        print(out[-3000:], emu_out[-3000:])
    assert emu_out.count("[follower_left] The 'gripper' joint was rebooted.") == 3  # open, home, refused home
    assert "Traceback" not in out + emu_out
