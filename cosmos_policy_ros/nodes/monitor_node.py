"""Observation monitor: rate and age of every camera and joint-state stream, on /diagnostics.

What an operator watches before trusting a policy: is every camera alive, at what rate, how old
is the newest frame. Publishes diagnostic_msgs/DiagnosticArray at 1 Hz and logs one line.
"""
from __future__ import annotations

import sys
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState

from cosmos_policy_ros.nodes.common import declare, run_node
from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.perception.stream_stats import StreamStats
from cosmos_policy_ros.robot.aloha import AlohaRobot


class MonitorNode(Node):
    def __init__(self):
        super().__init__("observation_monitor")
        robot = AlohaRobot.from_yaml(declare(self, "robot_config", "robot/aloha_interbotix.yaml"))
        cams = load_cameras(declare(self, "camera_config", "cameras.yaml"))
        self.stale_after_s = float(declare(self, "stale_after_s", 0.5))
        self.streams: dict[str, StreamStats] = {}
        self.required: set[str] = set()
        for name, spec in cams.cameras.items():
            self._watch(cams.topic(name), Image, spec.required)
        for side in robot.config.arms:
            self._watch(robot.follower_topic(side, "joint_states"), JointState, True)
        self.pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(float(declare(self, "period_s", 1.0)), self._report)
        self.get_logger().info(f"watching {len(self.streams)} streams")

    def _watch(self, topic: str, msg_type, required: bool) -> None:
        stats = self.streams[topic] = StreamStats(topic)
        if required:
            self.required.add(topic)
        self.create_subscription(msg_type, topic, lambda _m, s=stats: s.tick(time.monotonic()),
                                 qos_profile_sensor_data)

    def _report(self) -> None:
        now = time.monotonic()
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        parts = []
        for topic, stats in self.streams.items():
            r = stats.report(now)
            fresh = r.age_s is not None and r.age_s <= self.stale_after_s
            level = DiagnosticStatus.OK if fresh else (
                DiagnosticStatus.ERROR if topic in self.required else DiagnosticStatus.WARN)
            msg = "ok" if fresh else ("no data" if r.age_s is None else f"stale {r.age_s:.2f}s")
            arr.status.append(DiagnosticStatus(
                level=level, name=f"observation: {topic}", message=msg, hardware_id="aloha",
                values=[KeyValue(key="rate_hz", value=f"{r.rate_hz:.1f}"), KeyValue(key="count", value=str(r.count)),
                        KeyValue(key="age_s", value="" if r.age_s is None else f"{r.age_s:.3f}"),
                        KeyValue(key="max_gap_s", value=f"{r.max_gap_s:.3f}")]))
            parts.append(f"{topic.strip('/').split('/')[0]}={r.rate_hz:.0f}Hz" + ("" if fresh else "!"))
        self.pub.publish(arr)
        self.get_logger().info(" ".join(parts))


def main(args: list[str] | None = None) -> int:
    return run_node(MonitorNode, args, name="observation_monitor")


if __name__ == "__main__":
    sys.exit(main())
