"""Direct Dynamixel backend (no xs_sdk): dynamixel-sdk, Protocol 2.0, one serial port per follower arm.

Per tick and arm: one GroupSyncRead of Present_Position (132, 4 bytes) for the 7 joint motors and
the 2 shadows, one GroupSyncWrite of Goal_Position (116, 4 bytes) for the 7 joint motors — the
shadows (shoulder 3, elbow 5) follow their primary through Secondary_ID, which is how LeRobot's
ALOHA preset avoids the paired motors fighting each other. Units: 0 rad = 2048 ticks,
rad = (ticks − 2048)·2π/4096 (Interbotix/openpi convention); the gripper motor angle maps to the
normalised 0..1 gripper with the follower joint constants of the robot YAML.

Safety rules of the bring-up (``open``):
  * never switch torque off: EEPROM settings (Drive_Mode, operating mode, Secondary_ID, Current_Limit)
    are only written to motors whose torque is already off; a motor with torque on and a wrong setting
    is an error naming the ID — fix it at the sleep pose, not mid-air. Drive_Mode is the motor's
    direction: 1 (reversed) on the shoulder, elbow and wrist_angle of an ALOHA follower, 0 elsewhere
    (Interbotix aloha_vx300s.yaml); a wrong one would mirror the joint about 0 rad;
  * before torque on, Goal_Position := Present_Position, so enabling torque does not move the arm.
``close`` leaves torque as it is.
"""
from __future__ import annotations

import math

import numpy as np

from cosmos_policy_ros.errors import CosmosError
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.backends.base import Backend
from cosmos_policy_ros.robot.executor_config import DynamixelArmConfig, DynamixelConfig

ADDR_DRIVE_MODE, ADDR_OPERATING_MODE, ADDR_SECONDARY_ID, ADDR_CURRENT_LIMIT = 10, 11, 12, 38
ADDR_TORQUE_ENABLE, ADDR_GOAL_POSITION, ADDR_PRESENT_POSITION = 64, 116, 132
TICKS_PER_REV, CENTER_TICKS = 4096, 2048


class DynamixelError(CosmosError, RuntimeError):
    """Bus or configuration problem; the message is one line naming the port and motor ID."""


def rad_to_ticks(rad) -> np.ndarray:
    return np.rint(np.asarray(rad, dtype=float) * TICKS_PER_REV / (2 * math.pi) + CENTER_TICKS).astype(np.int64)


def ticks_to_rad(ticks) -> np.ndarray:
    return (np.asarray(ticks, dtype=float) - CENTER_TICKS) * (2 * math.pi) / TICKS_PER_REV


def _signed32(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


class _Arm:
    """One follower arm on one port."""

    def __init__(self, side: str, cfg: DynamixelArmConfig, joint_order: list[str], baudrate: int, sdk):
        self.side, self.cfg, self.sdk = side, cfg, sdk
        missing = [j for j in joint_order if j not in cfg.ids]
        if missing:
            raise DynamixelError(f"dynamixel.arms.{side}.ids: missing {missing}")
        self.joint_ids = [cfg.ids[j] for j in joint_order]  # 6 arm joints + gripper, vector order
        self.shadow_of = {sid: cfg.ids[j] for j, sid in cfg.shadows.items()}
        self.all_ids = self.joint_ids + list(self.shadow_of)
        self.port = sdk.PortHandler(cfg.port)
        self.ph = sdk.PacketHandler(2.0)
        self.baudrate = baudrate
        self.reader = self.writer = None
        self.last_error = ""

    def where(self, dxl_id: int | None = None) -> str:
        return f"{self.side} arm ({self.cfg.port}" + (f", ID {dxl_id})" if dxl_id is not None else ")")

    def open(self) -> None:
        try:
            ok = self.port.openPort()
        except Exception as exc:  # noqa: BLE001 - pyserial raises SerialException/OSError
            raise DynamixelError(f"{self.where()}: cannot open port: {exc}") from None
        if not ok or not self.port.setBaudRate(self.baudrate):
            raise DynamixelError(f"{self.where()}: cannot open port at {self.baudrate} baud")
        for i in self.all_ids:
            _, res, _ = self._retry(lambda i=i: self.ph.ping(self.port, i))
            if res != self.sdk.COMM_SUCCESS:
                raise DynamixelError(f"{self.where(i)}: no reply to ping ({self.ph.getTxRxResult(res)})")
        self.reader = self.sdk.GroupSyncRead(self.port, self.ph, ADDR_PRESENT_POSITION, 4)
        for i in self.all_ids:
            self.reader.addParam(i)
        self.writer = self.sdk.GroupSyncWrite(self.port, self.ph, ADDR_GOAL_POSITION, 4)

    # register helpers that turn every failure into one line
    def read_reg(self, dxl_id: int, addr: int, size: int) -> int:
        fn = {1: self.ph.read1ByteTxRx, 2: self.ph.read2ByteTxRx, 4: self.ph.read4ByteTxRx}[size]
        value, res, err = self._retry(lambda: fn(self.port, dxl_id, addr))
        if res != self.sdk.COMM_SUCCESS or err:
            raise DynamixelError(f"{self.where(dxl_id)}: read {addr}: {self._why(res, err)}")
        return value

    def write_reg(self, dxl_id: int, addr: int, size: int, value: int) -> None:
        fn = {1: self.ph.write1ByteTxRx, 2: self.ph.write2ByteTxRx, 4: self.ph.write4ByteTxRx}[size]
        res, err = self._retry(lambda: fn(self.port, dxl_id, addr, value))
        if res != self.sdk.COMM_SUCCESS or err:
            raise DynamixelError(f"{self.where(dxl_id)}: write {addr}={value}: {self._why(res, err)}")

    def _retry(self, call, attempts: int = 3):
        """Bring-up transactions retry on bus errors (lost/garbled status packets happen on real
        ALOHA buses, Interbotix/aloha#14); motor error bytes are returned at once."""
        for _ in range(attempts):
            out = call()
            res = out[1] if len(out) == 3 else out[0]
            if res == self.sdk.COMM_SUCCESS:
                return out
        return out

    def _why(self, res: int, err: int) -> str:
        return self.ph.getTxRxResult(res) if res != self.sdk.COMM_SUCCESS else self.ph.getRxPacketError(err)

    def ensure_eeprom(self, dxl_id: int, addr: int, size: int, value: int, what: str) -> None:
        """Write an EEPROM value only if it differs and torque is off; never switch torque off."""
        if self.read_reg(dxl_id, addr, size) == value:
            return
        if self.read_reg(dxl_id, ADDR_TORQUE_ENABLE, 1):
            raise DynamixelError(f"{self.where(dxl_id)}: {what} must be {value} but torque is on; "
                                 "put the arm at its sleep pose, switch torque off and restart")
        self.write_reg(dxl_id, addr, size, value)

    def read_ticks(self) -> dict[int, int] | None:
        res = self.reader.txRxPacket()
        if res != self.sdk.COMM_SUCCESS:
            self.last_error = f"{self.where()}: sync read failed: {self.ph.getTxRxResult(res)}"
            return None
        out = {}
        for i in self.all_ids:
            if not self.reader.isAvailable(i, ADDR_PRESENT_POSITION, 4):
                self.last_error = f"{self.where(i)}: sync read has no data"
                return None
            out[i] = _signed32(self.reader.getData(i, ADDR_PRESENT_POSITION, 4))
        return out

    def write_ticks(self, ticks) -> bool:
        self.writer.clearParam()
        for i, t in zip(self.joint_ids, ticks):
            self.writer.addParam(i, list(int(t).to_bytes(4, "little", signed=True)))
        res = self.writer.txPacket()
        if res != self.sdk.COMM_SUCCESS:
            self.last_error = f"{self.where()}: sync write failed: {self.ph.getTxRxResult(res)}"
            return False
        return True


class DynamixelBackend(Backend):
    name = "dynamixel"

    def __init__(self, robot: AlohaRobot, config: DynamixelConfig, sdk=None):
        if sdk is None:
            import dynamixel_sdk as sdk  # noqa: PLC0415 - optional dependency, only for this backend
        self.robot, self.config = robot, config
        order = list(robot.config.arm_joints) + [robot.config.gripper_joint]
        self.arms = []
        for side in robot.config.arms:
            if side not in config.arms:
                raise DynamixelError(f"dynamixel.arms.{side}: required for the {side} arm")
            self.arms.append(_Arm(side, config.arms[side], order, config.baudrate, sdk))
        self.shadow_error = 0.0  # rad, worst |shadow - primary| seen by the last read
        self.read_failures = 0

    def open(self) -> None:
        c = self.config
        order = list(self.robot.config.arm_joints) + [self.robot.config.gripper_joint]
        unknown = sorted(set(c.reversed_joints) - set(order))
        if unknown:
            raise DynamixelError(f"dynamixel.reversed_joints: {unknown} are not joints of this robot ({order})")
        for arm in self.arms:
            arm.open()
            gripper_id = arm.joint_ids[-1]
            for joint, i in zip(order, arm.joint_ids):  # first: the direction decides what every reading means
                arm.ensure_eeprom(i, ADDR_DRIVE_MODE, 1, int(joint in c.reversed_joints), "Drive_Mode")
            for sid in arm.shadow_of:
                arm.ensure_eeprom(sid, ADDR_DRIVE_MODE, 1, 0, "Drive_Mode")
            for i in arm.all_ids:
                primary = arm.shadow_of.get(i, i)
                mode = c.gripper_operating_mode if primary == gripper_id else c.arm_operating_mode
                arm.ensure_eeprom(i, ADDR_OPERATING_MODE, 1, mode, "Operating_Mode")
            if c.set_shadow_secondary_id:
                for sid, primary in arm.shadow_of.items():
                    arm.ensure_eeprom(sid, ADDR_SECONDARY_ID, 1, primary, "Secondary_ID")
            if c.gripper_operating_mode == 5:
                arm.ensure_eeprom(gripper_id, ADDR_CURRENT_LIMIT, 2, c.gripper_current_limit, "Current_Limit")
            if c.enable_torque:
                ticks = arm.read_ticks()
                if ticks is None:
                    raise DynamixelError(arm.last_error)
                arm.write_ticks([ticks[i] for i in arm.joint_ids])  # goal := present: no jump at torque on
                for i in arm.all_ids:
                    arm.write_reg(i, ADDR_TORQUE_ENABLE, 1, 1)

    def read(self) -> np.ndarray | None:
        q = np.empty(14)
        worst = 0.0
        for k, arm in enumerate(self.arms):
            ticks = arm.read_ticks()
            if ticks is None:
                self.read_failures += 1
                return None
            rad = ticks_to_rad([ticks[i] for i in arm.joint_ids])
            q[7 * k: 7 * k + 6] = rad[:6]
            q[7 * k + 6] = self.robot.follower_joint_to_normalized(rad[6])
            for sid, primary in arm.shadow_of.items():
                worst = max(worst, abs(float(ticks_to_rad(ticks[sid] - ticks[primary] + CENTER_TICKS))))
        self.shadow_error = worst
        return q

    def write(self, command: np.ndarray) -> None:
        q = np.asarray(command, dtype=float)
        for k, arm in enumerate(self.arms):
            rad = np.append(q[7 * k: 7 * k + 6], self.robot.normalized_to_follower_joint(q[7 * k + 6]))
            arm.write_ticks(rad_to_ticks(rad))

    def set_torque(self, enabled: bool) -> None:
        for arm in self.arms:
            for i in arm.all_ids:
                arm.write_reg(i, ADDR_TORQUE_ENABLE, 1, int(enabled))

    def close(self) -> None:
        for arm in self.arms:
            if arm.port.is_open:
                arm.port.closePort()

    @property
    def last_error(self) -> str:
        return next((a.last_error for a in self.arms if a.last_error), "")
