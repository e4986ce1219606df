"""Typed view of config/sim/world.yaml and config/sim/tasks.yaml (sim-only numbers)."""
from __future__ import annotations

from dataclasses import dataclass, field

from cosmos_policy_ros import config as cfg

DEFAULT_WORLD_CONFIG = "sim/world.yaml"
DEFAULT_TASKS_CONFIG = "sim/tasks.yaml"
SIDES = ("left", "right")


@dataclass
class PhysicsConfig:
    timestep: float = 0.002
    substeps: int = 10
    # N·m (N for the fingers): joint friction while the joint's motor has no torque. gym-aloha's joints carry
    # 30-60 N·m of friction to steady its position actuators, which would hold an arm without torque in place;
    # a real vx300s without torque falls.
    torque_off_friction: float = 0.5


@dataclass
class RenderConfig:
    width: int = 640
    height: int = 480
    shadows: bool = False
    reflection: bool = False
    msaa_samples: int = 0
    skybox: bool = False
    znear: float = 0.005


@dataclass
class CameraMount:
    """Where a simulated camera sits (MuJoCo body, pose, field of view); ROS topics are perception.cameras."""
    parent: str
    pos: tuple[float, float, float]
    fovy: float
    quat: tuple[float, float, float, float] | None = None
    xyaxes: tuple[float, float, float, float, float, float] | None = None


@dataclass
class SimGripperConfig:
    finger_open: float
    finger_close: float
    reset_finger: float = 0.02239


@dataclass
class EffortConfig:
    torque_constant_nm_per_a: list[float]
    gripper_torque_constant_nm_per_a: float
    gripper_horn_radius_m: float


@dataclass
class WorldConfig:
    physics: PhysicsConfig
    render: RenderConfig
    scenes: dict[str, str]
    arm_prefix: dict[str, str]
    gripper: SimGripperConfig
    effort: EffortConfig
    cameras: dict[str, CameraMount]
    gl_backends: list[str] = field(default_factory=lambda: ["egl", "osmesa"])
    remove_cameras: list[str] = field(default_factory=list)
    grasp_site_offset: tuple[float, float, float] = (0.13, 0.0, 0.0)

    def validate(self) -> None:
        if self.physics.timestep <= 0 or self.physics.substeps < 1:
            raise cfg.ConfigError("physics: timestep must be > 0 and substeps >= 1")
        if self.render.width < 1 or self.render.height < 1:
            raise cfg.ConfigError("render: width and height must be >= 1")
        if set(self.arm_prefix) != set(SIDES):
            raise cfg.ConfigError("arm_prefix: needs exactly the keys left and right")
        if self.gripper.finger_open == self.gripper.finger_close:
            raise cfg.ConfigError("gripper.finger_open: must differ from gripper.finger_close")
        if len(self.effort.torque_constant_nm_per_a) != 6 or min(self.effort.torque_constant_nm_per_a) <= 0:
            raise cfg.ConfigError("effort.torque_constant_nm_per_a: expected 6 positive numbers")
        for name, cam in self.cameras.items():
            if (cam.quat is None) == (cam.xyaxes is None):
                raise cfg.ConfigError(f"cameras.{name}: give exactly one of quat or xyaxes")
            if not 0 < cam.fovy < 180:
                raise cfg.ConfigError(f"cameras.{name}.fovy: must be in (0, 180) degrees")

    @property
    def control_dt(self) -> float:
        return self.physics.timestep * self.physics.substeps


@dataclass
class ObjectRange:
    joint: str
    x: tuple[float, float]
    y: tuple[float, float]
    z: tuple[float, float]


@dataclass
class TaskConfig:
    episode_steps: int
    objects: dict[str, ObjectRange]


def load_world_config(path=DEFAULT_WORLD_CONFIG) -> WorldConfig:
    return cfg.load(WorldConfig, path)


def load_tasks_config(path=DEFAULT_TASKS_CONFIG) -> dict[str, TaskConfig]:
    data = cfg.read_yaml(path)
    src = str(cfg.config_path(path))
    return {name: cfg.from_dict(TaskConfig, spec, source=src, prefix=name) for name, spec in data.items()}
