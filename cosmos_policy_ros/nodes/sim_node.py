"""Simulated ALOHA on the real robot's topics.

Publishes what the Interbotix xs_sdk and realsense2_camera publish (follower joint_states in the
xs_sdk layout, rgb8 images on /<cam>/camera/color/image_rect_raw) and serves the driver's command
topics and services per follower namespace (nodes/xs_driver_server.py) with the driver's semantics
(robot/xs_driver_emulation.py): the arms start in Interbotix's follower bring-up modes, so a gripper
command means finger metres (linear_position) until a client switches the gripper to
current_based_position; a joint without torque goes limp (an arm sags); a gripper that pushes with
too much current for too long faults and ignores commands until rebooted. What the real driver
refuses or logs is logged here (counted as bad_commands in the status); the sim keeps running.

Threads: physics and rendering each have their own, so joint states keep their rate (one per 50 Hz
step, as the executor's 0.5 s joint-state watchdog expects) whatever the images cost:
  sim         step -> joint_states (+ /clock) -> every k-th step hand a snapshot to the renderer
  sim-render  owns the MuJoCo GL contexts; renders the newest snapshot, publishes the images
  executor    command and driver-service callbacks (one callback group per arm, as each real arm has an
              xs_sdk process) set targets and torque; status timer; reset service
In wall time a snapshot the renderer has not started yet is replaced by the next (images may come
slower than camera_rate_hz on a busy CPU; physics never waits). In fast and lockstep time the sim
waits for each image set, so every k-th simulated step has its images, as before. Measured:
bench/bench_sim_rate.py, docs/sim.md.
Parameters time_mode, task, seed, width, height, camera_rate_hz and cameras (comma-separated) override
config/sim_node.yaml when set. Status on topics.SIM_STATUS, episode reset on topics.SIM_RESET.
With `viewer` (parameter viewer:=true or the yaml's viewer.enabled) the render thread also renders the
viewer view (sim/viewer.py: large, for people) at viewer.rate_hz of simulated time on topics.SIM_VIEWER.
Strict lockstep (parameter lockstep:=true, the graph's lockstep argument; docs/sim.md "Lockstep"): the sim
steps only on the executor's complete command set (arm and gripper of both arms), so time stands still
while the policy computes; the policy's chunk request makes it render the cameras at that very time;
/clock never runs backwards across resets; an episode ends (time stops) at its horizon or on success.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock as Clock_
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header, String

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros import topics
from cosmos_policy_ros.msg import EpisodeEvent  # noqa: F401  (type registered for recorders)
from cosmos_policy_ros.nodes.chunk_msgs import time_msg
from cosmos_policy_ros.nodes.common import config_overrides, declare, field_types, run_node
from cosmos_policy_ros.nodes.xs_driver_server import XsDriverServer
from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.perception.image_codec import fill_image
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.xs_driver_emulation import XsDriverEmulation
from cosmos_policy_ros.sim.viewer import ViewerConfig, ViewerSchedule, render_view
from cosmos_policy_ros.srv import ResetEpisode


class FrameSlot:
    """A one-place mailbox from the physics thread to the render thread; a newer item replaces an older one."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._busy = False  # the render thread took an item and has not finished it
        self._closed = False
        self.replaced = 0  # items dropped unrendered because a newer one came first

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._cond.notify_all()

    def take(self, timeout: float):
        """The newest item (None after ``timeout`` or once closed); call ``done`` when it is finished."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            self._busy = item is not None
            return item

    def done(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def wait_empty(self, timeout: float) -> bool:
        """Until the render thread has finished every item put (False on timeout or when closed)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed or (self._item is None and not self._busy), timeout) \
                and not self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclass
class SimNodeConfig:
    time_mode: Literal["wall", "fast", "lockstep"] = "wall"
    lockstep_timeout_s: float = 0.2
    # strict lockstep: never step without the command set; the episode ends at its horizon or on success
    lockstep_strict: bool = False
    # s of wall time without a command set after which strict lockstep reports a stalled graph (one line)
    lockstep_stall_report_s: float = 30.0
    # s of wall time between re-publications of the current joint states and /clock while strict lockstep waits
    lockstep_heartbeat_s: float = 0.1
    # s simulated per episode in strict lockstep; 0 = the task's episode_steps (the in-process horizon)
    lockstep_episode_s: float = 0.0
    camera_rate_hz: float = 25.0
    cameras: list[str] = field(default_factory=lambda: ["cam_high", "cam_left_wrist", "cam_right_wrist", "cam_low"])
    width: int = 640
    height: int = 480
    task: str = "transfer_cube"
    seed: int = 0  # first episode's seed; negative = random
    status_rate_hz: float = 5.0
    # the large view for people on topics.SIM_VIEWER (off unless enabled)
    viewer: ViewerConfig = field(default_factory=ViewerConfig)

    def validate(self) -> None:
        self.viewer.validate()
        if self.camera_rate_hz <= 0 or self.status_rate_hz <= 0 or self.lockstep_timeout_s <= 0:
            raise cfg.ConfigError("camera_rate_hz, status_rate_hz and lockstep_timeout_s must be positive")
        if self.lockstep_stall_report_s <= 0 or self.lockstep_heartbeat_s <= 0 or self.lockstep_episode_s < 0:
            raise cfg.ConfigError("lockstep_stall_report_s and lockstep_heartbeat_s must be positive, "
                                  "lockstep_episode_s >= 0")
        if self.width <= 0 or self.height <= 0:
            raise cfg.ConfigError("width/height must be positive")


class SimNode(Node):
    def __init__(self):
        super().__init__("aloha_sim")
        overrides = config_overrides(self, {**field_types(SimNodeConfig, "time_mode", "task", "width", "height",
                                                          "seed", "camera_rate_hz", "lockstep_episode_s"),
                                            "cameras": str,  # comma-separated subset of the configured cameras
                                            "viewer": bool})  # viewer.enabled
        if "cameras" in overrides:
            overrides["cameras"] = [c.strip() for c in overrides["cameras"].split(",") if c.strip()]
        viewer_on = overrides.pop("viewer", None)
        if declare(self, "lockstep", False):  # the graph's lockstep:=true
            if overrides.get("time_mode", "lockstep") != "lockstep":
                raise cfg.ConfigError(f"lockstep:=true runs time_mode lockstep, got time_mode {overrides['time_mode']}")
            overrides.update(time_mode="lockstep", lockstep_strict=True)
        self.cfg = cfg.load(SimNodeConfig, declare(self, "config", "sim_node.yaml"), overrides)
        if viewer_on is not None:
            self.cfg.viewer.enabled = viewer_on
        self.robot = AlohaRobot.from_yaml(declare(self, "robot_config", "robot/aloha_interbotix.yaml"))
        cams = load_cameras(declare(self, "camera_config", "cameras.yaml"))
        from cosmos_policy_ros.sim.sim_aloha import SimAloha  # heavy import (MuJoCo) after config checks

        self._sim_cls = SimAloha
        self.sim = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._running = True
        self._frames = FrameSlot()  # (snapshot, stamp) from the physics thread to the render thread
        self._cmd_lock = threading.Lock()
        self._fresh = {"left": False, "right": False}
        self._cmd_event = threading.Event()
        c = self.cfg
        self._strict = c.time_mode == "lockstep" and c.lockstep_strict
        self._kinds = {"group", "single"} if self._strict else {"group"}  # a complete command set per arm
        self._clock_offset = 0.0  # strict lockstep: /clock = offset + episode time, never backwards
        self._last_stamp = None  # stamp of the step last published
        self._render_request = False  # strict lockstep: the policy was asked at the current step
        self._done = False  # strict lockstep: the episode is over, time stands still until a reset
        self._horizon = 0
        self._pending_reset: tuple[str, int] | None = None
        self.drivers: dict[str, tuple[XsDriverEmulation, XsDriverServer]] = {}
        self._apply_locks = {s: threading.Lock() for s in self.robot.config.arms}
        self.failed = False

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.js_pubs = {s: self.create_publisher(JointState, self.robot.follower_topic(s, "joint_states"), reliable)
                        for s in self.robot.config.arms}
        self.img_pubs = {c: self.create_publisher(Image, cams.topic(c), QoSProfile(depth=2)) for c in self.cfg.cameras}
        self.viewer_pub = self.create_publisher(Image, topics.SIM_VIEWER, QoSProfile(depth=5)) \
            if self.cfg.viewer.enabled else None
        self._viewer_due = ViewerSchedule(self.cfg.viewer.rate_hz)
        self.clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=1)) \
            if self.cfg.time_mode != "wall" else None
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.status_pub = self.create_publisher(String, topics.SIM_STATUS, latched)
        self.create_service(ResetEpisode, topics.SIM_RESET, self._on_reset)
        # steady: the status must go on while simulated time stands still (lockstep; use_sim_time)
        self.create_timer(1.0 / self.cfg.status_rate_hz, self._publish_status,
                          clock=Clock_(clock_type=ClockType.STEADY_TIME))
        if self._strict:  # the chunk request: render the cameras at the time the policy is asked
            self.create_subscription(Header, topics.CHUNK_REQUEST, self._on_chunk_request, 10,
                                     callback_group=MutuallyExclusiveCallbackGroup())

        # A thread that wants the GIL waits up to the switch interval (default 5 ms) while another runs
        # Python (image conversion, command callbacks); the physics thread takes it several times a step.
        sys.setswitchinterval(0.001)
        self._render_thread = threading.Thread(target=self._render_main, name="sim-render", daemon=True)
        self._render_thread.start()
        if not self._ready.wait(timeout=120) or self._error is not None:
            raise ValueError(f"simulation failed to start: {self._error}")
        self._gripper_range = self.sim.gripper_motor_range()
        for side in self.robot.config.arms:  # the driver's interface, once there are motors to drive
            emu = XsDriverEmulation(self.robot, initial=self.sim.joint_state(side).position[:7])
            server = XsDriverServer(self, self.robot, side, emu, on_change=self._apply_driver,
                                    on_command=self._on_command, callback_group=MutuallyExclusiveCallbackGroup())
            self.drivers[side] = (emu, server)
            self._apply_driver(side)
        self._thread = threading.Thread(target=self._guarded, args=(self._run,), name="sim", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"simulated ALOHA: task {self.cfg.task}, seed {self.sim.seed}, {self.cfg.time_mode} time, "
            f"{len(self.cfg.cameras)} cameras {self.cfg.width}x{self.cfg.height} at {self.cfg.camera_rate_hz:g} Hz"
            + (f"; viewer {self.cfg.viewer.width}x{self.cfg.viewer.height} at {self.cfg.viewer.rate_hz:g} Hz on "
               f"{topics.SIM_VIEWER}" if self.viewer_pub is not None else ""))

    # ---- the emulated driver (executor threads; the physics thread after a fault) ---------------
    def _apply_driver(self, side: str) -> None:
        """Hand the emulated motors' targets and torque to the physics."""
        emu = self.drivers[side][0]
        with self._apply_locks[side]:
            targets = emu.targets()
            self.sim.apply_arm_command(side, targets[:6])
            self.sim.apply_gripper_command(side, targets[6])
            self.sim.set_torque(side, emu.torque_mask())

    def _on_command(self, side: str, kind: str) -> None:
        if kind not in self._kinds:
            return
        with self._cmd_lock:
            if self._strict:  # arm and gripper of both arms: the executor's whole tick
                fresh = self._fresh[side] or set()
                fresh.add(kind)
                self._fresh[side] = fresh
                complete = all(f and f >= self._kinds for f in self._fresh.values())
            else:
                self._fresh[side] = True
                complete = all(self._fresh.values())
            if complete:
                self._cmd_event.set()

    def _on_chunk_request(self, msg) -> None:
        """Strict lockstep: a chunk request for the step on show renders it (again)."""
        last, asked = self._last_stamp, msg.stamp
        if last is not None and abs((asked.sec - last.sec) + (asked.nanosec - last.nanosec) * 1e-9) < 1e-6:
            self._render_request = True

    @property
    def bad_commands(self) -> int:
        return sum(server.bad_commands for _, server in self.drivers.values())

    def _on_reset(self, request, response):
        task = request.task or self.sim.task_name
        if task not in self.sim.tasks:
            response.success, response.message = False, f"unknown task {task!r}; known: {list(self.sim.tasks)}"
            return response
        if request.seed < -1 or request.seed >= 2**32:
            response.success, response.message = False, f"seed must be -1 (random) or in [0, 2**32), got {request.seed}"
            return response
        self._pending_reset = (task, int(request.seed))
        deadline = time.monotonic() + 30
        while self._pending_reset is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        response.success = self._pending_reset is None
        response.message = f"task {self.sim.task_name} seed {self.sim.seed}" if response.success else "reset timed out"
        return response

    def _publish_status(self) -> None:
        if self.sim is None:
            return
        s = self.sim
        self.status_pub.publish(String(data=(
            f'{{"task": "{s.task_name}", "seed": {s.seed}, "step": {s.step_count}, "time": {s.time:.3f}, '
            f'"stage": {s.stage()}, "max_stage": {s.max_stage}, "success": {str(s.success()).lower()}, '
            f'"bad_commands": {self.bad_commands}, "frames_replaced": {self._frames.replaced}, '
            f'"done": {str(self._done).lower()}}}')))

    # ---- render thread -----------------------------------------------------------------------
    def _render_main(self) -> None:
        c = self.cfg
        try:
            self.sim = self._sim_cls(c.task, robot=self.robot, width=c.width, height=c.height)
            self.sim.reset(seed=None if c.seed < 0 else c.seed)
            self.sim.render_snapshot(self.sim.snapshot(), c.cameras)  # the GL contexts belong to this thread
            if c.viewer.enabled:  # a viewer the scene cannot render fails here, not in the first episode
                render_view(self.sim, c.viewer, self.sim.snapshot())
        except BaseException as exc:  # noqa: BLE001 - reported by the constructor
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._guarded(self._render_loop)
        finally:
            self.sim.close()  # on the thread that owns the GL contexts

    def _render_loop(self) -> None:
        while self._running and self.context.ok():
            item = self._frames.take(timeout=0.5)
            if item is None:
                continue
            snap, stamp = item
            try:
                for cam, rgb in self.sim.render_snapshot(snap, self.cfg.cameras).items():
                    img = fill_image(Image(), rgb)
                    img.header.stamp = stamp
                    img.header.frame_id = f"{cam}_color_optical_frame"
                    self.img_pubs[cam].publish(img)
                if self.viewer_pub is not None and self._viewer_due.due(snap.time):
                    self._publish_viewer(snap)
            finally:
                self._frames.done()

    def _publish_viewer(self, snap) -> None:
        """The viewer image of a snapshot, stamped with its simulated time (the GIF captions read it)."""
        img = fill_image(Image(), render_view(self.sim, self.cfg.viewer, snap))
        img.header.stamp = time_msg(snap.time)
        img.header.frame_id = "viewer"
        self.viewer_pub.publish(img)

    def _guarded(self, loop) -> None:
        try:
            loop()
        except Exception as exc:  # noqa: BLE001
            if self._running and self.context.ok():
                self.get_logger().fatal(f"simulation thread '{threading.current_thread().name}' stopped: {exc!r}")
                self.failed = True  # run_node exits non-zero, so a supervisor sees the sim died
                self._frames.close()
                self.context.try_shutdown()

    # ---- physics thread ------------------------------------------------------------------------
    def _run(self) -> None:
        c = self.cfg
        render_every = max(1, round(1.0 / (c.camera_rate_hz * self.sim.dt)))
        self._horizon = self._episode_steps()
        self._publish_step(render=True, observe=not self._strict)
        next_t = time.monotonic()
        while self._running and self.context.ok():
            if self._pending_reset is not None:
                task, seed = self._pending_reset
                last_time = self.sim.time
                self.sim.reset(task, None if seed < 0 else seed)
                for side, (emu, _) in self.drivers.items():  # the motors were moved: goal := present
                    emu.set_present(self.sim.joint_state(side).position[:7])
                    self._apply_driver(side)
                self.get_logger().info(f"reset: task {task}, seed {self.sim.seed}")
                if self._strict:  # the new episode's first state, on a clock that goes on
                    self._clock_offset += last_time + self.sim.dt
                    self._horizon, self._done = self._episode_steps(), False
                    with self._cmd_lock:
                        self._cmd_event.clear()
                        self._fresh = {k: False for k in self._fresh}
                    self._publish_step(render=True, observe=False)
                self._pending_reset = None
            if self._strict:
                if not self._await_command_set():
                    continue  # a reset came in, or the node is stopping
                self._take_goals()
            elif c.time_mode == "lockstep":
                self._cmd_event.wait(c.lockstep_timeout_s)
                with self._cmd_lock:
                    self._cmd_event.clear()
                    self._fresh = {k: False for k in self._fresh}
            self.sim.step()
            if self._strict:
                self._done = self.sim.success() or self.sim.step_count >= self._horizon
            self._publish_step(render=self.sim.step_count % render_every == 0)
            if c.time_mode == "wall":
                next_t += self.sim.dt
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.25:  # far behind: do not try to catch up in a burst
                    next_t = time.monotonic()

    # ---- strict lockstep ---------------------------------------------------------------------------
    def _episode_steps(self) -> int:
        c = self.cfg
        if c.lockstep_episode_s > 0:
            return max(1, round(c.lockstep_episode_s / self.sim.dt))
        return int(self.sim.tasks_cfg[self.sim.task_name].episode_steps)

    def _await_command_set(self) -> bool:
        """Strict lockstep: until the executor's command set for this step (True), a reset or a stop (False).

        Meanwhile: render the current step when the policy is asked at it, re-publish the current joint
        states and /clock (the driver client waits for fresh ones; late subscribers learn the time), and
        report once when nothing came for lockstep_stall_report_s. Never steps on a timeout.
        """
        c = self.cfg
        waited_from = next_beat = time.monotonic()
        reported = False
        rerender_at = None  # asked at this step: the images again now and then (subscribers may drop frames)
        while self._running and self.context.ok():
            if self._cmd_event.wait(0.005):
                with self._cmd_lock:
                    self._cmd_event.clear()
                    self._fresh = {k: False for k in self._fresh}
                if not self._done:
                    return True
            if self._pending_reset is not None:
                return False
            now = time.monotonic()
            if self._render_request or (rerender_at is not None and now >= rerender_at):
                # also on a render step: a policy that started late missed those images; and again every
                # 5 heartbeats while asked (the policy's best-effort camera subscription may drop a frame)
                self._render_request = False
                rerender_at = now + 5 * c.lockstep_heartbeat_s
                self._frames.put((self.sim.snapshot(), self._last_stamp))
                self._frames.wait_empty(timeout=30.0)
            if now >= next_beat:
                next_beat = now + c.lockstep_heartbeat_s
                if not self._done:
                    self._publish_joint_states(self._last_stamp, observe=False)
                    self.clock_pub.publish(Clock(clock=self._last_stamp))
            if not reported and not self._done and now - waited_from > c.lockstep_stall_report_s:
                reported = True
                self.get_logger().warning(
                    f"lockstep: no command set from the executor for {now - waited_from:.0f} s at simulated "
                    f"{self.sim.time:.2f} s (executor stopped, or waiting for a chunk); the sim waits")
        return False

    def _take_goals(self) -> None:
        """Strict lockstep: the motors drive to this step's goals during this step.

        The emulated driver moves a motor's target to its goal when it observes the motors, i.e. after the
        next step: a command would act one step late. A zero-length observation of the present state takes
        the goals now without advancing the fault timers (the commanded step is the one the executor meant,
        as in-process, where each action is applied before its step)."""
        for side, (emu, server) in self.drivers.items():
            js = self.sim.joint_state(side)
            if emu.observe(js.position[:7], js.velocity[:7], 0.0, self._gripper_range):
                server.flush_events()
            self._apply_driver(side)

    def _publish_step(self, render: bool, observe: bool = True) -> None:
        """Joint states (and /clock) of the step just taken; on a render step, its snapshot to the renderer.

        Strict lockstep: the step that ends an episode publishes no /clock, so no node ticks after it."""
        sim_time = self.sim.time + self._clock_offset
        stamp = time_msg(sim_time) if self.clock_pub is not None else self.get_clock().now().to_msg()
        self._last_stamp = stamp
        if self.clock_pub is not None and not self._done:
            self.clock_pub.publish(Clock(clock=stamp))
        self._publish_joint_states(stamp, observe)
        if render:
            self._frames.put((self.sim.snapshot(), stamp))
            if self.cfg.time_mode != "wall":  # simulated time: every k-th step has its images
                self._frames.wait_empty(timeout=30.0)

    def _publish_joint_states(self, stamp, observe: bool) -> None:
        """Both followers' joint states; ``observe``: the emulated motors see the step (fault timers)."""
        for side, pub in self.js_pubs.items():
            js = self.sim.joint_state(side)
            msg = JointState(name=list(js.name), position=js.position.tolist(), velocity=js.velocity.tolist(),
                             effort=js.effort.tolist())
            msg.header.stamp = stamp
            pub.publish(msg)
            if not observe:
                continue
            emu, server = self.drivers[side]
            if emu.observe(js.position[:7], js.velocity[:7], self.sim.dt, self._gripper_range):  # a fault, ...
                self._apply_driver(side)
                server.flush_events()

    def close(self) -> None:
        """Stop physics first, then the render thread, which frees the GL contexts itself: they belong to it,
        and freeing them from this thread crashed the process at exit (SIGSEGV, seen under load)."""
        self._running = False
        self._cmd_event.set()
        if getattr(self, "_thread", None) is not None and self._thread.is_alive():
            self._thread.join(timeout=5)
        self._frames.close()
        if self._render_thread.is_alive():
            self._render_thread.join(timeout=5)


def main(args: list[str] | None = None) -> int:
    """The node's process entry: it ends the process itself (never call it in-process)."""
    rc = run_node(SimNode, args, executor_threads=2, name="aloha_sim")
    # Everything is closed by now (threads joined, GL contexts freed by their thread, rclpy shut down), yet the
    # interpreter's own teardown crashed in native code (SIGSEGV, no Python frame) in 3 of 12 starts interrupted
    # right after start. Nothing is left to finalise: flush and leave without it.
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)  # C stdio too (rcutils' console logging)
    os._exit(rc)


if __name__ == "__main__":
    sys.exit(main())
