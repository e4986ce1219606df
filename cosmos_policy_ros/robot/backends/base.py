"""The one interface every backend implements, so the executor loop never knows what it drives.

Commands are always the 14-D safe vector (arm joints rad, grippers normalised: 0 closed .. 1 open, within the
robot config's gripper_command_range, which reaches a little past closed); each backend converts to its own
units. ``read`` returns a 14-D measured state when the backend reads the hardware itself (dynamixel) or None
when joint states arrive as ROS topics (interbotix, sim).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Backend(ABC):
    name = "base"

    def open(self) -> None:
        """Connect; must not move the arms or switch torque off."""

    @abstractmethod
    def write(self, command: np.ndarray) -> None:
        """Send one 14-D safe command."""

    def read(self) -> np.ndarray | None:
        return None

    def prepare(self) -> np.ndarray | None:
        """Before a start or home move from IDLE: clear what the last run left (a faulted gripper).

        May block for a few seconds; raises a CosmosError to refuse (one line). Must not move the arms.
        Returns a fresh 14-D measured state when the joint states the node holds went stale meanwhile.
        """
        return None

    def set_torque(self, enabled: bool) -> None:
        """Only ever called with False after a completed sleep move (ExecutorCore)."""

    def close(self) -> None:
        """Disconnect, leaving torque as it is (never drops the arms)."""


class RecordingBackend(Backend):
    """In-memory backend for tests and benches: keeps every command and torque call."""

    name = "recording"

    def __init__(self):
        self.commands: list[np.ndarray] = []
        self.torque_calls: list[bool] = []

    def write(self, command: np.ndarray) -> None:
        self.commands.append(np.array(command, dtype=float))

    def set_torque(self, enabled: bool) -> None:
        self.torque_calls.append(bool(enabled))


def apply_tick(out, backend: Backend) -> None:
    """Hand one ExecutorCore.tick() result to a backend."""
    if out.command is not None:
        backend.write(out.command)
    if out.torque_off:
        backend.set_torque(False)
