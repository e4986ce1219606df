"""Executor node: streams safe 14-D commands to both follower arms at a fixed rate.

Thin wiring around cosmos_policy_ros.robot.executor_core.ExecutorCore (all decisions live there):
  loop      RateLoop thread at ``rate_hz`` (not an executor timer): tick -> backend.write,
            chunk requests. It never waits on a callback; callbacks never wait on it. It is started
            by run_node's ``on_ready`` hook (``start_loop``) once the node spins.
  callbacks one SingleThreadedExecutor thread (run_node's): chunks, joint states, e-stop, services,
            status timer. Each takes the core's lock for microseconds. (A MultiThreadedExecutor costs
            several times the CPU in rclpy and buys nothing here: no callback blocks.)

Topics (names in cosmos_policy_ros/topics.py; rename by remapping):
  sub  ACTION_CHUNK       /cosmos/action_chunk       cosmos_policy_ros/ActionChunk
  sub  follower joint states (robot config)          sensor_msgs/JointState (sensor-data QoS)
  sub  ESTOP              /cosmos/estop              std_msgs/Bool (true latches ESTOP, false releases to IDLE)
  pub  follower commands joint_group|joint_single    (interbotix / sim backends)
  pub  EXECUTOR_STATUS    /cosmos/executor/status    cosmos_policy_ros/ExecutorStatus, status_rate_hz
  pub  CHUNK_REQUEST      /cosmos/chunk_request      std_msgs/Header: the executor wants the next chunk now;
                                                     stamp = when that chunk should take over (the k-th
                                                     action of the newest chunk; = now when dry),
                                                     frame_id = chunk mode
Services (std_srvs/Trigger): EXECUTOR_SERVICES /cosmos/executor/{start,stop,home,sleep}; start and home
from IDLE first let the backend prepare (interbotix/sim: gripper reboot and driver modes, ~1 s).
Parameters: config (executor yaml); robot_config, backend, chunk_mode, synchronous_steps, autostart override
the yaml when set. lockstep (the graph's lockstep:=true; synchronous chunk mode only): the loop ticks once per
simulated step (StepLoop: the step's /clock and both arms' joint states are there) on simulated time,
and sends nothing while it waits for a chunk, so the lockstep sim waits too (ExecutorCore). Watchdogs and
chunk checks then run on simulated time; the status and autostart timers on the steady clock.

Run: python -m cosmos_policy_ros.nodes.executor_node --ros-args -p backend:=sim -p chunk_mode:=blend
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Literal

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Header
from std_srvs.srv import Trigger

from cosmos_policy_ros import topics
from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.errors import CosmosError, one_line
from cosmos_policy_ros.msg import ActionChunk, ExecutorStatus
from cosmos_policy_ros.nodes.chunk_msgs import chunk_from_msg, seconds, time_msg
from cosmos_policy_ros.nodes.common import config_overrides, declare, field_types, run_node
from cosmos_policy_ros.nodes.log_throttle import ThrottledLog
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.backends.base import Backend, apply_tick
from cosmos_policy_ros.robot.executor_config import ExecutorConfig, load_executor_config
from cosmos_policy_ros.robot.executor_core import IDLE, ExecutorCore
from cosmos_policy_ros.robot.rate_loop import RateLoop, StepLoop
from cosmos_policy_ros.robot.scheduler import MODES, ChunkError


def make_backend(name: str, node: Node, robot: AlohaRobot, config: ExecutorConfig) -> Backend:
    if name in ("interbotix", "sim"):
        from cosmos_policy_ros.robot.backends.interbotix import InterbotixBackend, SimBackend

        return (SimBackend if name == "sim" else InterbotixBackend)(node, robot, config.interbotix)
    if name == "dynamixel":
        from cosmos_policy_ros.robot.backends.dynamixel import DynamixelBackend

        return DynamixelBackend(robot, config.dynamixel)
    raise ConfigError(f"backend: expected interbotix | dynamixel | sim, got {name!r}")


class ExecutorNode(Node):
    def __init__(self, **kwargs):
        super().__init__("cosmos_executor", **kwargs)
        self.cfg = cfg = self._load_config()
        self.lockstep = declare(self, "lockstep", False)
        if self.lockstep:
            self.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
        self._stamps = {"clock": -1, 0: -1, 1: -1}  # lockstep: ns of the newest /clock and joint states per arm
        self._sim_now = -1.0  # lockstep: simulated time of the newest complete step (none yet)
        self._request_wall = -math.inf  # lockstep: wall time of the last chunk request
        self.robot = AlohaRobot.from_yaml(cfg.robot_config)
        self.core = ExecutorCore(self.robot, cfg, lockstep=self.lockstep)
        self.backend = make_backend(cfg.backend, self, self.robot, cfg)
        self.backend.open()
        self._wire()
        self._bad_input = 0
        self.last_rejection = ""
        log = self.get_logger()
        self._reject_log = ThrottledLog(lambda line: log.warning(line), cfg.log_throttle_s)
        self.loop = StepLoop(1.0 / cfg.rate_hz, self._tick_at, name="executor-loop", on_error=self._loop_error) \
            if self.lockstep else RateLoop(1.0 / cfg.rate_hz, self._tick, name="executor-loop",
                                           on_error=self._loop_error, priority=cfg.loop_priority)
        self.get_logger().info(
            f"executor: backend={cfg.backend} mode={cfg.scheduler.mode} "
            f"{'lockstep (one tick per simulated step)' if self.lockstep else f'rate={cfg.rate_hz} Hz'} "
            f"chunk_timeout={cfg.watchdog.chunk_timeout_s} s; state IDLE (call {topics.EXECUTOR_SERVICES}/start)")

    def _load_config(self) -> ExecutorConfig:
        path = declare(self, "config", "executor.yaml")
        overrides = config_overrides(self, {**field_types(ExecutorConfig, "robot_config", "backend", "autostart"),
                                            "chunk_mode": Literal[MODES], "synchronous_steps": int})
        mode = overrides.pop("chunk_mode", None)
        steps = overrides.pop("synchronous_steps", None)
        cfg = load_executor_config(path, overrides)
        if mode is not None:
            cfg.scheduler.mode = mode
        if steps is not None:
            cfg.scheduler.synchronous_steps = steps
            cfg.scheduler.validate()
        return cfg

    def _wire(self) -> None:
        """Subscriptions, services, publishers and the status timer, all in one callback group."""
        group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(ActionChunk, topics.ACTION_CHUNK, self._on_chunk, 10, callback_group=group)
        for i, side in enumerate(self.robot.config.arms):
            self.create_subscription(JointState, self.robot.follower_topic(side, "joint_states"),
                                     lambda m, i=i: self._on_joint_state(i, m), qos_profile_sensor_data,
                                     callback_group=group)
        self.create_subscription(Bool, topics.ESTOP, self._on_estop, 10, callback_group=group)
        for name in ("start", "stop", "home", "sleep"):
            self.create_service(Trigger, f"{topics.EXECUTOR_SERVICES}/{name}",
                                lambda req, res, name=name: self._on_service(name, res), callback_group=group)
        self.status_pub = self.create_publisher(ExecutorStatus, topics.EXECUTOR_STATUS, 10)
        self.request_pub = self.create_publisher(Header, topics.CHUNK_REQUEST, 10)
        self.create_timer(1.0 / self.cfg.status_rate_hz, self._publish_status, callback_group=group,
                          clock=self._timer_clock())
        if self.lockstep:
            self.create_subscription(Clock, "/clock", lambda m: self._step_seen("clock", m.clock), 10,
                                     callback_group=group)

    def _timer_clock(self):
        """Lockstep: timers on the steady clock (simulated time stands still while the sim waits)."""
        return RosClock(clock_type=ClockType.STEADY_TIME) if self.lockstep else None

    def now_s(self) -> float:
        if self.lockstep:  # the newest step seen (a start between steps seeds from the joint states of it)
            return max(self._sim_now, max(self._stamps.values()) * 1e-9)
        return self.get_clock().now().nanoseconds * 1e-9

    def _step_seen(self, stream, stamp) -> None:
        """Lockstep: a sim step is there for the loop once its /clock and both arms' joint states are."""
        ns = stamp.sec * 1_000_000_000 + stamp.nanosec
        if ns > self._stamps[stream]:
            self._stamps[stream] = ns
        t = min(self._stamps.values())
        if t >= 0 and t * 1e-9 > self._sim_now:
            self._sim_now = t * 1e-9
            self.loop.advance(self._sim_now)

    # ---- the loop thread -------------------------------------------------------------------------
    def start_loop(self) -> None:
        """run_node's on_ready hook: start the RateLoop thread once the node is in the executor."""
        # The loop thread needs the GIL promptly at each deadline: switch threads every 1 ms (default 5).
        sys.setswitchinterval(0.001)
        self.loop.start()
        if self.cfg.loop_priority:
            time.sleep(0.05)
            if self.loop.priority_error:
                self.get_logger().warning(self.loop.priority_error)
            else:
                # The loop thread needs the GIL: a callback thread preempted by other processes while
                # holding it would stall the loop (priority inversion), so the spinning (calling)
                # thread runs real-time too, one level below the loop.
                try:
                    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(max(1, self.cfg.loop_priority - 1)))
                except OSError as exc:
                    self.get_logger().warning(f"callback thread stays at normal priority: {exc}")
        if self.cfg.autostart:
            self._autostart_timer = self.create_timer(0.1, self._try_autostart, clock=self._timer_clock())

    def _try_autostart(self) -> None:
        if not all(w.last > -math.inf for w in self.core.state_watch):
            return  # no joint states yet: nothing to prepare for
        ok, msg = self._leave_idle("start")
        if ok:
            self._autostart_timer.cancel()
        else:
            self.get_logger().warning(f"autostart: {msg}", throttle_duration_sec=5.0)

    def _leave_idle(self, name: str) -> tuple[bool, str]:
        """start / home: from IDLE the backend first clears what the last run left (gripper reboot)."""
        if self.core.state == IDLE:
            try:
                q = self.backend.prepare()
            except CosmosError as exc:
                return False, f"{self.cfg.backend} backend: {one_line(exc)}"
            if q is not None:
                self.core.on_measured(q, self.now_s())
        return getattr(self.core, name)(self.now_s())

    def _tick(self) -> None:
        self._tick_at(self.now_s())

    def _tick_at(self, now: float) -> bool:
        """One tick at ``now``; whether a command went out (lockstep: the sim steps on it)."""
        q = self.backend.read()
        if q is not None:
            self.core.on_measured(q, now)
        elif getattr(self.backend, "last_error", ""):
            self.get_logger().error(self.backend.last_error, throttle_duration_sec=1.0)
        out = self.core.tick(now)
        apply_tick(out, self.backend)
        if out.request:
            deadline = out.request_deadline if math.isfinite(out.request_deadline) else now
            self.request_pub.publish(Header(frame_id=self.cfg.scheduler.mode, stamp=time_msg(deadline)))
            self._request_wall = time.monotonic()
        elif self.lockstep and out.command is None and math.isfinite(out.request_deadline) \
                and time.monotonic() - self._request_wall >= self.cfg.scheduler.request_retry_s:
            # waiting for a chunk, in simulated time that stands still: repeat the request on the wall clock
            # (a policy that was still loading missed it; the policy answers each step once)
            self.request_pub.publish(Header(frame_id=self.cfg.scheduler.mode, stamp=time_msg(now)))
            self._request_wall = time.monotonic()
        return out.command is not None

    def _loop_error(self, exc: BaseException) -> None:
        self.get_logger().error(f"executor tick failed: {type(exc).__name__}: {exc}", throttle_duration_sec=1.0)

    # ---- callbacks ----------------------------------------------------------------------------------
    def _on_chunk(self, msg: ActionChunk) -> None:
        now = self.now_s()
        try:
            chunk = chunk_from_msg(msg, self.robot.joint_names)
        except ChunkError as exc:
            self.core.scheduler.rejected += 1
            self._rejected(f"chunk seq {msg.sequence} from '{msg.source}' rejected: {exc}", "invalid")
            return
        ok, reason = self.core.on_chunk(chunk, now)
        if ok and self.lockstep:
            self.loop.poke()  # play it from this very step
        if not ok:
            # "chunk seq 7 from 'policy' rejected: stale: ..." -> kind "stale"
            self._rejected(reason, reason.split("rejected: ", 1)[-1].split(":", 1)[0][:40])

    def _rejected(self, line: str, kind: str) -> None:
        """One line per kind and period (a NaN flood printed thousands), the last one kept for the status."""
        self.last_rejection = line
        self._reject_log(line, kind)

    def _on_joint_state(self, side: int, msg: JointState) -> None:
        try:
            q7 = self.robot.arm_state_from_joint_state(msg.name, msg.position)
        except ValueError as exc:
            self.get_logger().error(f"joint state ignored: {exc}", throttle_duration_sec=5.0)
            return
        if self.lockstep:  # the step's own time: the tick at that step sees it fresh
            self._step_seen(side, msg.header.stamp)
            self.core.on_arm_state(side, q7, seconds(msg.header.stamp))
            return
        self.core.on_arm_state(side, q7, self.now_s())

    def _on_estop(self, msg: Bool) -> None:
        self.core.set_estop(bool(msg.data), self.now_s())

    def _on_service(self, name: str, res: Trigger.Response) -> Trigger.Response:
        if name in ("start", "home"):
            ok, message = self._leave_idle(name)
        else:
            ok, message = getattr(self.core, name)(self.now_s())
        res.success, res.message = bool(ok), message
        if ok and self.lockstep:
            self.loop.poke()
        if not ok:
            self.get_logger().warning(f"{name} refused: {message}")
        return res

    def _publish_status(self) -> None:
        try:
            self._log_events()
            self._publish_status_msg()
        except Exception as exc:  # noqa: BLE001 - diagnostics must never take the node down
            self.get_logger().error(f"status publishing failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)

    def _log_events(self) -> None:
        # One call site per severity: rclpy refuses a different severity from the same call site.
        log = self.get_logger()
        for level, line in self.core.drain_events():
            if level == "error":
                log.error(line)
            elif level == "warn":
                log.warning(line)
            else:
                log.info(line)

    def _publish_status_msg(self) -> None:
        now = self.now_s()
        s = self.core.status(now)
        loop = self.loop.stats.summary()
        msg = ExecutorStatus(
            state=s["state"], chunk_mode=s["chunk_mode"], backend=self.cfg.backend,
            loop_period_mean_s=_f(loop["mean"]), loop_period_p50_error_s=_f(loop["p50_error"]),
            loop_period_p99_error_s=_f(loop["p99_error"]), loop_overruns=int(loop["overruns"]),
            interventions=int(s["interventions"]), last_intervention=s["last_intervention"],
            intervention_kinds=list(s["intervention_kinds"]),
            intervention_counts=[int(v) for v in s["intervention_kinds"].values()],
            queue_depth=int(s["queue_depth"]), chunk_age_s=_f(s["chunk_age_s"]),
            chunks_accepted=int(s["chunks_accepted"]), chunks_rejected=int(s["chunks_rejected"]),
            last_rejection=self.last_rejection, rejection_lines_suppressed=self._reject_log.suppressed_total,
            last_command=[] if s["last_command"] is None else [float(x) for x in s["last_command"]])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)

    def close(self) -> None:
        """Called by run_node on the way out: stop the loop thread, then the backend."""
        self.loop.stop()
        self.backend.close()  # leaves torque as it is


def _f(x: float) -> float:
    return float(x) if math.isfinite(x) else float("nan")


def main(args: list[str] | None = None) -> int:
    # Hardware that does not answer (DynamixelError is a RuntimeError; a missing driver package an
    # ImportError; a serial port an OSError) is reported in one line like a config error.
    return run_node(ExecutorNode, args, name="cosmos_executor", on_ready=ExecutorNode.start_loop,
                    start_errors=(ImportError, OSError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
