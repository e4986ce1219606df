"""Auto-record trigger: both leader grippers closed -> start an episode (the ALOHA operator's habit).

ALOHA's record_episodes waits until both leader grippers are below LEADER_GRIPPER_CLOSE_THRESH.
Here the grippers must stay closed ``hold_s`` (a single noisy reading does not start a bag), and the
trigger re-arms only after either gripper has been opened again, so a held squeeze starts one episode.
"""
from __future__ import annotations


class GripperCloseTrigger:
    def __init__(self, threshold_rad: float, hold_s: float = 0.3, sides=("left", "right")):
        self.threshold = float(threshold_rad)
        self.hold_s = float(hold_s)
        self.sides = tuple(sides)
        self._closed_since: dict[str, float | None] = {s: None for s in self.sides}
        self.armed = True

    def update(self, side: str, t_s: float, gripper_rad: float) -> bool:
        """Feed one leader gripper reading; True exactly when an episode should start."""
        closed = gripper_rad < self.threshold
        if not closed:
            self._closed_since[side] = None
            self.armed = True
            return False
        if self._closed_since[side] is None:
            self._closed_since[side] = t_s
        since = [self._closed_since[s] for s in self.sides]
        if self.armed and all(x is not None for x in since) and t_s - max(since) >= self.hold_s:
            self.armed = False
            return True
        return False

    def disarm(self) -> None:
        """Require the grippers to open before the next start (e.g. after a manual start/stop)."""
        self.armed = False
