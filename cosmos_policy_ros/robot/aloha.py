"""The bimanual ALOHA as the rest of the suite sees it: joint order, limits, poses, gripper units.

Everything numeric comes from a robot YAML (config/robot/), because the gripper constants differ
between the Interbotix ROS 2 stack and the original ROS 1 stack and datasets must record which.
The 14-D vector is [left 6 arm joints (rad), left gripper (0 closed .. 1 open), right 6, right gripper].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.robot.collision import CollisionConfig

DEFAULT_ROBOT_CONFIG = "robot/aloha_interbotix.yaml"


@dataclass
class Topics:
    joint_states: str
    joint_group: str
    joint_single: str


# The constants that define a gripper convention: which finger reading and which motor angle are 0 and 1.
GRIPPER_CONVENTION_KEYS = ("follower_position_open", "follower_position_close", "follower_joint_open",
                           "follower_joint_close", "leader_position_open", "leader_position_close",
                           "leader_joint_open", "leader_joint_close")


@dataclass
class GripperConstants:
    follower_position_open: float
    follower_position_close: float
    follower_joint_open: float
    follower_joint_close: float
    leader_position_open: float
    leader_position_close: float
    leader_joint_open: float
    leader_joint_close: float
    leader_close_threshold: float = 0.0
    # Name of this set of constants, recorded with every checkpoint trained on data they normalised
    # (aloha_interbotix, aloha_ros1); the check compares the numbers, the name is for messages.
    convention: str = ""

    def convention_record(self) -> dict:
        """{name, the eight open/close constants}: what a checkpoint bundle stores as gripper_convention."""
        return {"name": self.convention, **{k: float(getattr(self, k)) for k in GRIPPER_CONVENTION_KEYS}}

    def matches(self, record: dict, tol: float = 1e-6) -> bool:
        """True when a gripper_convention record holds these eight constants (the name is not compared)."""
        return all(abs(float(record[k]) - float(getattr(self, k))) <= tol for k in GRIPPER_CONVENTION_KEYS)


@dataclass
class Poses:
    start: tuple[float, float, float, float, float, float]
    sleep: tuple[float, float, float, float, float, float]


@dataclass
class RobotConfig:
    name: str
    arms: list[str]
    follower_namespaces: dict[str, str]
    leader_namespaces: dict[str, str]
    topics: Topics
    arm_joints: list[str]
    gripper_joint: str
    finger_joints: list[str]
    joint_limits: dict[str, tuple[float, float]]
    velocity_limit: float
    gripper: GripperConstants
    poses: Poses
    # Normalised gripper units (0 closed .. 1 open): the range the safety filter clips gripper commands to.
    # Below 0 squeezes past the calibrated close: the original ALOHA sends the leader's reading unclipped and
    # grips by commanding past closed in current-based position mode (docs/executor.md "Gripper range").
    gripper_command_range: tuple[float, float] = (-0.1, 1.0)
    arm_group_name: str = "arm"
    control_rate_hz: float = 50.0
    # Geometry and margins of the collision guard (SafetyConfig.collision switches it; docs/executor.md).
    collision: CollisionConfig = field(default_factory=CollisionConfig)
    source: str = field(default="<dict>", compare=False)

    def validate(self) -> None:
        if self.arms != ["left", "right"]:
            raise cfg.ConfigError(f"arms: must be [left, right] (the 14-D vector order), got {self.arms}")
        for group in ("follower_namespaces", "leader_namespaces"):
            missing = set(self.arms) - set(getattr(self, group))
            if missing:
                raise cfg.ConfigError(f"{group}.{sorted(missing)[0]}: required key is missing")
        if len(self.arm_joints) != 6:
            raise cfg.ConfigError(f"arm_joints: expected 6 joint names, got {len(self.arm_joints)}")
        for j in self.arm_joints:
            if j not in self.joint_limits:
                raise cfg.ConfigError(f"joint_limits.{j}: required key is missing")
            lo, hi = self.joint_limits[j]
            if not lo < hi:
                raise cfg.ConfigError(f"joint_limits.{j}: lower {lo} must be below upper {hi}")
        # The ALOHA sleep pose rests beyond the vx300s shoulder/wrist_angle limits (on the
        # mechanical rest); the executor reaches it clipped. The start pose must be inside.
        for pose_name in ("start",):
            pose = np.asarray(getattr(self.poses, pose_name))
            lo = np.array([self.joint_limits[j][0] for j in self.arm_joints])
            hi = np.array([self.joint_limits[j][1] for j in self.arm_joints])
            bad = np.flatnonzero((pose < lo) | (pose > hi))
            if bad.size:
                j = self.arm_joints[bad[0]]
                raise cfg.ConfigError(f"poses.{pose_name}: {j}={pose[bad[0]]} is outside joint_limits.{j}")
        if self.velocity_limit <= 0 or self.control_rate_hz <= 0:
            raise cfg.ConfigError("velocity_limit and control_rate_hz must be positive")
        self.collision.validate()
        lo, hi = self.gripper_command_range
        if not lo < hi:
            raise cfg.ConfigError(f"gripper_command_range: lower {lo} must be below upper {hi}")
        g = self.gripper
        for kind in ("follower_position", "follower_joint", "leader_position", "leader_joint"):
            if getattr(g, f"{kind}_open") == getattr(g, f"{kind}_close"):
                raise cfg.ConfigError(f"gripper.{kind}_open: must differ from gripper.{kind}_close")


class AlohaRobot:
    """Joint order, limits and unit conversions of one configured ALOHA."""

    ARM_DOF = 6
    STATE_DIM = 14

    def __init__(self, config: RobotConfig):
        self.config = config
        self.dt = 1.0 / config.control_rate_hz

    @classmethod
    def from_yaml(cls, path: str | Path = DEFAULT_ROBOT_CONFIG) -> "AlohaRobot":
        rc = cfg.load(RobotConfig, path)
        rc.source = str(cfg.config_path(path))
        return cls(rc)

    # ---- names and topics -------------------------------------------------------------
    @property
    def joint_names(self) -> list[str]:
        """The 14 names of the state/action vector: left_waist .. left_gripper, right_waist .. right_gripper."""
        names = []
        for side in self.config.arms:
            names += [f"{side}_{j}" for j in self.config.arm_joints] + [f"{side}_{self.config.gripper_joint}"]
        return names

    def follower_topic(self, side: str, kind: str) -> str:
        """kind: joint_states | joint_group | joint_single."""
        return getattr(self.config.topics, kind).format(ns=self.config.follower_namespaces[side])

    def leader_topic(self, side: str, kind: str) -> str:
        return getattr(self.config.topics, kind).format(ns=self.config.leader_namespaces[side])

    @property
    def driver_joint_names(self) -> list[str]:
        """The 9 entries of an xs_sdk joint_states message: 6 arm joints, gripper, two fingers."""
        return list(self.config.arm_joints) + [self.config.gripper_joint] + list(self.config.finger_joints)

    # ---- limits -------------------------------------------------------------------------
    @property
    def arm_lower(self) -> np.ndarray:
        return np.array([self.config.joint_limits[j][0] for j in self.config.arm_joints])

    @property
    def arm_upper(self) -> np.ndarray:
        return np.array([self.config.joint_limits[j][1] for j in self.config.arm_joints])

    @property
    def lower(self) -> np.ndarray:
        """14-D lower bounds of a command (grippers: gripper_command_range, normalised)."""
        arm = np.append(self.arm_lower, self.config.gripper_command_range[0])
        return np.concatenate([arm, arm])

    @property
    def upper(self) -> np.ndarray:
        arm = np.append(self.arm_upper, self.config.gripper_command_range[1])
        return np.concatenate([arm, arm])

    @property
    def gripper_indices(self) -> tuple[int, int]:
        return (6, 13)

    def pose14(self, name: str, gripper: float = 0.0) -> np.ndarray:
        """A named pose (start / sleep) for both arms as a 14-D vector."""
        arm = np.append(np.asarray(getattr(self.config.poses, name), dtype=float), gripper)
        return np.concatenate([arm, arm])

    # ---- gripper conversions --------------------------------------------------------------
    @staticmethod
    def _norm(x, open_, close):
        return (np.asarray(x, dtype=float) - close) / (open_ - close)

    @staticmethod
    def _unnorm(x, open_, close):
        return np.asarray(x, dtype=float) * (open_ - close) + close

    def follower_finger_to_normalized(self, metres):
        """Gripper observation: follower left-finger position (m) -> 0..1."""
        g = self.config.gripper
        return self._norm(metres, g.follower_position_open, g.follower_position_close)

    def normalized_to_follower_finger(self, x):
        g = self.config.gripper
        return self._unnorm(x, g.follower_position_open, g.follower_position_close)

    def follower_joint_to_normalized(self, rad):
        g = self.config.gripper
        return self._norm(rad, g.follower_joint_open, g.follower_joint_close)

    def normalized_to_follower_joint(self, x):
        """Gripper action 0..1 -> follower gripper motor angle (rad) for JointSingleCommand."""
        g = self.config.gripper
        return self._unnorm(x, g.follower_joint_open, g.follower_joint_close)

    def driver_targets(self, command) -> list[tuple[np.ndarray, float]]:
        """A 14-D command as the xs_sdk receives it, per follower arm (left, right): the 6 arm joint targets and
        the gripper motor angle (rad). JointGroupCommand.cmd and JointSingleCommand.cmd are float32, so both
        are rounded to float32 here: the simulation and `cosmos-aloha eval` apply exactly what a driver gets
        (without it the same seed's in-process and graph episodes parted through the contacts)."""
        q = np.asarray(command, dtype=float)
        return [(q[7 * i: 7 * i + 6].astype(np.float32).astype(float),
                 float(np.float32(self.normalized_to_follower_joint(q[7 * i + 6])))) for i in range(2)]

    def leader_joint_to_normalized(self, rad):
        """Teleop action source: leader gripper motor angle (rad) -> 0..1."""
        g = self.config.gripper
        return self._norm(rad, g.leader_joint_open, g.leader_joint_close)

    def normalized_to_leader_joint(self, x):
        g = self.config.gripper
        return self._unnorm(x, g.leader_joint_open, g.leader_joint_close)

    def follower_joint_to_finger(self, rad):
        """Follower gripper motor angle -> finger position (m), linear between the open/close pairs."""
        return self.normalized_to_follower_finger(self.follower_joint_to_normalized(rad))

    def follower_finger_to_joint(self, metres):
        return self.normalized_to_follower_joint(self.follower_finger_to_normalized(metres))

    # ---- state from driver messages ---------------------------------------------------------
    def arm_state_from_joint_state(self, names, positions) -> np.ndarray:
        """7-D [6 arm rad, gripper 0..1] from one xs_sdk joint_states message (by name, not index)."""
        index = {n: i for i, n in enumerate(names)}
        try:
            arm = [positions[index[j]] for j in self.config.arm_joints]
            finger = positions[index[self.config.finger_joints[0]]]
        except (KeyError, IndexError) as exc:
            raise ValueError(f"joint_states lacks joint {exc.args[0]!r} (has {list(names)})") from None
        return np.append(np.asarray(arm, dtype=float), self.follower_finger_to_normalized(finger))


def robot_configs_matching(record: dict) -> list[str]:
    """The robot configs under config/robot/ whose gripper constants are those of a gripper_convention record,
    as robot_config arguments (robot/aloha_ros1.yaml): the fix a convention mismatch names."""
    folder = cfg.share_dir() / "config"
    out = []
    for path in sorted((folder / "robot").glob("*.yaml")):
        try:
            gripper = cfg.load(RobotConfig, path).gripper
        except cfg.ConfigError:
            continue  # a broken lab file is reported when it is used, not here
        if gripper.matches(record):
            out.append(str(path.relative_to(folder)))
    return out
