"""Typed recorder/converter settings (config/recorder.yaml) and the table of topics a recording holds.

The topic table is derived from the robot and camera configs, so the recorder node, the docs'
`ros2 bag record -s mcap ...` line and the converter agree on names by construction.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.perception.cameras import CameraConfig
from cosmos_policy_ros.robot.aloha import AlohaRobot

DEFAULT_RECORDER_CONFIG = "recorder.yaml"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
GROUP = "interbotix_xs_msgs/msg/JointGroupCommand"
SINGLE = "interbotix_xs_msgs/msg/JointSingleCommand"
EVENT = "cosmos_policy_ros/msg/EpisodeEvent"


@dataclass
class AutoRecord:
    enabled: bool = True
    hold_s: float = 0.3
    max_episode_s: float = 0.0
    kind: Literal["teleop", "policy"] = "teleop"


@dataclass
class RecordSettings:
    bag_dir: str = "bags"
    backend: Literal["auto", "rosbags", "ros2bag"] = "auto"
    ros2_bag_args: list[str] = field(default_factory=list)
    flush_period_s: float = 0.5
    fsync: bool = False
    image_transport: Literal["raw", "compressed", "jpeg"] = "raw"
    jpeg_quality: int = 90
    cameras: list[str] = field(default_factory=list)
    follower_joint_states: bool = True
    leader_joint_states: bool = True
    commands: bool = True
    extra_topics: dict[str, str] = field(default_factory=dict)
    event_topic: str = "/cosmos/episode_event"
    service: str = "/recorder/episode"
    status_topic: str = "/recorder/status"
    image_queue_depth: int = 10
    queue_depth: int = 200
    status_rate_hz: float = 2.0
    auto_record: AutoRecord = field(default_factory=AutoRecord)


@dataclass
class ConvertSettings:
    rate_hz: float = 50.0
    cameras: list[str] = field(default_factory=list)
    time_source: Literal["receive", "header"] = "receive"
    max_image_age_s: float = 0.2
    max_state_age_s: float = 0.1
    action_source: Literal["auto", "leader", "commands"] = "auto"
    image_compression: Literal["gzip", "lzf", "none"] = "gzip"
    value_gamma: float = 0.998


@dataclass
class RecorderConfig:
    record: RecordSettings = field(default_factory=RecordSettings)
    convert: ConvertSettings = field(default_factory=ConvertSettings)

    def validate(self) -> None:
        r, c = self.record, self.convert
        if r.flush_period_s <= 0 or r.status_rate_hz <= 0:
            raise cfg.ConfigError("record.flush_period_s and record.status_rate_hz must be positive")
        if not 1 <= r.jpeg_quality <= 100:
            raise cfg.ConfigError(f"record.jpeg_quality: expected 1..100, got {r.jpeg_quality}")
        if r.image_queue_depth < 1 or r.queue_depth < 1:
            raise cfg.ConfigError("record.image_queue_depth and record.queue_depth must be >= 1")
        for topic, msgtype in r.extra_topics.items():
            if not topic.startswith("/") or msgtype.count("/") != 2:
                raise cfg.ConfigError(f"record.extra_topics.{topic}: expected '/topic: pkg/msg/Type', got {msgtype!r}")
        if c.rate_hz <= 0 or c.max_image_age_s <= 0 or c.max_state_age_s <= 0:
            raise cfg.ConfigError("convert.rate_hz, max_image_age_s and max_state_age_s must be positive")
        if not 0 < c.value_gamma <= 1:
            raise cfg.ConfigError(f"convert.value_gamma: expected 0 < gamma <= 1, got {c.value_gamma}")


def load_recorder_config(path: str | Path = DEFAULT_RECORDER_CONFIG,
                         record_overrides: dict | None = None) -> RecorderConfig:
    """Load the YAML; ``record_overrides`` (node parameters) replace keys of its record section."""
    data = cfg.read_yaml(path)
    if record_overrides:
        record = dict(data.get("record") or {})
        for k, v in record_overrides.items():
            record[k] = {**(record.get(k) or {}), **v} if isinstance(v, dict) else v
        data["record"] = record
    src = str(cfg.config_path(path))
    rc = cfg.from_dict(RecorderConfig, data, source=src)
    try:
        rc.validate()
    except cfg.ConfigError as exc:
        raise cfg.ConfigError(f"{src}: {exc}") from None
    return rc


@dataclass(frozen=True)
class RecordedTopic:
    name: str
    msgtype: str
    group: str           # camera | follower | leader | command | extra | event
    source: str = ""     # camera name or arm side
    encode_jpeg: bool = False   # jpeg mode: subscribe raw ``name`` but record ``name + '/compressed'``

    @property
    def bag_topic(self) -> str:
        return self.name + "/compressed" if self.encode_jpeg else self.name

    @property
    def bag_type(self) -> str:
        return COMPRESSED if self.encode_jpeg else self.msgtype


def recorded_topics(robot: AlohaRobot, cameras: CameraConfig, settings: RecordSettings) -> list[RecordedTopic]:
    """Every topic a recording subscribes to, in a stable order."""
    out: list[RecordedTopic] = []
    names = settings.cameras or cameras.names
    unknown = [c for c in names if c not in cameras.cameras]
    if unknown:
        raise cfg.ConfigError(f"record.cameras: unknown camera {unknown[0]!r} (cameras.yaml has {cameras.names})")
    for cam in names:
        t = cameras.topic(cam)
        if settings.image_transport == "compressed":
            out.append(RecordedTopic(t + "/compressed", COMPRESSED, "camera", cam))
        else:
            out.append(RecordedTopic(t, IMAGE, "camera", cam, encode_jpeg=settings.image_transport == "jpeg"))
    for side in robot.config.arms:
        if settings.follower_joint_states:
            out.append(RecordedTopic(robot.follower_topic(side, "joint_states"), JOINT_STATE, "follower", side))
        if settings.leader_joint_states:
            out.append(RecordedTopic(robot.leader_topic(side, "joint_states"), JOINT_STATE, "leader", side))
        if settings.commands:
            out.append(RecordedTopic(robot.follower_topic(side, "joint_group"), GROUP, "command", side))
            out.append(RecordedTopic(robot.follower_topic(side, "joint_single"), SINGLE, "command", side))
    for topic, msgtype in settings.extra_topics.items():
        out.append(RecordedTopic(topic, msgtype, "extra"))
    out.append(RecordedTopic(settings.event_topic, EVENT, "event"))
    return out


def ros2_topic_names(topics: list[RecordedTopic]) -> list[str]:
    """Topics `ros2 bag record` subscribes to (jpeg mode is the package recorder's own: raw there)."""
    return [t.name for t in topics]


def ros2_bag_record_command(topics: list[RecordedTopic], output: str = "bags/episode_0000",
                            extra_args: list[str] | None = None) -> str:
    """The equivalent `ros2 bag record` line for a robot PC with the ROS 2 CLI (MCAP storage)."""
    return shlex.join(["ros2", "bag", "record", "-s", "mcap", "-o", output, *(extra_args or []),
                       *ros2_topic_names(topics)])
