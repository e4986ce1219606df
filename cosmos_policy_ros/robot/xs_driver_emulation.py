"""The Interbotix xs_sdk driver of one follower arm, as its commands and services behave, without ROS.

Why: the follower grippers come up in ``linear_position`` (Interbotix bring-up config), where the
driver reads a gripper command as a finger distance in metres. A client that sends motor radians
without first switching the gripper to ``current_based_position`` (as Interbotix's own client does)
drives the grippers to their closed end. A sim that takes every command as radians never shows
that, so the sim node and the standalone emulator node (nodes/xs_sdk_emulator_node.py) both obey
this module, which follows the real driver as closely as a model without motors can.

Upstream facts it rests on (reading of code):
  D  Interbotix/interbotix_xs_driver (ros2) src/xs_driver.cpp
  S  Interbotix/interbotix_ros_core (humble) interbotix_xs_sdk/src/xs_sdk_obj.cpp
  A  Interbotix/aloha config/follower_modes_{left,right}.yaml, aloha/robot_utils.py
  M  Interbotix/interbotix_ros_manipulators (humble) interbotix_xsarm_control/config/aloha_vx300s.yaml
  * Start modes (A): group ``arm`` position, single ``gripper`` linear_position, profile velocity 0/0,
    torque on. Groups: ``all`` (the 7 motors of joint_order) and ``arm`` (M).
  * set_operating_modes (D set_joint_operating_mode): per joint torque off, Operating_Mode write,
    Profile_Velocity/Acceleration for the position modes, torque ON again, whatever it was before.
    A group request also stores the mode string on the group, even an invalid one; an invalid mode
    leaves the motors as they were (error logged). A single request changes only that motor's mode.
  * Commands (D write_commands / write_joint_command): a JointGroupCommand uses the group's mode, a
    JointSingleCommand the motor's. Position modes write Goal_Position; ``linear_position`` first
    converts the command (distance between the fingers, m) to motor rad through the gripper geometry
    (convert_linear_position_to_radian: pi/2 - acos((h^2 + (d/2)^2 - a^2) / (2 h d/2))). A NaN (e.g.
    acos of a radian value read as metres) becomes the zero-radian goal (dynamixel_workbench
    convertRadian2Value: neither > 0 nor < 0). A group command of the wrong length is refused.
  * X-series position mode refuses a goal outside Min/Max_Position_Limit (motor, not driver).
  * joint_states (S robot_update_joint_states): 7 motors in joint_order, then left_finger =
    convert_angular_position_to_linear(gripper rad) and right_finger = -left_finger, finger velocity
    and effort 0, effort = present current (mA).
  * reboot_motors (D): the call returns 1 s after each reboot instruction (dynamixel_workbench
    DynamixelDriver::reboot sleeps 1 s); the motor restarts (hardware error cleared, torque off,
    RAM registers back to defaults, Operating_Mode and Current_Limit kept: EEPROM); ``enable``
    torques it on afterwards; ``smart_reboot`` (group only) reboots only motors with a
    Hardware_Error_Status.
  * get_robot_info (S): mode and profile type of the group or motor, IDs, URDF limits, sleep
    positions, joint_state indices; a gripper is described by its left finger.
  * The services answer with an empty response whether the request was valid or not (S: the bool
    the handlers return is dropped); errors only reach the driver's log.
  * Current_Limit is EEPROM: writable only while torque is off.
Emulation choices (no upstream source; stated so that no one takes them for facts):
  * motion: every motor tracks its target at its velocity limit (Velocity_Limit 131 = pi rad/s) or a
    smaller velocity-based profile; ``time`` profiles are not modelled.
  * gripper overload: the gripper motor pushes against something (target more than
    ``stall_error_rad`` from the present position while it does not move) with a drive current of
    at least ``overload_current_ma`` for ``overload_time_s`` -> Hardware_Error_Status overload (0x20),
    torque off; it ignores commands until rebooted. The drive current is the stall current in the
    position modes (not current-limited) and min(Goal_Current, Current_Limit) x 2.69 mA in
    current_based_position: the ALOHA Current_Limit (200 = 538 mA, ROS 1 ALOHA README: "to prevent
    overloading errors") stays below the threshold, the factory 1193 (3.2 A) does not.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from cosmos_policy_ros.robot.aloha import AlohaRobot

POSITION_MODES = ("position", "ext_position", "current_based_position", "linear_position")
MODES = (*POSITION_MODES, "velocity", "current", "pwm")
# Operating_Mode register value of each driver mode (linear_position is position mode on the motor)
OPERATING_MODE_VALUE = {"current": 0, "velocity": 1, "position": 3, "linear_position": 3, "ext_position": 4,
                        "current_based_position": 5, "pwm": 16}
HW_OVERLOAD = 0x20  # Hardware_Error_Status bit 5
# The services every xs_sdk serves in its robot namespace (S robot_init_services)
SERVICES = ("set_operating_modes", "torque_enable", "reboot_motors", "get_robot_info", "set_motor_registers",
            "get_motor_registers")
CURRENT_UNIT_MA = 2.69  # X-series Current_Limit / Goal_Current unit
PWM_MAX = 885
GROUP, SINGLE = "group", "single"


def service_name(namespace: str, service: str) -> str:
    """/<namespace>/<service>: where the xs_sdk of that robot namespace serves it."""
    return f"/{namespace.strip('/')}/{service}"


def dxl_position_value(rad: float) -> int:
    """dynamixel_workbench convertRadian2Value for an X-series motor (0..4095 over -3.14159..3.14159 rad)."""
    if rad > 0:
        return int(2048 + rad * (4095 - 2048) / 3.14159)
    if rad < 0:
        return int(2048 + rad * (0 - 2048) / -3.14159)
    return 2048  # also NaN: neither > 0 nor < 0


@dataclass
class GripperGeometry:
    """The driver's gripper model (motor config ``grippers.gripper``): horn radius and arm length, m.

    Default 0.022 / 0.036: the stock vx300s values, for which the driver's angle -> finger conversion of
    the Interbotix ROS 2 joint constants (1.6214 / 0.6197 rad) gives exactly the finger constants of the
    same stack (0.0579 / 0.0440 m), and of the ROS 1 ones (1.4910 / -0.6213 -> 0.0580 / 0.0184).
    (M humble says 0.0275 / 0.035, which would report 0.062 / 0.043 m for the same angles.)
    """

    horn_radius: float = 0.022
    arm_length: float = 0.036

    def finger_position(self, rad: float) -> float:
        """D convert_angular_position_to_linear: left finger position (m) for a gripper motor angle."""
        h, a = self.horn_radius, self.arm_length
        a1 = h * math.sin(rad)
        c = math.sqrt(max(h * h - a1 * a1, 0.0))
        return a1 + math.sqrt(max(a * a - c * c, 0.0))

    def motor_angle(self, linear_position: float) -> float:
        """D convert_linear_position_to_radian: motor rad for a finger distance (m); NaN outside its domain."""
        h, a, half = self.horn_radius, self.arm_length, linear_position / 2.0
        x = (h * h + half * half - a * a) / (2 * h * half) if half != 0 and h > 0 else math.nan
        return 3.14159 / 2.0 - math.acos(x) if -1.0 <= x <= 1.0 else math.nan


@dataclass
class ModeSetting:
    """One entry of an Interbotix mode config (``groups.<name>`` / ``singles.<name>``)."""

    operating_mode: str = "position"
    profile_type: str = "velocity"
    profile_velocity: int = 0
    profile_acceleration: int = 0
    torque_enable: bool = True


def follower_bringup_modes() -> tuple[dict[str, ModeSetting], dict[str, ModeSetting]]:
    """(groups, singles) of Interbotix/aloha config/follower_modes_left.yaml (right: the same)."""
    return {"arm": ModeSetting("position")}, {"gripper": ModeSetting("linear_position")}


@dataclass
class DriverEmulationConfig:
    """The driver's view of one aloha_vx300s follower (M) plus the emulation's own constants."""

    # Min/Max_Position_Limit in ticks (M); joints not named: 0..4095
    position_limits_ticks: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        "shoulder": (841, 2867), "elbow": (898, 3094), "wrist_angle": (830, 3504)})
    ids: dict[str, int] = field(default_factory=lambda: dict(
        waist=1, shoulder=2, elbow=4, forearm_roll=6, wrist_angle=7, wrist_rotate=8, gripper=9))
    geometry: GripperGeometry = field(default_factory=GripperGeometry)
    # URDF (interbotix_xsarm_descriptions vx300s): finger limits m and velocity m/s
    finger_limits: tuple[float, float] = (0.021, 0.057)
    finger_velocity_limit: float = 1.0
    # Current_Limit of the gripper at bring-up: the XM430-W350 factory value (M humble writes 200 at
    # bring-up, earlier versions of that file write nothing)
    gripper_current_limit: int = 1193
    # s: how long reboot_motors takes per motor (dynamixel_workbench sleeps 1 s after the instruction)
    reboot_time_s: float = 1.0
    # ---- emulation constants (see the module docstring)
    stall_current_ma: float = 2300.0  # XM430-W350 stall current at 12 V
    overload_current_ma: float = 1000.0
    overload_time_s: float = 1.0
    stall_error_rad: float = 0.1
    still_velocity: float = 0.05  # rad/s
    sag_speed: float = 0.5  # rad/s: how fast a torque-off arm joint drifts to its rest (standalone model)


@dataclass
class RobotInfo:
    """A get_robot_info answer (fields of interbotix_xs_msgs/srv/RobotInfo)."""

    mode: str = ""
    profile_type: str = ""
    joint_names: list[str] = field(default_factory=list)
    joint_ids: list[int] = field(default_factory=list)
    joint_lower_limits: list[float] = field(default_factory=list)
    joint_upper_limits: list[float] = field(default_factory=list)
    joint_velocity_limits: list[float] = field(default_factory=list)
    joint_sleep_positions: list[float] = field(default_factory=list)
    joint_state_indices: list[int] = field(default_factory=list)
    num_joints: int = 0
    name: list[str] = field(default_factory=list)


@dataclass
class Motor:
    """One joint motor: the driver's bookkeeping (mode strings) and the motor's registers."""

    name: str
    motor_id: int
    min_ticks: int  # Min/Max_Position_Limit (EEPROM)
    max_ticks: int
    velocity_limit: float
    mode: str = "position"  # the driver's motor_map mode (what a single command means)
    operating_mode: str = "position"  # what the motor itself runs (Operating_Mode register)
    profile_type: str = "velocity"
    profile_velocity: int = 0
    profile_acceleration: int = 0
    torque: bool = False
    hardware_error: int = 0
    current_limit: int = 1193
    goal_current: int = 1193
    goal_position: float = 0.0  # rad; RAM, written even while torque is off
    goal_velocity: float = 0.0  # rad/s
    goal_pwm: int = 0
    present: float = 0.0
    velocity: float = 0.0
    current_ma: float = 0.0
    target: float = 0.0  # what the physical model tracks
    overload_s: float = 0.0


@dataclass
class Group:
    joint_names: list[str]
    mode: str = "position"
    profile_type: str = "velocity"
    profile_velocity: int = 0
    profile_acceleration: int = 0


REGISTERS = ("Torque_Enable", "Hardware_Error_Status", "Operating_Mode", "Current_Limit", "Goal_Current",
             "Profile_Velocity", "Profile_Acceleration", "Present_Current", "Present_Position")


class XsDriverEmulation:
    """One xs_sdk instance (one follower arm). Thread-safe: every public method holds one lock.

    Services return what the real handler does (None where the real one answers an empty response);
    what the real driver logs is queued as (level, line) for ``drain_events``.
    """

    def __init__(self, robot: AlohaRobot, config: DriverEmulationConfig | None = None,
                 initial: np.ndarray | None = None):
        self.robot = robot
        self.cfg = c = config or DriverEmulationConfig()
        rc = robot.config
        self.arm_joints = list(rc.arm_joints)
        self.gripper = rc.gripper_joint
        self.joint_order = self.arm_joints + [self.gripper]
        self.finger_names = list(rc.finger_joints)
        self.sleep = list(rc.poses.sleep) + [0.0]
        self.motors: dict[str, Motor] = {}
        for name in self.joint_order:
            lo, hi = c.position_limits_ticks.get(name, (0, 4095))
            self.motors[name] = Motor(name, c.ids[name], lo, hi, rc.velocity_limit,
                                      current_limit=c.gripper_current_limit if name == self.gripper else 1193)
            self.motors[name].goal_current = self.motors[name].current_limit
        self.groups = {"all": Group(list(self.joint_order)), rc.arm_group_name: Group(list(self.arm_joints))}
        q = np.asarray(self.sleep if initial is None else initial, dtype=float)
        for m, v in zip(self.motors.values(), q):
            m.present = m.goal_position = m.target = float(v)
        self.events: deque[tuple[str, str]] = deque(maxlen=200)
        self._lock = threading.RLock()
        groups, singles = follower_bringup_modes()
        for name, s in groups.items():
            self._apply_start_mode(GROUP, name, s)
        for name, s in singles.items():
            self._apply_start_mode(SINGLE, name, s)

    def _apply_start_mode(self, cmd_type: str, name: str, s: ModeSetting) -> None:
        """D init_operating_modes: set the mode (torque ends on), then torque off if the config says so."""
        self.set_operating_modes(cmd_type, name, s.operating_mode, s.profile_type, s.profile_velocity,
                                 s.profile_acceleration)
        if not s.torque_enable:
            self.torque_enable(cmd_type, name, False)

    # ---- helpers ----------------------------------------------------------------------------------
    def _event(self, level: str, line: str) -> None:
        self.events.append((level, line))

    def drain_events(self) -> list[tuple[str, str]]:
        with self._lock:
            out = list(self.events)
            self.events.clear()
            return out

    def _names(self, cmd_type: str, name: str) -> list[str] | None:
        """S robot_srv_validate: the joints a request addresses, or None (error logged) if it is invalid."""
        if cmd_type == GROUP:
            if name in self.groups:
                return list(self.groups[name].joint_names)
            self._event("error", f"Group '{name}' does not exist. Was it added to the motor config file?")
        elif cmd_type == SINGLE:
            if name in self.motors:
                return [name]
            self._event("error", f"Joint '{name}' does not exist. Was it added to the motor config file?")
        else:
            self._event("error", f"cmd_type was '{cmd_type}'. Choices are 'group' or 'single'.")
        return None

    def _torque(self, m: Motor, on: bool) -> None:
        if on and m.hardware_error:
            self._event("error", f"'{m.name}' has Hardware_Error_Status 0x{m.hardware_error:02x}: torque stays off "
                                 "until it is rebooted (reboot_motors)")
            return
        m.torque = on
        if not on:
            m.current_ma = 0.0
            m.overload_s = 0.0

    # ---- services -----------------------------------------------------------------------------------
    def set_operating_modes(self, cmd_type: str, name: str, mode: str, profile_type: str = "velocity",
                            profile_velocity: int = 0, profile_acceleration: int = 0) -> None:
        with self._lock:
            names = self._names(cmd_type, name)
            if names is None:
                return
            for j in names:
                self._set_joint_mode(self.motors[j], mode, profile_type, profile_velocity, profile_acceleration)
            if cmd_type == GROUP:
                g = self.groups[name]
                g.mode, g.profile_type = mode, profile_type
                g.profile_velocity, g.profile_acceleration = profile_velocity, profile_acceleration
            self._event("info", f"The operating mode for the '{name}' {'group' if cmd_type == GROUP else 'joint'} "
                                f"was changed to '{mode}' with profile type '{profile_type}'.")

    def _set_joint_mode(self, m: Motor, mode: str, profile_type: str, pv: int, pa: int) -> None:
        self._torque(m, False)
        if mode not in MODES:
            self._event("error", f"Invalid command for argument 'mode' while setting the operating mode for the "
                                 f"{m.name} motor.")
        else:
            m.operating_mode = "position" if mode == "linear_position" else mode
            m.mode, m.profile_type = mode, profile_type
            if mode in ("position", "linear_position", "ext_position"):
                m.profile_velocity, m.profile_acceleration = pv, pa
            elif mode == "velocity":
                m.profile_acceleration = pa
        self._torque(m, True)

    def torque_enable(self, cmd_type: str, name: str, enable: bool) -> None:
        with self._lock:
            names = self._names(cmd_type, name)
            for j in names or []:
                self._torque(self.motors[j], bool(enable))
            if names:
                kind = "group" if cmd_type == GROUP else "joint"
                self._event("info", f"The '{name}' {kind} was torqued {'on' if enable else 'off'}.")

    def reboot_motors(self, cmd_type: str, name: str, enable: bool, smart_reboot: bool = False) -> int:
        """Returns how many motors rebooted: the real call takes ``reboot_time_s`` for each."""
        with self._lock:
            rebooted = 0
            for j in self._names(cmd_type, name) or []:
                m = self.motors[j]
                if cmd_type == GROUP and smart_reboot and not m.hardware_error:
                    continue
                self._reboot(m)
                rebooted += 1
                self._event("info", f"The '{j}' joint was rebooted.")
                if enable:
                    self._torque(m, True)
            return rebooted

    def _reboot(self, m: Motor) -> None:
        m.hardware_error, m.torque, m.overload_s, m.current_ma = 0, False, 0.0, 0.0
        # RAM back to its defaults; Operating_Mode, Current_Limit and Drive_Mode are EEPROM and stay
        m.goal_position = m.target = m.present
        m.goal_current, m.goal_velocity, m.goal_pwm = m.current_limit, 0.0, 0
        m.profile_velocity = m.profile_acceleration = 0

    def get_robot_info(self, cmd_type: str, name: str) -> RobotInfo | None:
        with self._lock:
            names = self._names(cmd_type, name)
            if names is None:
                return None
            info = RobotInfo()
            src = self.groups[name] if cmd_type == GROUP else self.motors[name]
            info.mode, info.profile_type, info.joint_names = src.mode, src.profile_type, names
            info.num_joints = len(names)
            limits = self.robot.config.joint_limits
            for j in names:
                info.joint_ids.append(self.motors[j].motor_id)
                if j == self.gripper:
                    info.joint_sleep_positions.append(self.cfg.geometry.finger_position(0.0))
                    info.joint_state_indices.append(len(self.joint_order))  # left_finger
                    lo, hi = self.cfg.finger_limits
                    vel = self.cfg.finger_velocity_limit
                else:
                    info.joint_sleep_positions.append(self.sleep[self.joint_order.index(j)])
                    info.joint_state_indices.append(self.joint_order.index(j))
                    (lo, hi), vel = limits[j], self.robot.config.velocity_limit
                info.joint_lower_limits.append(lo)
                info.joint_upper_limits.append(hi)
                info.joint_velocity_limits.append(vel)
            info.name = sorted(self.groups) if name == "all" else [name]
            return info

    def set_motor_registers(self, cmd_type: str, name: str, reg: str, value: int) -> None:
        with self._lock:
            for j in self._names(cmd_type, name) or []:
                self._write_register(self.motors[j], reg, int(value))

    def _write_register(self, m: Motor, reg: str, value: int) -> None:
        if reg == "Current_Limit":
            if m.torque:
                self._event("error", f"'{m.name}': Current_Limit is EEPROM and torque is on: write refused")
            elif not 0 <= value <= 2047:
                self._event("error", f"'{m.name}': Current_Limit {value} out of range 0..2047")
            else:
                m.current_limit = value
                m.goal_current = min(m.goal_current, value)
        elif reg == "Goal_Current":
            if abs(value) > m.current_limit:
                self._event("error", f"'{m.name}': Goal_Current {value} exceeds Current_Limit {m.current_limit}")
            else:
                m.goal_current = value
        elif reg in ("Profile_Velocity", "Profile_Acceleration"):
            setattr(m, reg.lower(), value)
        elif reg == "Torque_Enable":
            self._torque(m, bool(value))
        elif reg in REGISTERS:
            self._event("error", f"'{m.name}': {reg} is not writable in this emulation")
        else:
            self._event("error", f"'{m.name}': no control-table item '{reg}' (names are case-sensitive, "
                                 "e.g. Current_Limit): nothing written")

    def get_motor_registers(self, cmd_type: str, name: str, reg: str) -> list[int] | None:
        with self._lock:
            names = self._names(cmd_type, name)
            if names is None:
                return None
            if reg not in REGISTERS:
                self._event("error", f"Could not get '{reg}' Item Info. Did you spell the register name correctly?")
                return None
            return [self._read_register(self.motors[j], reg) for j in names]

    @staticmethod
    def _read_register(m: Motor, reg: str) -> int:
        return {"Torque_Enable": int(m.torque), "Hardware_Error_Status": m.hardware_error,
                "Operating_Mode": OPERATING_MODE_VALUE[m.operating_mode], "Current_Limit": m.current_limit,
                "Goal_Current": m.goal_current, "Profile_Velocity": m.profile_velocity,
                "Profile_Acceleration": m.profile_acceleration,
                "Present_Current": int(round(m.current_ma / CURRENT_UNIT_MA)),
                "Present_Position": int(round(m.present * 4096 / (2 * math.pi) + 2048))}[reg]

    # ---- commands -------------------------------------------------------------------------------------
    def write_group(self, name: str, cmd) -> bool:
        """A JointGroupCommand; False (error logged) when the driver would not execute it."""
        with self._lock:
            if name not in self.groups:
                # the real xs_sdk looks the group up with map::at and throws (the node dies)
                self._event("error", f"joint_group: no group '{name}' (the real xs_sdk throws std::out_of_range)")
                return False
            g = self.groups[name]
            values = [float(v) for v in cmd]
            if len(values) != len(g.joint_names):
                self._event("error", f"Number of commands ({len(values)}) does not match the number of joints in "
                                     f"group '{name}' ({len(g.joint_names)}). Will not execute.")
                return False
            if g.mode not in MODES:
                self._event("error", "Invalid command for argument 'mode' while commanding joint group.")
                return False
            self._report(f"joint_group '{name}'", [(j, self._write_goal(self.motors[j], g.mode, v))
                                                    for j, v in zip(g.joint_names, values)], g.mode, values)
            return True

    def write_single(self, name: str, cmd: float) -> bool:
        """A JointSingleCommand; False (error logged) when the driver would not execute it."""
        with self._lock:
            m = self.motors.get(name)
            if m is None:  # motor_map[name] creates an empty entry: mode "" -> invalid
                self._event("error", f"Invalid command for argument 'mode' while commanding joint '{name}'.")
                return False
            self._report(f"joint_single '{name}'", [(name, self._write_goal(m, m.mode, float(cmd)))], m.mode,
                         [float(cmd)])
            return True

    def _report(self, what: str, results: list[tuple[str, str]], mode: str, values: list[float]) -> None:
        """One log line per command for the goals the driver turned to zero and those the motors refused."""
        zeroed = [j for j, r in results if r == "zeroed"]
        refused = [j for j, r in results if r == "refused"]
        if zeroed:
            self._event("error", f"{what} in {mode} mode: {values} is no finite angle for {', '.join(zeroed)}: the "
                                 "driver writes the zero-radian goal (convertRadian2Value of NaN)")
        if refused:
            self._event("warn", f"{what}: goal outside the position limits of {', '.join(refused)}: refused by the "
                                "motor (X-series position mode)")

    def _write_goal(self, m: Motor, mode: str, value: float) -> str:
        """One motor's share of a command in the driver mode ``mode`` (the register it goes to):
        "" written, "zeroed" written as 0 rad (NaN), "refused" by the motor (position limits)."""
        result = ""
        if mode in POSITION_MODES:
            rad = value
            if mode == "linear_position":  # an arm joint has no gripper geometry: NaN, as the driver's garbage
                rad = self.cfg.geometry.motor_angle(value) if m.name == self.gripper else math.nan
            if not math.isfinite(rad):
                rad, result = 0.0, "zeroed"
            ticks = dxl_position_value(rad)
            if m.operating_mode == "position" and not m.min_ticks <= ticks <= m.max_ticks:
                return "refused"
            m.goal_position = rad
        elif mode == "velocity":
            m.goal_velocity = value
        elif mode == "current":
            m.goal_current = int(round(value / CURRENT_UNIT_MA))
        elif mode == "pwm":
            m.goal_pwm = int(value)
        return result

    # ---- the motors over time -------------------------------------------------------------------------
    def _drive_velocity(self, m: Motor) -> float | None:
        """Commanded velocity (rad/s) of a motor in a velocity-type mode; None in the position modes."""
        vmax = m.velocity_limit
        if m.operating_mode == "velocity":
            return float(np.clip(m.goal_velocity, -vmax, vmax))
        if m.operating_mode == "current":
            return math.copysign(vmax * min(1.0, abs(m.goal_current) * CURRENT_UNIT_MA / self.cfg.stall_current_ma),
                                 m.goal_current) if m.goal_current else 0.0
        if m.operating_mode == "pwm":
            return vmax * float(np.clip(m.goal_pwm / PWM_MAX, -1.0, 1.0))
        return None

    def _drive_current_ma(self, m: Motor) -> float:
        """The current the motor draws when it pushes against something, by operating mode."""
        limit_ma = m.current_limit * CURRENT_UNIT_MA
        if m.operating_mode == "current_based_position":
            return min(abs(m.goal_current) * CURRENT_UNIT_MA, limit_ma, self.cfg.stall_current_ma)
        if m.operating_mode == "current":
            return min(abs(m.goal_current) * CURRENT_UNIT_MA, limit_ma)
        if m.operating_mode == "pwm":
            return abs(m.goal_pwm) / PWM_MAX * self.cfg.stall_current_ma
        return self.cfg.stall_current_ma

    def _update_targets(self, dt: float) -> bool:
        """Targets of the motors that drive (torque on); True if any changed."""
        changed = False
        for m in self.motors.values():
            if not m.torque:
                continue
            v = self._drive_velocity(m)
            if v is None:
                new = m.goal_position
            else:  # velocity-type modes push on; keep the target near the motor (a real one has no target)
                span = 2 * self.cfg.stall_error_rad
                new = float(np.clip(m.target + v * dt, m.present - span, m.present + span))
            changed |= new != m.target
            m.target = new
        return changed

    def observe(self, positions, velocities, dt: float, gripper_range: tuple[float, float] | None = None) -> bool:
        """The measured motor positions/velocities (7 each) after ``dt`` s: the sim's physics reports them.

        ``gripper_range`` (rad): the gripper angles the physics can reach at all. A target beyond it
        is not pushing against anything real (the sim's finger slides end there, the real gripper's
        travel does not), so the load model clips the target to it.
        Updates the load and overload model; returns True when the targets changed (torque, a fault,
        a velocity-type mode) and the physics should take them again.
        """
        with self._lock:
            for m, p, v in zip(self.motors.values(), positions, velocities):
                m.present, m.velocity = float(p), float(v)
            changed = self._update_targets(dt)
            return self._update_load(dt, gripper_range) or changed

    def _update_load(self, dt: float, reachable: tuple[float, float] | None = None) -> bool:
        c, m = self.cfg, self.motors[self.gripper]
        target = m.target if reachable is None else float(np.clip(m.target, *reachable))
        pushing = m.torque and abs(target - m.present) > c.stall_error_rad and abs(m.velocity) < c.still_velocity
        m.current_ma = self._drive_current_ma(m) if pushing else 0.0
        if not pushing or m.current_ma < c.overload_current_ma:
            m.overload_s = 0.0
            return False
        m.overload_s += dt
        if m.overload_s < c.overload_time_s:
            return False
        m.hardware_error |= HW_OVERLOAD
        self._torque(m, False)
        self._event("error", f"'{m.name}' overload: pushed with {self._drive_current_ma(m):.0f} mA for "
                             f"{c.overload_time_s:g} s (Hardware_Error_Status 0x{HW_OVERLOAD:02x}); torque off, "
                             "commands ignored until reboot_motors")
        return True

    def step(self, dt: float, object_finger: float | None = None) -> None:
        """Kinematic model for the standalone emulator: each motor moves toward its target for ``dt`` s.

        An arm joint without torque drifts to its rest (the sleep pose) at ``sag_speed``. The fingers
        cannot close past the URDF's lower finger limit, nor past ``object_finger`` (m, left finger
        position where an object between the fingers stops them).
        """
        with self._lock:
            self._update_targets(dt)
            stop = max(self.cfg.finger_limits[0], object_finger or 0.0)
            closed = self.cfg.geometry.motor_angle(2.0 * stop)  # motor angle at which the fingers reach it
            for i, m in enumerate(self.motors.values()):
                before = m.present
                if m.torque:
                    vmax = m.velocity_limit
                    if m.profile_type == "velocity" and m.profile_velocity > 0:
                        vmax = min(vmax, m.profile_velocity * 0.229 * 2 * math.pi / 60)
                    m.present += float(np.clip(m.target - m.present, -vmax * dt, vmax * dt))
                elif m.name != self.gripper:
                    m.present += float(np.clip(self.sleep[i] - m.present, -self.cfg.sag_speed * dt,
                                               self.cfg.sag_speed * dt))
                if m.name == self.gripper:  # the fingers stop at the stop (a motor already past it goes no further)
                    m.present = max(m.present, min(before, closed))
                m.velocity = (m.present - before) / dt if dt > 0 else 0.0
            self._update_load(dt)

    # ---- readings ---------------------------------------------------------------------------------------
    def targets(self) -> np.ndarray:
        """Where each of the 7 motors drives to (rad); meaningful where torque is on."""
        with self._lock:
            return np.array([m.target for m in self.motors.values()])

    def torque_mask(self) -> np.ndarray:
        with self._lock:
            return np.array([m.torque for m in self.motors.values()], dtype=bool)

    def set_present(self, positions) -> None:
        """A sim reset moved the motors: present and goal := ``positions`` (as after power-up)."""
        with self._lock:
            for m, p in zip(self.motors.values(), positions):
                m.present = m.goal_position = m.target = float(p)
                m.velocity = 0.0

    def joint_state(self) -> tuple[list[str], list[float], list[float], list[float]]:
        """(name, position, velocity, effort) as the xs_sdk publishes them (S robot_update_joint_states)."""
        with self._lock:
            ms = list(self.motors.values())
            finger = self.cfg.geometry.finger_position(self.motors[self.gripper].present)
            return (self.joint_order + self.finger_names,
                    [m.present for m in ms] + [finger, -finger],
                    [m.velocity for m in ms] + [0.0, 0.0],
                    [m.current_ma for m in ms] + [0.0, 0.0])
