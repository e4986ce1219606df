"""Environment for ROS 2 processes started by this package's tools (tests, CLI, sim demo).

DDS discovery multicasts on every interface unless told otherwise, and ROS_LOCALHOST_ONLY is
ignored by Kilted, so local runs pin discovery to loopback. Real-robot graphs keep whatever
environment the lab gives them: ``local_ros_env(force=False)`` only fills in unset variables.
"""
from __future__ import annotations

import os
from pathlib import Path

from cosmos_policy_ros.config import share_dir


def shm_profile_path() -> Path:
    return share_dir() / "config" / "dds" / "fastdds_local_shm.xml"


def local_ros_env(domain_id: int | None = None, base: dict | None = None, force: bool = True) -> dict:
    """A copy of ``base`` (default: os.environ) that keeps DDS on this machine.

    force=True (tests, sim demo): discovery range LOCALHOST always. force=False: only set
    variables the caller has not set.
    """
    env = dict(os.environ if base is None else base)
    setter = env.__setitem__ if force else env.setdefault
    setter("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain_id is not None:
        setter("ROS_DOMAIN_ID", str(domain_id))
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(shm_profile_path()))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def apply_local_ros_env(domain_id: int | None = None) -> None:
    """Apply :func:`local_ros_env` to this process (call before rclpy.init)."""
    os.environ.update(local_ros_env(domain_id))
