"""Test-wide setup: DDS stays on loopback and every pytest process gets its own ROS domain.

This runs before any test module imports rclpy, so even the first DomainParticipant of a run
never multicasts off the machine. Child processes inherit the environment.
"""
from __future__ import annotations

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 90))
os.environ.setdefault("MUJOCO_GL", "egl")

from cosmos_policy_ros.ros_env import apply_local_ros_env  # noqa: E402

apply_local_ros_env(int(os.environ["ROS_DOMAIN_ID"]))

import pytest  # noqa: E402

pytest_plugins = ["model_fixtures"]


@pytest.fixture
def ros_context():
    """An initialised rclpy context for one test, shut down afterwards."""
    rclpy = pytest.importorskip("rclpy")
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)

