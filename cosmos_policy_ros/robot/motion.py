"""Smooth point-to-point moves (home = start pose, sleep pose) for both arms at once.

Why min-jerk instead of ALOHA's linear interpolation: zero velocity and acceleration at both ends,
so the move starts and stops without a jolt even with profile velocity 0 on the motors. The
duration is chosen so the peak joint speed (1.875 × mean for min-jerk) stays at ``speed``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosmos_policy_ros import config as cfg


@dataclass
class MotionConfig:
    speed: float = 0.6  # rad/s peak joint speed of home/sleep moves
    gripper_speed: float = 1.0  # normalised units per second
    min_duration_s: float = 1.5
    home_gripper: float = 1.0  # gripper at the start pose, 0 closed .. 1 open
    sleep_gripper: float = 0.0
    settle_timeout_s: float = 2.0  # extra time for the filtered command to reach the goal
    torque_off_after_sleep: bool = False
    sleep_tolerance: float = 0.15  # rad: measured must be this close to the (clipped) sleep pose

    def validate(self) -> None:
        if self.speed <= 0 or self.gripper_speed <= 0 or self.min_duration_s < 0:
            raise cfg.ConfigError("motion.speed / gripper_speed must be positive, min_duration_s >= 0")

MIN_JERK_PEAK = 1.875  # peak / mean velocity of the quintic 10t^3 - 15t^4 + 6t^5


@dataclass
class PoseMove:
    start: np.ndarray
    goal: np.ndarray
    t0: float
    duration: float
    name: str = ""

    @classmethod
    def plan(cls, start, goal, t0: float, speed: float, min_duration: float, gripper_speed: float,
             gripper_indices=(6, 13), name: str = "") -> "PoseMove":
        start = np.asarray(start, dtype=float).copy()
        goal = np.asarray(goal, dtype=float).copy()
        speeds = np.full(start.shape, float(speed))
        speeds[list(gripper_indices)] = gripper_speed
        need = float(np.max(np.abs(goal - start) / speeds)) * MIN_JERK_PEAK
        return cls(start, goal, t0, max(min_duration, need), name)

    def at(self, now: float) -> np.ndarray:
        tau = min(max((now - self.t0) / self.duration, 0.0), 1.0) if self.duration > 0 else 1.0
        s = tau ** 3 * (10 - 15 * tau + 6 * tau ** 2)
        return self.start + s * (self.goal - self.start)

    def done(self, now: float) -> bool:
        return now >= self.t0 + self.duration
