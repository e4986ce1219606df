"""Executor configuration (config/executor.yaml) as typed dataclasses.

One file holds everything a lab tunes for the executor — rate, chunk mode, watchdog, safety caps,
moves, backend, Interbotix driver set-up and Dynamixel bus — so a deployment is reviewed in one
place. Errors are one line naming the file and key (cosmos_policy_ros.config).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.robot.motion import MotionConfig
from cosmos_policy_ros.robot.safety import SafetyConfig
from cosmos_policy_ros.robot.scheduler import SchedulerConfig
from cosmos_policy_ros.robot.watchdog import WatchdogConfig
from cosmos_policy_ros.topics import refuse_topics_section


@dataclass
class DynamixelArmConfig:
    port: str
    ids: dict[str, int] = field(default_factory=lambda: dict(
        waist=1, shoulder=2, elbow=4, forearm_roll=6, wrist_angle=7, wrist_rotate=8, gripper=9))
    shadows: dict[str, int] = field(default_factory=lambda: dict(shoulder=3, elbow=5))


@dataclass
class DynamixelConfig:
    baudrate: int = 1_000_000
    arms: dict[str, DynamixelArmConfig] = field(default_factory=lambda: {
        "left": DynamixelArmConfig("/dev/ttyDXL_follower_left"),
        "right": DynamixelArmConfig("/dev/ttyDXL_follower_right")})
    arm_operating_mode: int = 3  # position (firmware position limits stay active)
    gripper_operating_mode: int = 5  # current-based position: closing on an object saturates current
    # units of 2.69 mA (200 = 538 mA), written only while torque is off: Interbotix's aloha_vx300s.yaml
    # (humble) and the ROS 1 ALOHA README ("to prevent overloading errors")
    gripper_current_limit: int = 200
    # joints whose motor turns reversed (Drive_Mode 1), as Interbotix's aloha_vx300s.yaml sets them; every other
    # motor, the shadows included, runs Drive_Mode 0. Checked at open (a wrong direction would mirror the joint),
    # written only while torque is off
    reversed_joints: list[str] = field(default_factory=lambda: ["shoulder", "elbow", "wrist_angle"])
    enable_torque: bool = True  # on open(): goal := present position, then torque on
    set_shadow_secondary_id: bool = True  # Secondary_ID of shadow = primary ID (one write drives both)


@dataclass
class InterbotixConfig:
    """How the interbotix (and sim) backend prepares the xs_sdk driver (robot/backends/xs_driver_client.py)."""

    # true: at open, start and home set the arm to position and the gripper to current_based_position,
    # reboot the gripper and write its Current_Limit, as Interbotix/aloha's setup_follower_bot and
    # RealEnv.reset do. false: stream to the driver as it is (its bring-up gripper mode, linear_position,
    # takes our radians as metres: the grippers close and stay closed). Only for tests and diagnosis.
    configure_driver: bool = True
    # s: open() waits this long for the driver's services, then refuses to stream
    driver_timeout_s: float = 20.0
    # s: one service call; a reboot alone takes ~1 s (dynamixel_workbench waits 1 s after it)
    service_timeout_s: float = 5.0
    # Current_Limit of the gripper motors, units of 2.69 mA (200 = 538 mA): Interbotix's aloha_vx300s.yaml
    # (humble) and the ROS 1 ALOHA README ("to prevent overloading errors")
    gripper_current_limit: int = 200
    # reboot the gripper motors at open and before each start / home from IDLE (upstream: every setup and
    # reset), so an overload fault from the last run is cleared; the gripper is limp for ~1 s meanwhile
    reboot_grippers: bool = True

    def validate(self) -> None:
        if self.driver_timeout_s <= 0 or self.service_timeout_s <= 0:
            raise cfg.ConfigError("interbotix.driver_timeout_s and service_timeout_s must be positive")
        if not 0 <= self.gripper_current_limit <= 2047:
            raise cfg.ConfigError(
                f"interbotix.gripper_current_limit: expected 0..2047, got {self.gripper_current_limit}")


@dataclass
class ExecutorConfig:
    rate_hz: float = 50.0
    loop_priority: int = 0  # >0: SCHED_FIFO priority of the loop thread (robot PC with rtprio); 0 = normal
    status_rate_hz: float = 5.0
    # s: a repeated rejection / refusal line is logged at most this often, with a count of the rest
    log_throttle_s: float = 1.0
    backend: Literal["interbotix", "dynamixel", "sim"] = "interbotix"
    robot_config: str = "robot/aloha_interbotix.yaml"
    autostart: bool = False
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    dynamixel: DynamixelConfig = field(default_factory=DynamixelConfig)
    interbotix: InterbotixConfig = field(default_factory=InterbotixConfig)

    def validate(self) -> None:
        if not 1.0 <= self.rate_hz <= 1000.0:
            raise cfg.ConfigError(f"rate_hz: expected 1..1000, got {self.rate_hz}")
        if not 0 <= self.loop_priority <= 99:
            raise cfg.ConfigError(f"loop_priority: expected 0..99, got {self.loop_priority}")
        if self.status_rate_hz <= 0:
            raise cfg.ConfigError("status_rate_hz: must be positive")
        if not self.log_throttle_s > 0:
            raise cfg.ConfigError(f"log_throttle_s: must be positive, got {self.log_throttle_s}")
        for part in (self.scheduler, self.safety, self.watchdog, self.motion, self.interbotix):
            part.validate()


def load_executor_config(path: str | Path = "executor.yaml", overrides: dict | None = None) -> ExecutorConfig:
    """Load config/executor.yaml (or ``path``); ``overrides`` replace top-level keys (node parameters)."""
    refuse_topics_section(path)
    return cfg.load(ExecutorConfig, path, overrides)
