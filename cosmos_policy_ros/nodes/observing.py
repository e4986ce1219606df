"""Shared wiring of the policy and planner nodes: observation subscriptions and the worker thread.

Subscriptions only convert and store samples (ObservationCache); all model work runs in one worker
thread, never in a callback, so a slow inference never blocks message intake. A camera is read raw
(sensor_msgs/Image) or as image_transport's JPEG (<topic>/compressed), per config/cameras.yaml; either
passes the same frame checks. Ages are judged on message stamps or, where the sources' clock is not this
host's, on arrival (config/policy.yaml observation_time); chunks carry the message stamps either way.
The worker computes a chunk when the executor asks (topics.CHUNK_REQUEST) or back to back, and refuses —
saying why on topics.POLICY_STATUS and in a throttled log line — whenever the observation is not fresh.
Lockstep (parameter lockstep:=true, the graph's lockstep argument): simulated time stands still until the
chunk arrives, so the worker waits until every stream's newest message is stamped exactly at the request's
time (the lockstep sim renders the cameras for it) and observes that step, as the in-process evaluation
does; the chunk's inference_latency_s is then the wall-clock compute time (its simulated latency is 0).
"""
from __future__ import annotations

import threading
import time

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32, Header, String

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros import topics
from cosmos_policy_ros.deploy.bundle import build_engine, check_camera_crops, check_gripper_convention, resolve_bundle
from cosmos_policy_ros.deploy.policy_config import (
    DEFAULT_POLICY_CONFIG,
    PolicyNodeConfig,
    apply_torch_threads,
    load_policy_config,
)
from cosmos_policy_ros.msg import ActionChunk
from cosmos_policy_ros.nodes.chunk_msgs import seconds, time_msg
from cosmos_policy_ros.nodes.common import config_overrides, declare, field_types
from cosmos_policy_ros.nodes.log_throttle import ThrottledLog
from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.perception.clock_offset import StampOffsets, offset_line
from cosmos_policy_ros.perception.frame_check import FrameChecker
from cosmos_policy_ros.perception.image_codec import (
    ImageFormatError,
    compressed_size,
    compressed_to_rgb,
    image_to_rgb,
)
from cosmos_policy_ros.perception.observation_cache import NotReady, ObservationCache
from cosmos_policy_ros.robot.aloha import AlohaRobot


class ObservingNode(Node):
    """Base node: loads robot/camera/policy configs and the checkpoint, feeds the cache, runs the worker."""

    def __init__(self, name: str, checkpoint_param: str = "checkpoint"):
        super().__init__(name)
        self.pcfg = load_policy_config(declare(self, "config", DEFAULT_POLICY_CONFIG),
                                       config_overrides(self, field_types(PolicyNodeConfig, "trigger")))
        self.lockstep = declare(self, "lockstep", False)
        if self.lockstep:
            if self.pcfg.trigger != "request":
                raise cfg.ConfigError(f"lockstep:=true needs trigger request (the executor asks at each step it "
                                      f"waits at), got trigger {self.pcfg.trigger}")
            self.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        self._want_ns: int | None = None  # lockstep: the step the executor asked at
        self._answered_ns: int | None = None  # lockstep: the step the last chunk was computed for
        self._seen_ns: dict[str, int] = {}  # lockstep: stream -> stamp (ns) of its newest message
        self.robot = AlohaRobot.from_yaml(declare(self, "robot_config", "robot/aloha_interbotix.yaml"))
        self.cams = load_cameras(declare(self, "camera_config", "cameras.yaml"))
        declare(self, "task", "")
        self.bundle = resolve_bundle(declare(self, checkpoint_param, ""), declare(self, "model_config", ""),
                                     declare(self, "stats", ""), declare(self, "t5_embeddings", ""),
                                     declare(self, "tokenizer", ""))
        self.check_bundle(self.bundle)
        self.instruction = declare(self, "instruction", "") or self.bundle.instruction
        self.period_s = float(self.bundle.action_period_s or self.pcfg.action_period_s)
        apply_torch_threads(self.pcfg.torch_threads)
        self.engine = self.load_engine()
        if self.pcfg.compile != "off":
            for model in {id(m): m for m in (self.engine.model, self.engine.planning_model)}.values():
                model.compile_net(self.pcfg.compile)
        model_cams = list(self.engine.layout.cameras)
        missing = [c for c in model_cams if c not in self.cams.cameras]
        if missing:
            raise cfg.ConfigError(f"the model needs camera(s) {missing}, not in the camera config")
        self.text_check()
        self.cache = ObservationCache(model_cams, model_cams, self.pcfg.max_obs_age_s, self.pcfg.max_skew_s,
                                      tuple(self.robot.config.arms), max_future_s=self.pcfg.max_future_s)
        self.frames = FrameChecker(self.cams.width, self.cams.height, self.cams.min_side_px)
        self.offsets = StampOffsets([*model_cams, *self.robot.config.arms])
        log = self.get_logger()
        self._refusal_log = ThrottledLog(lambda line: log.warning(line), self.pcfg.refuse_log_period_s)
        self._input_log = ThrottledLog(lambda line: log.error(line), self.pcfg.refuse_log_period_s)
        for cam in model_cams:
            compressed = self.cams.cameras[cam].transport == "compressed"
            self.create_subscription(CompressedImage if compressed else Image, self.cams.subscribed_topic(cam),
                                     lambda m, c=cam, z=compressed: self._on_image(c, m, z), qos_profile_sensor_data)
        for side in self.robot.config.arms:
            self.create_subscription(JointState, self.robot.follower_topic(side, "joint_states"),
                                     lambda m, s=side: self._on_joints(s, m), qos_profile_sensor_data)
        self.create_subscription(Header, topics.CHUNK_REQUEST, self._on_request, 10)
        self.chunk_pub = self.create_publisher(ActionChunk, topics.ACTION_CHUNK, 10)
        self.value_pub = self.create_publisher(Float32, topics.POLICY_VALUE, 10)
        self.status_pub = self.create_publisher(String, topics.POLICY_STATUS, 10)
        self.sequence = 0
        self.published = 0
        self.refusals = 0
        self._request = threading.Event()
        self._running = True
        if self.pcfg.warmup:
            self.warmup()
        self._worker = threading.Thread(target=self._work, name=f"{name}_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"{self.bundle.model_name} ({self.bundle.checkpoint_id}) ready: cameras {model_cams}, "
            f"instruction {self.instruction!r}, action period {self.period_s * 1000:.0f} ms, "
            f"trigger {self.pcfg.trigger}, cameras on {[self.cams.subscribed_topic(c) for c in model_cams]}, "
            f"observation time: {self.pcfg.observation_time}")

    # ---- overridden by the policy / planner ---------------------------------------------------
    def load_engine(self):
        return build_engine(self.bundle, device=self.pcfg.device or None)

    def compute(self, obs: dict, seed: int):
        """Return (ActionChunk message, value) for one observation."""
        raise NotImplementedError

    # ---- common --------------------------------------------------------------------------------
    def check_bundle(self, bundle) -> None:
        """Refuse a checkpoint trained with other gripper constants than the robot config (ConfigError, one
        line); log what can only be assumed (no convention recorded) or will be clipped."""
        for line in check_gripper_convention(bundle, self.robot):
            self.get_logger().warning(line)
        check_camera_crops(bundle, {n: c.crop for n, c in self.cams.cameras.items()}, "camera_config")

    def text_check(self) -> None:
        try:
            self.engine.text.batch([self.instruction])
        except (KeyError, ValueError) as exc:
            raise cfg.ConfigError(f"instruction {self.instruction!r}: {exc}") from None

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def warmup_observation(self) -> dict:
        """A blank observation at the start pose: exercises every model path without real input."""
        import numpy as np

        size = self.engine.cfg.layout.image_size
        return {"images": {c: np.zeros((size, size, 3), np.uint8) for c in self.engine.layout.cameras},
                "proprio": self.robot.pose14("start"), "instruction": self.instruction}

    def warmup(self) -> None:
        t0 = time.perf_counter()
        self.compute(self.warmup_observation(), self.pcfg.seed)
        self.get_logger().info(f"warm-up inference {time.perf_counter() - t0:.2f} s")

    def _times(self, stream: str, msg) -> tuple[float, float, float]:
        """(time its age is judged by, message stamp, now): the stamp, or the arrival time (observation_time)."""
        stamp, now = seconds(msg.header.stamp), self.now_s()
        if self.lockstep:  # one simulated clock: no offsets to find; the stamp is the step's time
            return stamp, stamp, stamp
        found = self.offsets.add(stream, stamp, now)
        if found is not None:
            line = offset_line(found, self.pcfg.observation_time, self.pcfg.max_future_s, self.offsets.samples)
            if line:
                self.get_logger().warning(line)
        return (now if self.pcfg.observation_time == "arrival" else stamp), stamp, now

    def _on_image(self, cam: str, msg, compressed: bool = False) -> None:
        topic = self.cams.subscribed_topic(cam)
        try:
            height, width = compressed_size(msg) if compressed else (int(msg.height), int(msg.width))
            verdict = self.frames.check(cam, height, width)
            if not verdict.usable:
                self._input_log(f"{topic}: {verdict.line}", f"frame {cam}")
                return
            if verdict.line:
                self.get_logger().info(verdict.line)
            rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
        except ImageFormatError as exc:
            self._input_log(f"{topic}: {exc}", f"format {cam}")
            return
        t, stamp, now = self._times(cam, msg)
        self.cache.put_image(cam, t, rgb, now, msg_stamp=stamp)
        self._saw(cam, msg)

    def _on_joints(self, side: str, msg) -> None:
        try:
            q7 = self.robot.arm_state_from_joint_state(list(msg.name), list(msg.position))
            t, stamp, now = self._times(side, msg)
            self.cache.put_arm(side, t, q7, now, msg_stamp=stamp)
            self._saw(side, msg)
        except ValueError as exc:
            self._input_log(f"{side} joint_states: {exc}", f"joints {side}")

    def _saw(self, stream: str, msg) -> None:
        if self.lockstep:  # after the cache has it: the worker may build as soon as the stamps match
            self._seen_ns[stream] = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    def _on_request(self, msg) -> None:
        if self.lockstep:
            ns = msg.stamp.sec * 1_000_000_000 + msg.stamp.nanosec
            if ns == self._answered_ns:
                return  # a repeated request for a step already answered (one chunk per step: seeds stay in step)
            self._want_ns = ns
        self._request.set()

    def _at_requested_step(self) -> bool:
        """Lockstep: every stream's newest message is stamped at the requested step (not yet: wait)."""
        want = self._want_ns
        streams = [*self.engine.layout.cameras, *self.robot.config.arms]
        return want is not None and all(self._seen_ns.get(s) == want for s in streams)

    def _work(self) -> None:
        while self._running and self.context.ok():
            if self.pcfg.trigger == "request" and not self._request.wait(0.1):
                continue
            if self.lockstep and (self._want_ns == self._answered_ns or not self._at_requested_step()):
                if self._want_ns == self._answered_ns:
                    self._request.clear()
                else:
                    time.sleep(0.002)
                continue
            asked_ns = self._want_ns
            obs = self.cache.build(asked_ns * 1e-9 if self.lockstep else self.now_s())
            if isinstance(obs, NotReady):
                self._refuse(obs.reason)
                time.sleep(0.05)
                continue
            self._request.clear()
            seed = self.pcfg.seed + (self.sequence if self.pcfg.seed_mode == "increment" else 0)
            t0 = time.perf_counter()
            try:
                msg, value = self.compute({"images": obs.images, "proprio": obs.qpos,
                                           "instruction": self.instruction}, seed)
            except Exception as exc:  # noqa: BLE001 - one line, keep serving
                self.get_logger().error(f"inference failed: {type(exc).__name__}: {exc}")
                time.sleep(0.5)
                continue
            # the message stamp: the robot PC's clock, on which the executor plays the chunk
            msg.header.stamp = msg.trajectory.header.stamp = time_msg(obs.msg_stamp)
            msg.inference_latency_s = float(time.perf_counter() - t0 if self.lockstep else self.now_s() - obs.stamp)
            msg.sequence = self.sequence
            self.sequence += 1
            if not (self._running and self.context.ok()):
                return
            self.chunk_pub.publish(msg)
            self._answered_ns = asked_ns
            self._publish_extras(msg)
            self.value_pub.publish(Float32(data=float(value)))
            self.published += 1
            self.status_pub.publish(String(data=(
                f"ok chunk {msg.sequence} latency {msg.inference_latency_s:.3f} s compute "
                f"{time.perf_counter() - t0:.3f} s value {value:.3f}")))

    def _publish_extras(self, chunk) -> None:
        """Hook for nodes that publish more per chunk (the planner's PlanResult)."""

    def _refuse(self, reason: str) -> None:
        self.refusals += 1
        self.status_pub.publish(String(data=f"not publishing: {reason}"))
        self._refusal_log(f"not publishing: {reason}", "refusal")

    def close(self) -> None:
        self._running = False
        self._request.set()
        if self._worker.is_alive():
            self._worker.join(timeout=10)
