"""Recorder: every camera, joint-state, command, policy and episode topic into one rosbag2 per episode.

Raw subscriptions hand the CDR bytes straight to the bag (no deserialise/serialise round trip);
each topic is subscribed once a publisher appears, with the publishers' reliability/durability, so
best-effort cameras and latched status topics are both received. Episodes: service
/recorder/episode (EpisodeCommand start|stop|discard|label) and auto-record (both leader grippers
closed). Flushes every ``flush_period_s``: a SIGKILL keeps every message written before the last
flush. Logic lives in cosmos_policy_ros.data.session; this node only wires ROS to it. Parameters bag_dir,
image_transport, backend and auto_record (true/false) override the ``record:`` section of config/recorder.yaml
when set.
"""
from __future__ import annotations

import importlib
import io
import json
import math
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.data.auto_record import GripperCloseTrigger
from cosmos_policy_ros.data.bag_writer import OfferedQos
from cosmos_policy_ros.data.msg_types import has_type, typestore
from cosmos_policy_ros.data.recording_config import (
    COMPRESSED,
    JOINT_STATE,
    RecordedTopic,
    RecordSettings,
    load_recorder_config,
    recorded_topics,
    ros2_topic_names,
)
from cosmos_policy_ros.data.ros2_bag import ros2_cli
from cosmos_policy_ros.data.session import EpisodeSession
from cosmos_policy_ros.msg import EpisodeEvent
from cosmos_policy_ros.nodes.common import config_overrides, declare, field_types, run_node
from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.srv import EpisodeCommand


def _msg_class(msgtype: str):
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


class RecorderNode(Node):
    def __init__(self):
        super().__init__("recorder")
        overrides = config_overrides(self, {**field_types(RecordSettings, "bag_dir", "image_transport", "backend"),
                                            "auto_record": bool})  # record.auto_record.enabled
        if "auto_record" in overrides:
            overrides["auto_record"] = {"enabled": overrides["auto_record"]}
        rc = load_recorder_config(declare(self, "config", "recorder.yaml"), record_overrides=overrides)
        self.settings = rc.record
        self.robot = AlohaRobot.from_yaml(declare(self, "robot_config", "robot/aloha_interbotix.yaml"))
        cams = load_cameras(declare(self, "camera_config", "cameras.yaml"))
        self.topics = recorded_topics(self.robot, cams, self.settings)
        g = self.robot.config.gripper
        robot_info = {"config": self.robot.config.name, "source": self.robot.config.source,
                      "gripper": {k: getattr(g, k) for k in g.__dataclass_fields__}}
        backend = self.settings.backend
        if backend == "auto":
            backend = "ros2bag" if ros2_cli() else "rosbags"
        elif backend == "ros2bag" and not ros2_cli():
            raise cfg.ConfigError("record.backend: ros2bag, but no working `ros2 bag` is on PATH")
        self.backend = backend
        self.session = EpisodeSession(self.settings.bag_dir, event_topic=self.settings.event_topic,
                                      fsync=self.settings.fsync, robot_info=robot_info,
                                      default_task=declare(self, "task", ""),
                                      default_instruction=declare(self, "instruction", ""),
                                      backend=backend, ros2_topics=ros2_topic_names(self.topics),
                                      ros2_args=self.settings.ros2_bag_args, on_marker=self._publish_event)
        self.trigger = GripperCloseTrigger(g.leader_close_threshold, self.settings.auto_record.hold_s)
        self._ts = typestore()
        self._subs: dict[str, object] = {}
        self._warned: set[str] = set()
        self._leader_side = {t.name: t.source for t in self.topics if t.group == "leader"}
        # JPEG encoding (image_transport: jpeg) runs off the executor thread so joint states keep flowing;
        # Pillow releases the GIL while encoding. Pending encodes are drained before a stop.
        self._encoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="jpeg") \
            if self.settings.image_transport == "jpeg" else None
        self._pending: set[Future] = set()
        self._pending_lock = threading.Lock()

        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        # Latched: a `ros2 bag record` started for an episode still receives that episode's start marker.
        self.event_pub = self.create_publisher(EpisodeEvent, self.settings.event_topic, latched)
        self.status_pub = self.create_publisher(String, self.settings.status_topic, latched)
        self.create_service(EpisodeCommand, self.settings.service, self._on_command)
        self.create_timer(0.25, self._discover)
        self.create_timer(self.settings.flush_period_s, self._flush)
        self.create_timer(1.0 / self.settings.status_rate_hz, self._publish_status)
        self._discover()
        self._publish_status()
        self.get_logger().info(
            f"recording into {self.session.bag_dir} with {backend} ({len(self.topics)} topics, "
            f"images {self.settings.image_transport}, "
            f"auto-record {'on' if self.settings.auto_record.enabled else 'off'}, flush every "
            f"{self.settings.flush_period_s:g} s); service {self.settings.service}")

    # ---- subscriptions ------------------------------------------------------------------------
    def _discover(self) -> None:
        """Subscribe to topics whose publishers have appeared, matching their QoS."""
        for t in self.topics:
            if t.name in self._subs or t.group == "event":
                continue
            if self.backend == "ros2bag" and t.group != "leader":
                continue  # ros2 bag record subscribes itself; leader states still drive auto-record
            pubs = self.get_publishers_info_by_topic(t.name)
            if not pubs:
                continue
            types = {p.topic_type for p in pubs}
            if t.msgtype not in types:
                if t.name not in self._warned:
                    self._warned.add(t.name)
                    self.get_logger().error(f"{t.name}: publishers offer {sorted(types)}, expected {t.msgtype}; "
                                            "not recorded")
                continue
            if not has_type(t.bag_type):
                if t.name not in self._warned:
                    self._warned.add(t.name)
                    self.get_logger().error(f"{t.name}: no definition of {t.bag_type} for the bag; not recorded")
                continue
            reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in pubs)
            latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in pubs)
            depth = self.settings.image_queue_depth if t.group == "camera" else self.settings.queue_depth
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                             reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            offered = OfferedQos(reliable, latched, depth)
            self._subs[t.name] = self.create_subscription(
                _msg_class(t.msgtype), t.name, lambda raw, t=t, q=offered: self._on_raw(t, q, raw), qos, raw=True)
            self.get_logger().info(f"subscribed {t.name} ({t.msgtype}, {'reliable' if reliable else 'best effort'}"
                                   f"{', transient local' if latched else ''})")

    def _on_raw(self, topic: RecordedTopic, qos: OfferedQos, raw: bytes) -> None:
        t_ns = self.get_clock().now().nanoseconds
        if topic.group == "leader" and self.settings.auto_record.enabled:
            self._auto_record(topic, t_ns, raw)
        if not self.session.recording:
            return
        if topic.encode_jpeg:
            fut = self._encoder.submit(self._encode_and_write, topic, qos, t_ns, raw)
            with self._pending_lock:
                self._pending.add(fut)
            fut.add_done_callback(self._encoded)
            return
        self.session.write(topic.bag_topic, topic.bag_type, t_ns, raw, qos)

    def _encode_and_write(self, topic: RecordedTopic, qos: OfferedQos, t_ns: int, raw: bytes) -> None:
        self.session.write(topic.bag_topic, topic.bag_type, t_ns, self._to_jpeg(raw), qos)

    def _encoded(self, fut: Future) -> None:
        with self._pending_lock:
            self._pending.discard(fut)
        if fut.exception() is not None:
            self.get_logger().error(f"jpeg encoding failed: {fut.exception()}")

    def _drain(self) -> None:
        with self._pending_lock:
            pending = list(self._pending)
        for fut in pending:
            fut.exception(timeout=10)

    def _to_jpeg(self, raw: bytes) -> bytes:
        from PIL import Image as PILImage

        from cosmos_policy_ros.perception.image_codec import image_to_rgb

        img = self._ts.deserialize_cdr(raw, "sensor_msgs/msg/Image")
        buf = io.BytesIO()
        PILImage.fromarray(image_to_rgb(img)).save(buf, format="JPEG", quality=self.settings.jpeg_quality)
        import numpy as np

        data = np.frombuffer(buf.getvalue(), np.uint8)
        msg = self._ts.types[COMPRESSED](img.header, "rgb8; jpeg compressed bgr8", data)
        return self._ts.serialize_cdr(msg, COMPRESSED)

    def _auto_record(self, topic: RecordedTopic, t_ns: int, raw: bytes) -> None:
        js = self._ts.deserialize_cdr(raw, JOINT_STATE)
        names = list(js.name)
        gripper = self.robot.config.gripper_joint
        if gripper not in names:
            return
        fire = self.trigger.update(topic.source, t_ns * 1e-9, float(js.position[names.index(gripper)]))
        if fire and not self.session.recording:
            self.get_logger().info("both leader grippers closed: starting an episode")
            self._run_command("start", kind=self.settings.auto_record.kind)

    # ---- episodes -------------------------------------------------------------------------------
    def _run_command(self, command: str, **kw):
        if command in ("stop", "discard", "label"):
            self._drain()  # images received before the command belong to the episode
        result = self.session.command(command, self.get_clock().now().nanoseconds, **kw)
        log = self.get_logger().info if result.success else self.get_logger().warning
        log(f"{command}: {result.message}")
        if command in ("start", "stop") and result.success:
            self.trigger.disarm()  # a still-closed pair of grippers must open before the next auto start
        self._publish_status()
        return result

    def _on_command(self, request, response):
        value = float(request.value)
        result = self._run_command(request.command, kind=request.kind, outcome=request.outcome,
                                   value=value if math.isfinite(value) else math.nan,
                                   task=request.task, instruction=request.instruction)
        response.success, response.message = result.success, result.message
        response.episode_index = result.episode_index
        return response

    def _publish_event(self, f: dict) -> None:
        msg = EpisodeEvent(event=f["event"], episode_index=f["episode_index"], kind=f["kind"], outcome=f["outcome"],
                           value=float(f["value"]), task=f["task"], instruction=f["instruction"])
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(f["stamp_ns"], 1_000_000_000)
        self.event_pub.publish(msg)

    def _flush(self) -> None:
        self.session.flush()
        limit = self.settings.auto_record.max_episode_s
        cur = self.session.current
        if limit > 0 and cur is not None and self.get_clock().now().nanoseconds - cur.start_ns > limit * 1e9:
            self._run_command("stop")

    def _publish_status(self) -> None:
        s = self.session
        w = s.writer
        status = {"state": "recording" if s.recording else "idle",
                  "episode": s.current.index if s.current else None,
                  "bag": str(w.path) if w else "",
                  "received": dict(s.received) if w else {},
                  "flushed": dict(w.flushed_counts) if w else {},
                  "flushes": w.flushes if w else 0,
                  "subscribed": sorted(self._subs),
                  "episodes": len([e for e in s.manifest.episodes if e.status == "complete"]),
                  "wall_time": time.time()}
        self.status_pub.publish(String(data=json.dumps(status)))

    def close(self) -> None:
        self._drain()
        self.session.close(self.get_clock().now().nanoseconds)
        if self._encoder is not None:
            self._encoder.shutdown(wait=True)


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args, name="recorder")


if __name__ == "__main__":
    sys.exit(main())
