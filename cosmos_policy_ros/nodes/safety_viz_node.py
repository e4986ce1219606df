"""Safety markers for RViz: what the collision guard checks at the measured joints, and where chunks go.

Thin shell around robot/collision_markers.py (the shapes, tested without ROS). A node of its own, so the
executor's 50 Hz loop does none of this work; the graph starts it with ``rviz:=true`` (config/graph.yaml).

Topics (names in cosmos_policy_ros/topics.py; rename by remapping):
  sub  follower joint states (robot config)        sensor_msgs/JointState (sensor-data QoS)
  sub  ACTION_CHUNK    /cosmos/action_chunk        cosmos_policy_ros/ActionChunk: gripper-tip paths
  sub  PLAN_RESULT     /cosmos/plan_result         cosmos_policy_ros/PlanResult: the chosen chunk by score
  pub  SAFETY_MARKERS  /cosmos/safety/markers      visualization_msgs/MarkerArray at rate_hz, once both arms
                                                   have reported (a DELETEALL first, then every shape)
Parameters: robot_config (its collision section is the guard's geometry and margins), rate_hz (default 10),
frame_id (default "world": the fixed frame of rviz/aloha.rviz).

Run: python -m cosmos_policy_ros.nodes.safety_viz_node
"""
from __future__ import annotations

import sys

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from cosmos_policy_ros import topics
from cosmos_policy_ros.msg import ActionChunk, PlanResult
from cosmos_policy_ros.nodes.chunk_msgs import chunk_from_msg
from cosmos_policy_ros.nodes.common import declare, run_node
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.collision import CollisionModel
from cosmos_policy_ros.robot.collision_markers import SafetyMarkers, Shape
from cosmos_policy_ros.robot.scheduler import ChunkError

_TYPES = {"cylinder": Marker.CYLINDER, "sphere_list": Marker.SPHERE_LIST, "cube": Marker.CUBE,
          "line_list": Marker.LINE_LIST, "line_strip": Marker.LINE_STRIP, "text": Marker.TEXT_VIEW_FACING}


def to_marker(shape: Shape, header: Header) -> Marker:
    """One Shape as an RViz marker (ADD, no lifetime: the next array's DELETEALL replaces it)."""
    m = Marker(header=header, ns=shape.ns, id=shape.id, type=_TYPES[shape.kind], action=Marker.ADD, text=shape.text)
    m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in shape.position)
    o = m.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in shape.orientation)
    m.scale.x, m.scale.y, m.scale.z = (float(v) for v in shape.scale)
    m.color = ColorRGBA(r=float(shape.color[0]), g=float(shape.color[1]), b=float(shape.color[2]),
                        a=float(shape.color[3]))
    m.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in shape.points]
    return m


class SafetyVizNode(Node):
    def __init__(self):
        super().__init__("safety_viz")
        self.robot = AlohaRobot.from_yaml(declare(self, "robot_config", "robot/aloha_interbotix.yaml"))
        rate_hz = float(declare(self, "rate_hz", 10.0))
        if not rate_hz > 0:
            raise ValueError(f"parameter rate_hz: must be positive, got {rate_hz}")
        self.frame_id = str(declare(self, "frame_id", "world"))
        rc = self.robot.config
        self.shapes = SafetyMarkers(CollisionModel.from_config(rc.collision, rc.arm_joints))
        self.arms: list[np.ndarray | None] = [None] * len(rc.arms)
        self.chunk: list[Shape] = []
        self.plan: list[Shape] = []
        for i, side in enumerate(rc.arms):
            self.create_subscription(JointState, self.robot.follower_topic(side, "joint_states"),
                                     lambda m, i=i: self._on_joint_state(i, m), qos_profile_sensor_data)
        self.create_subscription(ActionChunk, topics.ACTION_CHUNK, self._on_chunk, 10)
        self.create_subscription(PlanResult, topics.PLAN_RESULT, self._on_plan, 10)
        self.pub = self.create_publisher(MarkerArray, topics.SAFETY_MARKERS, 10)
        self.create_timer(1.0 / rate_hz, self._publish)
        self.get_logger().info(f"safety markers on {topics.SAFETY_MARKERS} at {rate_hz:g} Hz in frame "
                               f"'{self.frame_id}' ({len(rc.arms)} arms, {len(self.shapes.model.capsules.radius)} "
                               "capsules)")

    def _on_joint_state(self, side: int, msg: JointState) -> None:
        try:
            self.arms[side] = self.robot.arm_state_from_joint_state(msg.name, msg.position)
        except ValueError as exc:
            self.get_logger().error(f"joint state ignored: {exc}", throttle_duration_sec=5.0)

    def _actions(self, msg: ActionChunk) -> np.ndarray | None:
        try:
            return chunk_from_msg(msg, self.robot.joint_names).actions
        except ChunkError as exc:
            self.get_logger().warning(f"chunk seq {msg.sequence} not drawn: {exc}", throttle_duration_sec=5.0)
            return None

    def _on_chunk(self, msg: ActionChunk) -> None:
        actions = self._actions(msg)
        if actions is not None:
            self.chunk = self.shapes.chunk_paths(actions)

    def _on_plan(self, msg: PlanResult) -> None:
        actions = self._actions(msg.chosen)
        if actions is not None:
            self.plan = self.shapes.plan(actions, list(msg.candidate_scores), int(msg.chosen_index),
                                         fell_back=bool(msg.fell_back_to_direct))

    def _publish(self) -> None:
        if any(q is None for q in self.arms):
            return
        q14 = np.concatenate(self.arms)
        header = Header(frame_id=self.frame_id, stamp=self.get_clock().now().to_msg())
        markers = [Marker(header=Header(frame_id=self.frame_id, stamp=Time()), action=Marker.DELETEALL)]
        markers += [to_marker(s, header) for s in (*self.shapes.scene(q14), *self.chunk, *self.plan)]
        self.pub.publish(MarkerArray(markers=markers))


def main(args: list[str] | None = None) -> int:
    return run_node(SafetyVizNode, args, name="safety_viz")


if __name__ == "__main__":
    sys.exit(main())
