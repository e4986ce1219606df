"""Dynamixel backend through the real dynamixel-sdk against the Protocol 2.0 pty emulator."""
from __future__ import annotations

import time

import numpy as np
import pytest

sdk = pytest.importorskip("dynamixel_sdk")

from cosmos_policy_ros.robot.aloha import AlohaRobot  # noqa: E402
from cosmos_policy_ros.robot.backends.base import apply_tick  # noqa: E402
from cosmos_policy_ros.robot.backends.dynamixel import (  # noqa: E402
    DynamixelBackend,
    DynamixelError,
    rad_to_ticks,
    ticks_to_rad,
)
from cosmos_policy_ros.robot.dxl_emulator import (  # noqa: E402
    ERR_ACCESS,
    DxlBusEmulator,
    build_packet,
    crc16,
    stuff,
    unstuff,
)
from cosmos_policy_ros.robot.executor_config import DynamixelArmConfig, DynamixelConfig, ExecutorConfig  # noqa: E402
from cosmos_policy_ros.robot.executor_core import MOVING, ExecutorCore  # noqa: E402

ROBOT = AlohaRobot.from_yaml()
SLEEP_TICKS = {1: 2048, 2: int(rad_to_ticks(-1.80)), 3: int(rad_to_ticks(-1.80)), 4: int(rad_to_ticks(1.55)),
               5: int(rad_to_ticks(1.55)), 6: 2048, 7: int(rad_to_ticks(-1.7)), 8: 2048,
               9: int(rad_to_ticks(ROBOT.config.gripper.follower_joint_close))}


@pytest.fixture
def buses():
    left, right = DxlBusEmulator(positions=SLEEP_TICKS), DxlBusEmulator(positions=SLEEP_TICKS)
    left.start()
    right.start()
    yield left, right
    left.close()
    right.close()


def backend_for(left, right, **kw) -> DynamixelBackend:
    cfg = DynamixelConfig(arms={"left": DynamixelArmConfig(left.port), "right": DynamixelArmConfig(right.port)}, **kw)
    return DynamixelBackend(ROBOT, cfg)


def test_crc_and_stuffing_match_the_sdk():
    ph = sdk.PacketHandler(2.0)
    data = bytes(range(256)) * 2
    assert crc16(data) == ph.updateCRC(0, list(data), len(data))
    payload = b"\x03\x70\x00\xff\xff\xfd\x00"
    assert stuff(payload) == b"\x03\x70\x00\xff\xff\xfd\xfd\x00"
    assert unstuff(stuff(payload)) == payload


def test_ticks_rad_convention():
    assert rad_to_ticks(0.0) == 2048
    assert ticks_to_rad(841) == pytest.approx(-1.851, abs=1e-3)  # aloha_vx300s shoulder min
    assert ticks_to_rad(rad_to_ticks(1.2345)) == pytest.approx(1.2345, abs=2e-3)


def test_backend_moves_emulated_motors_to_goals(buses):
    left, right = buses
    be = backend_for(left, right)
    be.open()
    try:
        for bus in buses:
            for i, m in bus.motors.items():
                assert m.get("torque_enable") == 1
                assert m.torque_history and 0 not in m.torque_history  # switched on, never off
            assert bus.motor(9).get("operating_mode") == 5 and bus.motor(2).get("operating_mode") == 3
            assert bus.motor(3).get("secondary_id") == 2 and bus.motor(5).get("secondary_id") == 4
            assert bus.motor(9).get("current_limit") == 200  # ALOHA's (aloha_vx300s.yaml), not the factory 1193
            assert [bus.motor(i).get("drive_mode") for i in range(1, 10)] == [0, 1, 0, 1, 0, 0, 1, 0, 0]
        q0 = be.read()
        assert q0 is not None and q0[1] == pytest.approx(-1.80, abs=2e-3)  # torque on did not move the arm
        goal = ROBOT.pose14("start", gripper=1.0)
        goal[0], goal[7] = 0.5, -0.5  # the waists go different ways: arms are not mixed up
        t_end = time.monotonic() + 5.0
        q = q0
        while time.monotonic() < t_end:
            be.write(goal)
            q = be.read()
            if q is not None and np.max(np.abs(q - goal)) < 3e-3:
                break
            time.sleep(0.02)
        assert np.max(np.abs(q - goal)) < 3e-3, q - goal
        expected = rad_to_ticks(goal[:6])
        for bus in buses:
            assert abs(bus.motor(4).get("present_position") - expected[2]) <= 2
            # shadows followed their primaries through Secondary_ID
            assert abs(bus.motor(3).get("present_position") - bus.motor(2).get("present_position")) <= 2
            assert abs(bus.motor(5).get("present_position") - bus.motor(4).get("present_position")) <= 2
        gripper_rad = ROBOT.normalized_to_follower_joint(1.0)
        assert abs(left.motor(9).get("goal_position") - rad_to_ticks(gripper_rad)) <= 1
        assert left.motor(1).get("goal_position") == rad_to_ticks(0.5)
        assert right.motor(1).get("goal_position") == rad_to_ticks(-0.5)
        assert be.shadow_error < 0.01
    finally:
        be.close()
    assert all(m.get("torque_enable") == 1 for bus in buses for m in bus.motors.values())  # close keeps torque


def test_executor_core_drives_emulated_arms_home(buses):
    """Core + dynamixel backend at 50 Hz: the min-jerk home move reaches the start pose on the motors."""
    be = backend_for(*buses)
    be.open()
    cfg = ExecutorConfig()
    cfg.motion.speed, cfg.motion.min_duration_s = 1.5, 0.5  # keep the test short
    core = ExecutorCore(ROBOT, cfg)
    try:
        t0 = time.monotonic()
        core.on_measured(be.read(), t0)
        ok, msg = core.home(t0)
        assert ok, msg
        deadline = t0 + core.move.duration + 3.0
        while core.state == MOVING and time.monotonic() < deadline:
            now = time.monotonic()
            q = be.read()
            if q is not None:
                core.on_measured(q, now)
            apply_tick(core.tick(now), be)
            time.sleep(max(0.0, 0.02 - (time.monotonic() - now)))
        time.sleep(0.3)
        q = be.read()
        goal = np.clip(ROBOT.pose14("start", core.config.motion.home_gripper), ROBOT.lower, ROBOT.upper)
        assert np.max(np.abs(q - goal)) < 5e-3
    finally:
        be.close()


def test_wrong_mode_with_torque_on_is_an_error_and_torque_stays_on(buses):
    left, right = buses
    m = left.motor(4)
    m.set("operating_mode", 4)  # extended position, as LeRobot's preset would leave it
    m.set("torque_enable", 1)
    be = backend_for(left, right)
    with pytest.raises(DynamixelError, match=r"left arm .*ID 4\): Operating_Mode must be 3 but torque is on"):
        be.open()
    be.close()
    assert m.get("torque_enable") == 1 and m.torque_history == []


def test_a_factory_drive_mode_is_written_while_torque_is_off_and_the_joint_reads_unmirrored(buses):
    """Out of the box every motor runs Drive_Mode 0: an ALOHA follower's shoulder, elbow and wrist_angle
    would turn the wrong way (readings mirrored about 0 rad). With torque off the backend writes 1."""
    left, right = buses
    for bus in buses:
        for i in (2, 4, 7):
            m = bus.motor(i)
            m.set("drive_mode", 0)
            m.pos = 4096.0 - m.pos  # what the same physical angle reads in the other direction
            m.set("present_position", int(m.pos))
            m.set("goal_position", int(m.pos))
    be = backend_for(left, right)
    be.open()
    try:
        assert [left.motor(i).get("drive_mode") for i in (2, 3, 4, 5, 7)] == [1, 0, 1, 0, 1]
        q = be.read()
        assert q[1] == pytest.approx(-1.80, abs=2e-3) and q[4] == pytest.approx(-1.7, abs=2e-3)
    finally:
        be.close()


def test_wrong_drive_mode_with_torque_on_is_an_error_and_torque_stays_on(buses):
    left, right = buses
    m = left.motor(7)
    m.set("drive_mode", 0)
    m.set("torque_enable", 1)
    be = backend_for(left, right)
    with pytest.raises(DynamixelError, match=r"left arm .*ID 7\): Drive_Mode must be 1 but torque is on"):
        be.open()
    be.close()
    assert m.get("torque_enable") == 1 and m.get("drive_mode") == 0
    with pytest.raises(DynamixelError, match=r"reversed_joints: \['elbo'\] are not joints"):
        backend_for(left, right, reversed_joints=["elbo"]).open()


def test_missing_motor_and_missing_port_are_one_line_errors(buses):
    left, right = buses
    del right.motors[7]
    be = backend_for(left, right)
    with pytest.raises(DynamixelError, match=r"right arm .*ID 7\): no reply to ping"):
        be.open()
    be.close()
    be = DynamixelBackend(ROBOT, DynamixelConfig(arms={"left": DynamixelArmConfig("/dev/does-not-exist"),
                                                       "right": DynamixelArmConfig(right.port)}))
    with pytest.raises(DynamixelError, match="does-not-exist.*cannot open port"):
        be.open()


def test_emulator_protocol_details(buses):
    left, _ = buses
    port, ph = sdk.PortHandler(left.port), sdk.PacketHandler(2.0)
    assert port.openPort()
    try:
        model, res, _ = ph.ping(port, 8)
        assert res == sdk.COMM_SUCCESS and model == 1020  # XM430-W350
        model, res, _ = ph.ping(port, 1)
        assert model == 1120  # XM540-W270
        # byte stuffing both ways: a value containing FF FF FD round-trips
        assert ph.write4ByteTxRx(port, 1, 112, 0x00FDFFFF) == (sdk.COMM_SUCCESS, 0)
        assert ph.read4ByteTxRx(port, 1, 112)[0] == 0x00FDFFFF
        # EEPROM is locked while torque is on; position mode enforces the position limits
        ph.write1ByteTxRx(port, 2, 64, 1)
        assert ph.write1ByteTxRx(port, 2, 11, 4)[1] == ERR_ACCESS
        _, err = ph.write4ByteTxRx(port, 6, 116, 5000)
        assert err != 0
        # a corrupted packet gets no answer
        crc_errors = left.stats.crc_errors
        bad = bytearray(build_packet(1, 0x01))
        bad[-1] ^= 0xFF
        port.writePort(bytes(bad))
        time.sleep(0.05)
        assert left.stats.crc_errors == crc_errors + 1 and port.getBytesAvailable() == 0
    finally:
        port.closePort()
