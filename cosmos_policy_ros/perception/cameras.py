"""Camera set of the robot (config/cameras.yaml): names, roles, topics and per-camera crops."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.inference.preprocessing import Crop, check_crop

DEFAULT_CAMERA_CONFIG = "cameras.yaml"


# The image_transport subtopic a compressed stream is published on (realsense2_camera, compressed_image_transport).
COMPRESSED_SUFFIX = "/compressed"


@dataclass
class CameraSpec:
    role: Literal["primary", "wrist", "secondary"]
    required: bool = True
    # raw: sensor_msgs/Image on the camera's topic. compressed: sensor_msgs/CompressedImage (JPEG, as
    # image_transport publishes it) on <topic>/compressed - ~10x fewer bytes when the policy runs on another
    # machine than the cameras (docs/deployment.md "Lab layout")
    transport: Literal["raw", "compressed"] = "raw"
    # [x0, y0, x1, y1] fractions of the frame (origin top left) the policy sees, cut out before the resize, e.g.
    # the workspace of cam_high. A checkpoint records the crop it was trained with and the nodes apply that one;
    # a crop here must equal it (else the node refuses to start). null: not stated (the checkpoint's applies).
    crop: Crop | None = None


@dataclass
class CameraConfig:
    topic_pattern: str
    cameras: dict[str, CameraSpec]
    width: int = 640
    height: int = 480
    # px: a frame with a side shorter than this is refused (1x1, 32x24: a driver fault, not an image)
    min_side_px: int = 48

    def validate(self) -> None:
        if "{name}" not in self.topic_pattern:
            raise cfg.ConfigError(f"topic_pattern: must contain {{name}}, got {self.topic_pattern!r}")
        if sum(c.role == "primary" for c in self.cameras.values()) != 1:
            raise cfg.ConfigError("cameras: exactly one camera must have role: primary")
        if self.width <= 0 or self.height <= 0:
            raise cfg.ConfigError("width/height: must be positive")
        if self.min_side_px < 1:
            raise cfg.ConfigError(f"min_side_px: must be >= 1, got {self.min_side_px}")
        for name, spec in self.cameras.items():
            if spec.crop is not None:
                check_crop(spec.crop, f"cameras.{name}.crop")

    def topic(self, name: str) -> str:
        """The camera's raw image topic."""
        return self.topic_pattern.format(name=name)

    def subscribed_topic(self, name: str) -> str:
        """The topic a policy subscribes for this camera: the raw one, or its /compressed subtopic."""
        compressed = self.cameras[name].transport == "compressed" if name in self.cameras else False
        return self.topic(name) + (COMPRESSED_SUFFIX if compressed else "")

    @property
    def names(self) -> list[str]:
        return list(self.cameras)


def load_cameras(path: str | Path = DEFAULT_CAMERA_CONFIG) -> CameraConfig:
    return cfg.load(CameraConfig, path)
