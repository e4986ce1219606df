"""Client of the Interbotix xs_sdk services: bring the follower arms into the state the executor streams to.

Why: the xs_sdk starts the follower grippers in ``linear_position`` (Interbotix/aloha
config/follower_modes_*.yaml), where a JointSingleCommand is a finger distance in metres; we send
gripper motor radians, so the gripper must be in ``current_based_position`` first, as Interbotix's
own client sets it (aloha/robot_utils.py setup_follower_bot). Upstream also reboots the gripper
motors at every setup and reset (real_env.py RealEnv.reset): an overloaded gripper stops obeying
until it is rebooted. The driver answers every request with an empty response, valid or not, so
everything set is read back.

``prepare`` per follower namespace (both arms side by side):
  1. the driver's services must answer (``driver_timeout_s``), else one DriverError line;
  2. get_robot_info: the arm group and gripper joint are the robot config's;
  3. reboot the gripper with torque left off (upstream reboots with torque on; off lets the EEPROM
     Current_Limit be written now, and the mode switch below torques it on again);
  4. Current_Limit := ``gripper_current_limit`` (upstream's record_episodes writes 'current_limit',
     which is no control-table name, with torque on: it never takes; the value that holds there is
     the 200 of aloha_vx300s.yaml, written at bring-up);
  5. gripper -> current_based_position (velocity profile 0/0; the driver torques it on);
  6. arm -> position (profile 0/0), only if it is in another mode: the driver cycles the arm's torque
     while it switches;
  7. read back: modes (get_robot_info), Current_Limit and the arm's Torque_Enable (get_motor_registers).
     An arm without torque is refused at start (it would not follow, and torque on would send it to
     a stale goal); at open it is only reported.
Service calls run on a private node with its own executor, so they work from the executor node's
constructor (not spinning yet) and from its service callbacks (spinning, busy with that callback).
"""
from __future__ import annotations

import threading
import time

import numpy as np
from interbotix_xs_msgs.srv import OperatingModes, Reboot, RegisterValues, RobotInfo, TorqueEnable
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState

from cosmos_policy_ros.errors import CosmosError
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.executor_config import InterbotixConfig
from cosmos_policy_ros.robot.xs_driver_emulation import SERVICES, service_name

ARM_MODE, GRIPPER_MODE = "position", "current_based_position"
_TYPES = {"set_operating_modes": OperatingModes, "torque_enable": TorqueEnable, "reboot_motors": Reboot,
          "get_robot_info": RobotInfo, "set_motor_registers": RegisterValues, "get_motor_registers": RegisterValues}


class DriverError(CosmosError, RuntimeError):
    """The xs_sdk driver is absent, does not answer, or cannot be put into the modes the executor needs."""


class XsDriverClient:
    def __init__(self, node: Node, robot: AlohaRobot, config: InterbotixConfig):
        self.robot, self.cfg = robot, config
        self.group = robot.config.arm_group_name
        self.gripper = robot.config.gripper_joint
        self.namespaces = [robot.config.follower_namespaces[s] for s in robot.config.arms]
        self.node = Node(f"{node.get_name()}_xs_client", context=node.context)
        self.log = node.get_logger()
        self.executor = SingleThreadedExecutor(context=node.context)
        self.executor.add_node(self.node)
        self.clients = {(ns, name): self.node.create_client(_TYPES[name], service_name(ns, name))
                        for ns in self.namespaces for name in SERVICES}
        self.states: dict[int, list] = {i: [] for i in range(len(self.namespaces))}  # [count, names, positions]
        for i, side in enumerate(robot.config.arms):
            self.node.create_subscription(JointState, robot.follower_topic(side, "joint_states"),
                                          lambda m, i=i: self._on_state(i, m), qos_profile_sensor_data)
        self._lock = threading.Lock()  # one caller spins the private executor at a time

    def _on_state(self, i: int, msg) -> None:
        count = self.states[i][0] + 1 if self.states[i] else 1
        self.states[i] = [count, list(msg.name), list(msg.position)]

    # ---- service calls ------------------------------------------------------------------------------
    def driver_ready(self) -> bool:
        """Whether every driver service is discovered (does not wait)."""
        return all(c.service_is_ready() for c in self.clients.values())

    def wait_for_driver(self) -> None:
        deadline = time.monotonic() + self.cfg.driver_timeout_s
        with self._lock:
            for (ns, name), client in self.clients.items():
                if not client.wait_for_service(timeout_sec=max(0.0, deadline - time.monotonic())):
                    missing = [service_name(n, s) for (n, s), c in self.clients.items() if not c.service_is_ready()]
                    raise DriverError(
                        f"no Interbotix xs_sdk driver answers: {', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''} not available after {self.cfg.driver_timeout_s:g} s "
                        "(interbotix.driver_timeout_s); start the robot's bring-up (aloha_bringup.launch.py) or the "
                        "sim node first")
            for ns in self.namespaces:
                self._handshake(ns, deadline)

    def _handshake(self, ns: str, deadline: float) -> None:
        """Ask get_robot_info until it answers. A service is "ready" once its server is discovered, but the
        server may not yet know our response reader: Fast DDS then drops the answer ("failed to send response
        (timeout)", seen in CI). Asking again (read-only, so harmless) covers that window before any call
        that changes the robot is made."""
        client = self.clients[(ns, "get_robot_info")]
        while True:
            fut = client.call_async(_TYPES["get_robot_info"].Request(cmd_type="group", name=self.group))
            try_end = min(deadline, time.monotonic() + 1.0)
            while not fut.done() and time.monotonic() < try_end:
                self.executor.spin_once(timeout_sec=0.05)
            if fut.done():
                return
            client.remove_pending_request(fut)
            if time.monotonic() >= deadline:
                raise DriverError(f"{service_name(ns, 'get_robot_info')} is advertised but never answered within "
                                  f"{self.cfg.driver_timeout_s:g} s (interbotix.driver_timeout_s): is the xs_sdk "
                                  "driver still starting?")

    def call(self, ns: str, service: str, **fields):
        """One service call; DriverError if it does not answer within ``service_timeout_s``."""
        return self.call_all([(ns, service, fields)])[0]

    def call_all(self, requests: list[tuple[str, str, dict]], timeout_s: float | None = None) -> list:
        """Several calls at once (e.g. both arms' reboots, ~1 s each on real motors), answers in order."""
        timeout = self.cfg.service_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            futures = [self.clients[(ns, name)].call_async(_TYPES[name].Request(**fields))
                       for ns, name, fields in requests]
            deadline = time.monotonic() + timeout
            while not all(f.done() for f in futures) and time.monotonic() < deadline:
                self.executor.spin_once(timeout_sec=min(0.05, max(0.0, deadline - time.monotonic())))
            for (ns, name, _), f in zip(requests, futures):
                if not f.done():
                    for (n2, s2, _), f2 in zip(requests, futures):
                        self.clients[(n2, s2)].remove_pending_request(f2)
                    raise DriverError(f"{service_name(ns, name)} did not answer within {timeout:g} s "
                                      "(interbotix.service_timeout_s): is the xs_sdk driver still running?")
            return [f.result() for f in futures]

    # ---- the set-up ------------------------------------------------------------------------------------
    def prepare(self, starting: bool) -> list[str]:
        """Steps 2-7 of the module docstring for both arms; returns what to warn about; DriverError to refuse."""
        warnings = []
        for ns in self.namespaces:
            self._check_joints(ns)
        if self.cfg.reboot_grippers:
            faults = self.call_all([(ns, "get_motor_registers", dict(cmd_type="single", name=self.gripper,
                                                                        reg="Hardware_Error_Status"))
                                    for ns in self.namespaces])
            for ns, res in zip(self.namespaces, faults):
                if list(res.values) and res.values[0]:
                    warnings.append(f"{ns} gripper reported Hardware_Error_Status 0x{res.values[0]:02x} "
                                    "(0x20 = overload): rebooting it")
            self.call_all([(ns, "reboot_motors", dict(cmd_type="single", name=self.gripper, enable=False,
                                                      smart_reboot=False)) for ns in self.namespaces],
                          timeout_s=self.cfg.service_timeout_s + 2.0)
        for ns in self.namespaces:
            warnings += self._configure_arm(ns, starting)
        return warnings

    def _info(self, ns: str, cmd_type: str, name: str):
        return self.call(ns, "get_robot_info", cmd_type=cmd_type, name=name)

    def _check_joints(self, ns: str) -> None:
        arm = self._info(ns, "group", self.group)
        want = list(self.robot.config.arm_joints)
        if list(arm.joint_names) != want:
            raise DriverError(f"{ns}: the driver's group '{self.group}' has joints {list(arm.joint_names)}, the robot "
                              f"config ({self.robot.config.source}) expects {want}")
        if list(self._info(ns, "single", self.gripper).joint_names) != [self.gripper]:
            raise DriverError(f"{ns}: the driver has no joint '{self.gripper}' (robot config gripper_joint)")

    def _configure_arm(self, ns: str, starting: bool) -> list[str]:
        warnings, g = [], self.gripper
        self.call(ns, "torque_enable", cmd_type="single", name=g, enable=False)  # EEPROM is writable only so
        self.call(ns, "set_motor_registers", cmd_type="single", name=g, reg="Current_Limit",
                  value=self.cfg.gripper_current_limit)
        self.call(ns, "set_operating_modes", cmd_type="single", name=g, mode=GRIPPER_MODE, profile_type="velocity",
                  profile_velocity=0, profile_acceleration=0)
        self.call(ns, "torque_enable", cmd_type="single", name=g, enable=True)
        arm = self._info(ns, "group", self.group)
        if arm.mode != ARM_MODE:
            warnings.append(f"{ns} arm was in '{arm.mode}' mode: switched to '{ARM_MODE}' (the driver cycles the arm's "
                            "torque while it switches)")
            self.call(ns, "set_operating_modes", cmd_type="group", name=self.group, mode=ARM_MODE,
                      profile_type="velocity", profile_velocity=0, profile_acceleration=0)
        self._verify(ns)
        torque = list(self.call(ns, "get_motor_registers", cmd_type="group", name=self.group,
                                reg="Torque_Enable").values)
        off = [j for j, t in zip(self.robot.config.arm_joints, torque) if not t]
        if off:
            line = (f"{ns} arm torque is off ({', '.join(off)}): it would not follow, and switching it on sends the "
                    "arm to its last goal; switch it on at a safe pose (Interbotix torque_enable / sleep.py)")
            if starting:
                raise DriverError(line)
            warnings.append(line + " before start")
        return warnings

    def _verify(self, ns: str) -> None:
        for cmd_type, name, want in (("group", self.group, ARM_MODE), ("single", self.gripper, GRIPPER_MODE)):
            mode = self._info(ns, cmd_type, name).mode
            if mode != want:
                raise DriverError(f"{ns}: could not set the {name} to '{want}': the driver reports '{mode}' after "
                                  "set_operating_modes (see the driver's log)")
        limit = list(self.call(ns, "get_motor_registers", cmd_type="single", name=self.gripper,
                               reg="Current_Limit").values)
        if limit != [self.cfg.gripper_current_limit]:
            raise DriverError(f"{ns}: gripper Current_Limit reads {limit}, expected "
                              f"[{self.cfg.gripper_current_limit}] after set_motor_registers (see the driver's log)")
        if list(self.call(ns, "get_motor_registers", cmd_type="single", name=self.gripper,
                          reg="Torque_Enable").values) != [1]:
            raise DriverError(f"{ns}: the gripper's torque stays off (a motor fault: see Hardware_Error_Status; "
                              "interbotix.reboot_grippers reboots it)")

    # ---- joint states ------------------------------------------------------------------------------------
    def fresh_state(self, timeout_s: float = 2.0) -> np.ndarray | None:
        """The 14-D measured state from joint states published after this call (None on timeout).

        After a reboot the executor node's own joint-state callbacks are stale (its callback thread was
        busy here, and the real xs_sdk does not publish while a service runs): this feeds it fresh ones.
        """
        with self._lock:
            for _ in range(50):  # take what is queued already: those are not fresh
                self.executor.spin_once(timeout_sec=0.0)
            seen = {i: (s[0] if s else 0) for i, s in self.states.items()}
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if all(s and s[0] >= seen[i] + 2 for i, s in self.states.items()):
                    q = [self.robot.arm_state_from_joint_state(s[1], s[2]) for s in self.states.values()]
                    return np.concatenate(q)
                self.executor.spin_once(timeout_sec=0.02)
        return None

    def torque_off(self) -> None:
        """Torque off both arms and grippers (the executor's sleep, at the sleep pose only)."""
        self.call_all([(ns, "torque_enable", dict(cmd_type=t, name=n, enable=False)) for ns in self.namespaces
                       for t, n in (("group", self.group), ("single", self.gripper))])

    def close(self) -> None:
        with self._lock:
            self.executor.remove_node(self.node)
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
