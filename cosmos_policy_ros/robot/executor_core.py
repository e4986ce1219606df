"""The executor's decision per tick, without ROS: state machine + scheduler + watchdog + safety filter.

The node calls :meth:`ExecutorCore.tick` at a fixed rate from its own thread, and the other methods
from ROS callbacks; one lock makes each call atomic (every call is short and never blocks on I/O).

States (ExecutorStatus.state):
  IDLE     passive: nothing is published; the motors keep their last goal.
  RUNNING  chunks are executed (holds the last safe target while the schedule is dry).
  HOLDING  started, but no valid chunk for ``chunk_timeout_s`` or joint states stale: hold.
  ESTOP    latched by the e-stop topic (topics.ESTOP): hold the last command (torque on), chunks refused.
  MOVING   min-jerk move to the start or sleep pose, then IDLE.
Every command — chunk targets, holds, pose moves — passes through the same SafetyFilter.
Torque is only ever switched off after a completed sleep move with the arm measured at the sleep
pose, and only if ``motion.torque_off_after_sleep`` is set.

Lockstep (``lockstep=True``, synchronous chunk mode only): ``now`` is simulated time, one tick per sim
step, and a RUNNING tick with no chunk to play sends NO command (not even a hold): the lockstep sim
waits for the command, so simulated time stands still until the requested chunk arrives and the
chunk is played from the very step it was observed at (as the in-process evaluation does).
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.executor_config import ExecutorConfig
from cosmos_policy_ros.robot.motion import PoseMove
from cosmos_policy_ros.robot.safety import SafetyFilter
from cosmos_policy_ros.robot.scheduler import Chunk, ChunkScheduler
from cosmos_policy_ros.robot.watchdog import Freshness

IDLE, RUNNING, HOLDING, ESTOP, MOVING = "IDLE", "RUNNING", "HOLDING", "ESTOP", "MOVING"


@dataclass
class TickOutput:
    command: np.ndarray | None  # 14-D safe command, None = publish nothing (passive)
    request: bool = False  # ask the policy for the next chunk now
    request_deadline: float = math.nan  # when the next chunk should take over
    torque_off: bool = False  # only after a completed sleep move (see module docstring)


class ExecutorCore:
    def __init__(self, robot: AlohaRobot, config: ExecutorConfig | None = None, lockstep: bool = False):
        self.robot = robot
        self.config = config or ExecutorConfig()
        self.config.validate()
        if lockstep and self.config.scheduler.mode != "synchronous":
            raise ConfigError(f"lockstep runs chunk_mode synchronous (the sim waits while the policy computes), "
                              f"got chunk_mode {self.config.scheduler.mode}")
        self.lockstep = lockstep
        self.dt = 1.0 / self.config.rate_hz
        self.safety = SafetyFilter(robot, self.config.safety, self.dt)
        self.scheduler = ChunkScheduler(self.config.scheduler)
        if lockstep:
            self.scheduler.end_tolerance_s = 0.5 * self.dt
        wd = self.config.watchdog
        self.chunk_watch = Freshness(wd.chunk_timeout_s)
        self.state_watch = [Freshness(wd.joint_state_timeout_s) for _ in range(2)]
        self.measured = np.full(14, np.nan)
        self.last_command: np.ndarray | None = None
        self.last_step: np.ndarray | None = None  # last_command minus the one before (acceleration cap)
        self.mode = IDLE  # IDLE | RUNNING (started) | ESTOP | MOVING
        self.holding = False
        self.move: PoseMove | None = None
        self.move_goal_name = ""
        self.events: deque[tuple[str, str]] = deque(maxlen=200)  # (level, line) for the node's log
        self._lock = threading.RLock()

    # ---- inputs (ROS callback threads) -----------------------------------------------------
    def on_arm_state(self, side: int, q7, now: float) -> None:
        q = np.asarray(q7, dtype=float)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            self._event("error", f"joint state for arm {side} ignored: expected 7 finite values, got {q7!r}")
            return
        with self._lock:
            self.measured[7 * side: 7 * side + 7] = q
            self.state_watch[side].feed(now)

    def on_measured(self, q14, now: float) -> None:
        q = np.asarray(q14, dtype=float)
        self.on_arm_state(0, q[:7], now)
        self.on_arm_state(1, q[7:], now)

    def on_chunk(self, chunk: Chunk, now: float) -> tuple[bool, str]:
        with self._lock:
            if self.mode != RUNNING:
                self.scheduler.rejected += 1
                return False, f"chunk seq {chunk.sequence} ignored: executor is {self.state} (call start)"
            ok, reason = self.scheduler.add(chunk, now)
            if ok:
                self.chunk_watch.feed(now)
            else:
                reason = f"chunk seq {chunk.sequence} from '{chunk.source}' rejected: {reason}"
            return ok, reason

    def set_estop(self, active: bool, now: float) -> str:
        with self._lock:
            if active and self.mode != ESTOP:
                self.mode, self.move = ESTOP, None
                self.scheduler.clear(forget_order=True)
                held = ("holding the last command" if self.last_command is not None
                        else "passive (motors keep their goal)")
                return self._event("warn", f"E-STOP: {held}; torque stays on")
            if not active and self.mode == ESTOP:
                self.mode = IDLE
                return self._event("info", "e-stop released -> IDLE (call start to run again)")
            return ""

    # ---- services ------------------------------------------------------------------------------
    def start(self, now: float) -> tuple[bool, str]:
        with self._lock:
            if self.mode == ESTOP:
                return False, "e-stop is active"
            if self.mode == RUNNING:
                return True, "already running"
            if self.mode == MOVING:
                return False, f"moving to the {self.move_goal_name} pose; call stop first"
            refused = self._seed(now)
            if refused:
                return False, refused
            self.scheduler.clear(forget_order=True)
            self.chunk_watch.last = now  # the first chunk gets a full timeout to arrive
            self.mode, self.holding = RUNNING, False
            self._event("info", f"started ({self.config.scheduler.mode})")
            return True, "running"

    def stop(self, now: float) -> tuple[bool, str]:
        with self._lock:
            if self.mode == ESTOP:
                return False, "e-stop is active"
            self.mode, self.move = IDLE, None
            self.scheduler.clear(forget_order=True)
            self._event("info", "stopped -> IDLE")
            return True, "idle"

    def home(self, now: float) -> tuple[bool, str]:
        return self._move_to("start", self.config.motion.home_gripper, now)

    def sleep(self, now: float) -> tuple[bool, str]:
        return self._move_to("sleep", self.config.motion.sleep_gripper, now)

    def _move_to(self, name: str, gripper: float, now: float) -> tuple[bool, str]:
        with self._lock:
            if self.mode == ESTOP:
                return False, "e-stop is active"
            if self.mode == IDLE or self.last_command is None:  # else continue from the last command
                refused = self._seed(now)
                if refused:
                    return False, refused
            m = self.config.motion
            goal = np.clip(self.robot.pose14(name, gripper), self.robot.lower, self.robot.upper)
            self.move = PoseMove.plan(self.last_command, goal, now, m.speed, m.min_duration_s, m.gripper_speed,
                                      self.robot.gripper_indices, name)
            self.move_goal_name = name
            self.scheduler.clear()
            self.mode = MOVING
            return True, self._event("info", f"moving to the {name} pose over {self.move.duration:.1f} s")

    def _seed(self, now: float) -> str:
        """Take the measured pose as the previous command when (re)gaining control; "" or why not.

        A stale joint state is refused: the arm may have moved since, and the first command would jump
        from where it was to where the chunk says (seen: 0.36 rad in one tick from a 2.5 s old state).
        """
        if not all(w.last > -math.inf for w in self.state_watch) or not np.all(np.isfinite(self.measured)):
            return "no joint state received yet from both arms"
        limit = self.config.watchdog.joint_state_timeout_s
        ages = [w.age(now) for w in self.state_watch]
        if limit > 0 and max(ages) >= limit:
            side = self.robot.config.arms[int(np.argmax(ages))]
            return (f"the {side} arm's joint state is {max(ages):.2f} s old (limit watchdog.joint_state_timeout_s "
                    f"{limit:.2f} s): not seeding from a stale pose")
        self.last_command = self.measured.copy()
        self.last_step = None  # unknown velocity: the acceleration cap starts counting from the next tick
        return ""

    # ---- the periodic tick (loop thread) -----------------------------------------------------------
    def tick(self, now: float) -> TickOutput:
        with self._lock:
            fresh = not any(w.expired(now) for w in self.state_watch)
            measured = self.measured if fresh else None
            out = TickOutput(None)
            if self.mode == IDLE or self.last_command is None:
                return out
            target, hold = None, False
            if self.mode == ESTOP:
                hold = True
            elif self.mode == MOVING:
                target = self.move.at(now)
            else:  # RUNNING
                self._update_holding(now, fresh)
                target = None if self.holding else self.scheduler.target(now)
                hold = target is None
                if hold and self.lockstep and not self.holding:  # no chunk: ask, send nothing, time waits
                    out.request, out.request_deadline = self.scheduler.wants_request(now), now
                    return out
            res = self.safety.filter(target, self.last_command, measured, hold=hold,
                                     inward_from_previous=self.mode == MOVING, previous_step=self.last_step)
            if res.intervened:
                self._event("warn", f"safety: {res.reason}", throttle=True)
            self.last_step = res.command - self.last_command
            self.last_command = res.command
            out.command = res.command
            if self.mode == MOVING:
                out.torque_off = self._finish_move(now, measured)
            if self.mode == RUNNING and (not self.lockstep or self.holding):  # lockstep asks when dry (above)
                out.request = self.scheduler.wants_request(now)
                d = self.scheduler.request_deadline()
                out.request_deadline = now if d is None else d
            return out

    def _update_holding(self, now: float, fresh: bool) -> None:
        if self.config.scheduler.mode == "synchronous":
            # the chunk watchdog counts from the end of the chunk being played (the request), and a
            # producer known to be slow (planning) gets twice its measured latency before HOLDING
            sched = self.scheduler
            if sched.chunks and now <= sched.chunks[-1].end:
                self.chunk_watch.feed(now)
            self.chunk_watch.timeout = max(self.config.watchdog.chunk_timeout_s, 2.0 * sched.latency.value)
        reason = ""
        if self.chunk_watch.expired(now):
            reason = f"no valid chunk for {self.chunk_watch.age(now):.2f} s (timeout {self.chunk_watch.timeout} s)"
        elif not fresh:
            reason = "joint states stale (timeout {} s)".format(self.config.watchdog.joint_state_timeout_s)
        if reason and not self.holding:
            self.scheduler.clear()
            self._event("warn", f"watchdog: {reason} -> HOLDING position")
        elif not reason and self.holding:
            self._event("info", "fresh chunk -> RUNNING")
        self.holding = bool(reason)

    def _finish_move(self, now: float, measured) -> bool:
        m, move = self.config.motion, self.move
        reached = np.allclose(self.last_command, move.goal, atol=1e-4)
        if not (move.done(now) and reached) and now < move.t0 + move.duration + m.settle_timeout_s:
            return False
        if not reached:
            self._event("warn", f"{move.name} move ended before the command reached the goal (filter/limits)")
        self.mode, self.move = IDLE, None
        self._event("info", f"reached the {move.name} pose -> IDLE")
        if move.name == "sleep" and m.torque_off_after_sleep:
            if measured is not None and np.max(np.abs(measured - move.goal)) <= m.sleep_tolerance:
                self._event("info", "torque off at the sleep pose")
                return True
            self._event("warn", "not switching torque off: arms not measured at the sleep pose")
        return False

    # ---- diagnostics --------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        if self.mode == RUNNING and self.holding:
            return HOLDING
        return self.mode

    def status(self, now: float) -> dict:
        with self._lock:
            return dict(
                state=self.state,
                chunk_mode=self.config.scheduler.mode,
                interventions=self.safety.interventions,
                last_intervention=self.safety.last_reason,
                intervention_kinds=dict(self.safety.kinds.most_common()),
                queue_depth=self.scheduler.queue_depth(now),
                chunk_age_s=self.scheduler.chunk_age(now),
                chunks_accepted=self.scheduler.accepted,
                chunks_rejected=self.scheduler.rejected,
                latency_estimate_s=self.scheduler.latency.value,
                last_command=None if self.last_command is None else self.last_command.copy(),
            )

    def _event(self, level: str, line: str, throttle: bool = False) -> str:
        if throttle and self.events and self.events[-1][1].split(":")[0] == line.split(":")[0]:
            self.events[-1] = (level, line)  # keep one pending line per kind between drains
        else:
            self.events.append((level, line))
        return line

    def drain_events(self) -> list[tuple[str, str]]:
        with self._lock:
            out = list(self.events)
            self.events.clear()
            return out
