"""The Interbotix xs_sdk's ROS interface for one emulated follower arm: command topics and services.

Shared by the sim node (MuJoCo moves the motors) and the xs_sdk emulator node (a kinematic model
moves them); the semantics live in cosmos_policy_ros.robot.xs_driver_emulation. Per arm namespace
``ns`` (interbotix_ros_core humble xs_sdk_obj.cpp):
  sub  /<ns>/commands/joint_group   JointGroupCommand   (robot config topic names)
  sub  /<ns>/commands/joint_single  JointSingleCommand
  srv  /<ns>/set_operating_modes    OperatingModes      empty response, valid or not (as the driver)
  srv  /<ns>/torque_enable          TorqueEnable
  srv  /<ns>/reboot_motors          Reboot
  srv  /<ns>/get_robot_info         RobotInfo           empty response for an unknown group/joint
  srv  /<ns>/set_motor_registers    RegisterValues
  srv  /<ns>/get_motor_registers    RegisterValues
What the real driver logs goes to this node's log; repeated command errors at most once a second.
"""
from __future__ import annotations

import time
from typing import Callable

from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
from interbotix_xs_msgs.srv import OperatingModes, Reboot, RegisterValues, RobotInfo, TorqueEnable
from rclpy.node import Node

from cosmos_policy_ros.nodes.log_throttle import ThrottledLog
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.xs_driver_emulation import XsDriverEmulation, service_name


class XsDriverServer:
    """Wire one XsDriverEmulation to a node. ``on_change(side)`` runs after anything that may have
    changed the motors' targets or torque; ``on_command(side, kind)`` after an executed command."""

    def __init__(self, node: Node, robot: AlohaRobot, side: str, emu: XsDriverEmulation,
                 on_change: Callable[[str], None] = lambda side: None,
                 on_command: Callable[[str, str], None] = lambda side, kind: None, callback_group=None):
        self.node, self.side, self.emu = node, side, emu
        self.on_change, self.on_command = on_change, on_command
        self.bad_commands = 0
        self.ns = ns = robot.config.follower_namespaces[side]
        log = node.get_logger()
        self._throttled = {"error": ThrottledLog(lambda line: log.error(line)),
                           "warn": ThrottledLog(lambda line: log.warning(line))}
        kw = {"callback_group": callback_group}
        node.create_subscription(JointGroupCommand, robot.follower_topic(side, "joint_group"), self._on_group, 10, **kw)
        node.create_subscription(JointSingleCommand, robot.follower_topic(side, "joint_single"), self._on_single, 10,
                                 **kw)
        for srv_type, name, handler in (
                (OperatingModes, "set_operating_modes", self._set_operating_modes),
                (TorqueEnable, "torque_enable", self._torque_enable),
                (Reboot, "reboot_motors", self._reboot_motors),
                (RobotInfo, "get_robot_info", self._get_robot_info),
                (RegisterValues, "set_motor_registers", self._set_motor_registers),
                (RegisterValues, "get_motor_registers", self._get_motor_registers)):
            node.create_service(srv_type, service_name(ns, name), handler, **kw)

    # ---- log ----------------------------------------------------------------------------------------
    def flush_events(self) -> bool:
        """Log what the emulated driver said since the last call (also faults found by the physics);
        True if it reported an error."""
        log, error = self.node.get_logger(), False
        for level, line in self.emu.drain_events():
            line = f"[{self.ns}] {line}"
            error |= level == "error"
            if level == "info":
                log.info(line)
            else:
                self._throttled[level](line, line[:60])
        return error

    def _done(self) -> bool:
        self.on_change(self.side)
        return self.flush_events()

    # ---- commands -----------------------------------------------------------------------------------
    def _on_group(self, msg) -> None:
        ok = self.emu.write_group(msg.name, list(msg.cmd))
        self._count(ok, "group")

    def _on_single(self, msg) -> None:
        ok = self.emu.write_single(msg.name, msg.cmd)
        self._count(ok, "single")

    def _count(self, ok: bool, kind: str) -> None:
        errors = self._done()
        self.bad_commands += int(not ok or errors)
        if ok:
            self.on_command(self.side, kind)

    # ---- services -------------------------------------------------------------------------------------
    def _set_operating_modes(self, req, res):
        self.emu.set_operating_modes(req.cmd_type, req.name, req.mode, req.profile_type, req.profile_velocity,
                                     req.profile_acceleration)
        self._done()
        return res

    def _torque_enable(self, req, res):
        self.emu.torque_enable(req.cmd_type, req.name, req.enable)
        self._done()
        return res

    def _reboot_motors(self, req, res):
        rebooted = self.emu.reboot_motors(req.cmd_type, req.name, req.enable, req.smart_reboot)
        self._done()
        time.sleep(rebooted * self.emu.cfg.reboot_time_s)  # the real call blocks the driver as long
        return res

    def _get_robot_info(self, req, res):
        info = self.emu.get_robot_info(req.cmd_type, req.name)
        if info is not None:
            for k, v in vars(info).items():
                setattr(res, k, v)
        self.flush_events()
        return res

    def _set_motor_registers(self, req, res):
        self.emu.set_motor_registers(req.cmd_type, req.name, req.reg, req.value)
        self._done()
        return res

    def _get_motor_registers(self, req, res):
        res.values = self.emu.get_motor_registers(req.cmd_type, req.name, req.reg) or []
        self.flush_events()
        return res
