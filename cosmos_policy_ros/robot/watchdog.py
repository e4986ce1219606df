"""Freshness watchdog: the executor holds position when chunks or joint states stop arriving.

Why: nothing in the peer stacks watches for stale commands; a dead policy process must not leave
the arm following the tail of an old chunk, and a dead driver must not leave us clipping against a
frozen joint state. ``expired(now)`` turns true at the first tick with ``now - last >= timeout``,
so the hold starts within one control cycle of the timeout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from cosmos_policy_ros import config as cfg


@dataclass
class WatchdogConfig:
    chunk_timeout_s: float = 1.5  # no valid chunk for this long while RUNNING -> HOLDING
    joint_state_timeout_s: float = 0.5  # joint state older than this -> HOLDING (0 disables)

    def validate(self) -> None:
        if self.chunk_timeout_s <= 0:
            raise cfg.ConfigError("watchdog.chunk_timeout_s: must be positive")
        if self.joint_state_timeout_s < 0:
            raise cfg.ConfigError("watchdog.joint_state_timeout_s: must be >= 0 (0 disables)")


class Freshness:
    """Time since the last ``feed``; never fed counts as expired."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.last = -math.inf

    def feed(self, now: float) -> None:
        self.last = now

    def age(self, now: float) -> float:
        return now - self.last

    def expired(self, now: float) -> bool:
        return self.timeout > 0 and now - self.last >= self.timeout
