"""Safety filter: the last transformation before a 14-D target reaches the motors.

Why it exists: the Interbotix API silently *drops* out-of-limit commands (the arm freezes) and a
policy can emit NaN or a jump of a radian. This filter never drops a tick: it rejects invalid
vectors by holding the previous command, and clips everything else to

    joint limits  ∩  previous command ± max_velocity·dt  ∩  measured position ± max_relative_target
                  ∩  (previous command + previous step) ± max_acceleration·dt²   (optional)

and then, with ``collision`` on, shortens the step so the arms keep their margins to each other, the table
and obstacles (robot/collision.py: the farthest clear point of the segment from the previous command).

Guarantees (tested with hypothesis in test/robot/test_safety.py), for every emitted command c after
previous command p:
  * c is finite and has 14 entries;
  * |c - p| <= step (per joint), always;
  * c is inside the joint limits (grippers: the robot config's gripper_command_range, normalised), or —
    only when p itself was outside (seeded from a measured pose that rests beyond a limit, like the ALOHA
    sleep pose) — strictly no further out than p, moving inward at the step cap. A hold (``hold=True``)
    repeats p exactly.
  * with an acceleration limit and the previous step s = p - p_before given: |(c - p) - s| <=
    max_acceleration·dt² per joint, unless a joint limit, the relative cap or the collision guard stops
    the joint (a hard limit wins over smoothness) or the target was rejected (hold).
  * with the collision guard (test/robot/test_collision.py): no checked pair of links is inside its margin
    at c unless it already was at p, and such a pair is no closer at c than at p. c lies on the segment
    from p to the clipped target (grippers excepted: they move no checked link), so the above still hold.
Every tick that changed the target counts as one intervention; the last reason is kept.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.collision import CollisionGuard, CollisionModel


@dataclass
class SafetyConfig:
    # rad/s per joint; keys are arm joint names (both arms: "shoulder") or sided ("left_shoulder").
    # Unlisted arm joints use the robot's velocity_limit.
    max_velocity: dict[str, float] = field(default_factory=dict)
    # Normalised gripper units (0 closed .. 1 open) per second.
    gripper_max_velocity: float = 5.0
    # rad, arm joints only: command stays within this of the measured position (LeRobot uses 5°
    # per step on ALOHA; ours is per command, against the latest joint state). null disables.
    # Never applied to grippers: closing on an object keeps the measured finger open on purpose.
    max_relative_target: float | None = 0.35
    # rad/s², arm joints: how fast the commanded velocity may change. Stops chatter (an alternating
    # chunk otherwise reverses at the full step cap every tick). null disables. Per-joint overrides in
    # max_acceleration_joints, keyed like max_velocity.
    max_acceleration: float | None = None
    max_acceleration_joints: dict[str, float] = field(default_factory=dict)
    # Normalised gripper units per second²; null disables.
    gripper_max_acceleration: float | None = None
    # Collision guard (robot/collision.py): a step that would bring a link of one arm inside its margin to the
    # other arm, the table or an obstacle (margins: the robot config's collision section) is shortened or held.
    # Fits the link capsules to the sim's MJCF at start (imports MuJoCo; ~1.5 s once per process); false skips it.
    collision: bool = True

    def validate(self) -> None:
        for k, v in self.max_velocity.items():
            if not v > 0:
                raise cfg.ConfigError(f"safety.max_velocity.{k}: must be positive, got {v}")
        if not self.gripper_max_velocity > 0:
            raise cfg.ConfigError("safety.gripper_max_velocity: must be positive")
        if self.max_relative_target is not None and not self.max_relative_target > 0:
            raise cfg.ConfigError("safety.max_relative_target: must be positive or null")
        for key in ("max_acceleration", "gripper_max_acceleration"):
            v = getattr(self, key)
            if v is not None and not v > 0:
                raise cfg.ConfigError(f"safety.{key}: must be positive or null, got {v}")
        for k, v in self.max_acceleration_joints.items():
            if not v > 0:
                raise cfg.ConfigError(f"safety.max_acceleration_joints.{k}: must be positive, got {v}")


@dataclass
class FilterResult:
    command: np.ndarray
    intervened: bool
    reason: str = ""


class SafetyFilter:
    """Stateless per call apart from counters: callers pass the previous command explicitly."""

    def __init__(self, robot: AlohaRobot, config: SafetyConfig | None = None, dt: float | None = None):
        self.robot = robot
        self.config = config or SafetyConfig()
        self.config.validate()
        self.dt = robot.dt if dt is None else dt
        self.names = robot.joint_names
        self.lower = robot.lower.astype(float)
        self.upper = robot.upper.astype(float)
        self.step = self._step_caps()
        self.relative = self._relative_caps()
        self.accel = self._accel_caps()
        self.guard = self._collision_guard()
        self.interventions = 0
        self.last_reason = ""
        self.kinds: Counter[str] = Counter()

    # ---- configuration ------------------------------------------------------------------
    def _per_joint(self, arm: float, gripper: float, overrides: dict[str, float], key: str) -> np.ndarray:
        """14 values: ``arm`` for arm joints, ``gripper`` for grippers, then per-joint overrides."""
        rc = self.robot.config
        out = np.full(14, float(arm))
        for i in self.robot.gripper_indices:
            out[i] = gripper
        valid = set(rc.arm_joints) | {n for n in self.names if not n.endswith(rc.gripper_joint)}
        for k in overrides:
            if k not in valid:
                raise cfg.ConfigError(f"safety.{key}.{k}: unknown arm joint (allowed: {sorted(valid)})")
        for i, name in enumerate(self.names):
            joint = name.split("_", 1)[1]
            if joint in overrides:
                out[i] = overrides[joint]
            if name in overrides:
                out[i] = overrides[name]
        return out

    def _step_caps(self) -> np.ndarray:
        vel = self._per_joint(self.robot.config.velocity_limit, self.config.gripper_max_velocity,
                              self.config.max_velocity, "max_velocity")
        return vel * self.dt

    def _accel_caps(self) -> np.ndarray:
        """Largest change of the per-tick step (rad per tick, per tick); inf where no limit is set."""
        c = self.config
        arm = np.inf if c.max_acceleration is None else c.max_acceleration
        grip = np.inf if c.gripper_max_acceleration is None else c.gripper_max_acceleration
        return self._per_joint(arm, grip, c.max_acceleration_joints, "max_acceleration_joints") * self.dt ** 2

    def _collision_guard(self) -> CollisionGuard | None:
        if not self.config.collision:
            return None
        rc = self.robot.config
        return CollisionGuard(CollisionModel.from_config(rc.collision, rc.arm_joints))

    def _relative_caps(self) -> np.ndarray:
        rel = np.full(14, np.inf)
        if self.config.max_relative_target is not None:
            rel[:] = self.config.max_relative_target
            for i in self.robot.gripper_indices:
                rel[i] = np.inf
        return rel

    # ---- the filter -----------------------------------------------------------------------
    def filter(self, target, previous, measured=None, hold: bool = False,
               inward_from_previous: bool = False, previous_step=None) -> FilterResult:
        """Make ``target`` safe to send after ``previous`` (the last command actually sent).

        ``measured``: latest 14-D joint state (or None when stale/unknown) for the relative cap.
        ``hold``: repeat ``previous`` exactly (watchdog, e-stop) — no limit re-clipping, so holding a
        pose that rests beyond a limit does not move the arm.
        ``inward_from_previous``: for planned pose moves that start beyond a limit (the sleep pose):
        targets between ``previous`` and the limit pass unclipped, so a smooth path stays smooth
        instead of jumping to the limit at the step cap.
        ``previous_step``: ``previous`` minus the command before it (None: unknown, e.g. just seeded);
        with an acceleration limit configured, this step may change by at most max_acceleration·dt².
        """
        prev = np.asarray(previous, dtype=float)
        if prev.shape != (14,) or not np.all(np.isfinite(prev)):
            raise ValueError("previous command must be 14 finite values")  # programming error
        if hold:
            return FilterResult(prev.copy(), False)
        reason = self._invalid(target)
        if reason:
            return self._count(FilterResult(prev.copy(), True, reason), reason.split(":", 1)[0])
        t = np.asarray(target, dtype=float)
        reasons = []
        if inward_from_previous:
            c = np.clip(t, np.minimum(self.lower, prev), np.maximum(self.upper, prev))
        else:
            c = np.clip(t, self.lower, self.upper)
        if np.any(c != t):
            reasons.append(("limit", self._worst(t, c, "joint limit")))
        c = self._limit_acceleration(c, prev, previous_step, reasons)
        if measured is not None:
            m = np.asarray(measured, dtype=float)
            if m.shape == (14,) and np.all(np.isfinite(m)):
                r = np.clip(c, m - self.relative, m + self.relative)
                if np.any(r != c):
                    reasons.append(("relative", self._worst(c, r, "max relative target")))
                c = r
        s = np.clip(c, prev - self.step, prev + self.step)
        if np.any(s != c):
            reasons.append(("step", self._worst(c, s, "step cap")))
        # A previous command beyond a limit may stay or move inward, never outward.
        out = np.clip(s, np.minimum(self.lower, prev), np.maximum(self.upper, prev))
        if np.any(out != s):
            reasons.append(("limit", self._worst(s, out, "joint limit")))
        if self.guard is not None:
            g = self.guard.limit(out, prev)
            if g.intervened:  # counted as a collision: the rarest and most telling kind
                reasons.insert(0, ("collision", f"collision: target puts {g.closest}; "
                                                f"kept {100 * g.fraction:.0f} % of the step"))
                out = g.command
        if not reasons:
            return FilterResult(out, False)
        res = FilterResult(out, True, "; ".join(r for _, r in reasons))
        return self._count(res, reasons[0][0])

    def _limit_acceleration(self, c: np.ndarray, prev: np.ndarray, previous_step, reasons: list) -> np.ndarray:
        """Keep the step within ±accel of the previous step (which obeyed the step cap, so the window
        overlaps the step-cap window and the later step clip keeps the result inside both)."""
        if previous_step is None or not np.any(np.isfinite(self.accel)):
            return c
        v = np.clip(np.asarray(previous_step, dtype=float), -self.step, self.step)
        if v.shape != (14,) or not np.all(np.isfinite(v)):
            return c
        a = np.clip(c, prev + v - self.accel, prev + v + self.accel)
        if np.any(a != c):
            reasons.append(("acceleration", self._worst(c, a, "acceleration cap")))
        return a

    def _invalid(self, target) -> str:
        try:
            t = np.asarray(target, dtype=float)
        except (TypeError, ValueError):
            return f"rejected: not a numeric vector ({type(target).__name__})"
        if t.shape != (14,):
            return f"rejected: expected 14 values, got shape {t.shape}"
        bad = np.flatnonzero(~np.isfinite(t))
        if bad.size:
            return f"rejected: non-finite {self.names[bad[0]]}={t[bad[0]]} ({bad.size} joints); holding"
        return ""

    def _worst(self, wanted: np.ndarray, got: np.ndarray, what: str) -> str:
        d = np.abs(wanted - got)
        i = int(np.argmax(d))
        return f"{what}: {self.names[i]} {wanted[i]:+.3f} -> {got[i]:+.3f}"

    def _count(self, res: FilterResult, kind: str) -> FilterResult:
        self.interventions += 1
        self.kinds[kind] += 1
        self.last_reason = res.reason
        return res

    def within_guarantees(self, command, previous, atol: float = 1e-9) -> bool:
        """The invariant the tests assert (also usable as a runtime self-check)."""
        c = np.asarray(command, dtype=float)
        p = np.asarray(previous, dtype=float)
        if c.shape != (14,) or not np.all(np.isfinite(c)):
            return False
        if np.any(np.abs(c - p) > self.step + atol):
            return False
        lo = np.minimum(self.lower, p)
        hi = np.maximum(self.upper, p)
        if not (np.all(c >= lo - atol) and np.all(c <= hi + atol)):
            return False
        return self.guard is None or self.guard.allowed(c, p)
