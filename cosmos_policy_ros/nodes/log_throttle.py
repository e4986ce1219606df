"""Repeated log lines at most once per period, each saying how many like it were held back.

Why: a flood of bad input (a NaN chunk at 500 Hz) printed 2,439 ERROR lines in 5 s, burying
everything else. rclpy's ``throttle_duration_sec`` drops repeats silently; a lab wants to know that
the problem is still there and how big it is. Counts stay available for diagnostics.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Callable


class ThrottledLog:
    """``log(line, kind)``: the first line of a kind goes out at once, later ones at most every
    ``period_s``, with "(+N more in X s)" for the lines held back since the last one said."""

    def __init__(self, emit: Callable[[str], object], period_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.emit = emit
        self.period_s = period_s
        self.clock = clock
        self.total: Counter[str] = Counter()        # every line per kind, said or not
        self.suppressed: Counter[str] = Counter()   # held back per kind, since start
        self._held: Counter[str] = Counter()        # held back per kind, since the last line said
        self._said_at: dict[str, float] = {}

    def __call__(self, line: str, kind: str = "") -> bool:
        """Log ``line`` unless a line of the same ``kind`` was said less than period_s ago; True if said."""
        kind = kind or line
        now = self.clock()
        self.total[kind] += 1
        last = self._said_at.get(kind)
        if last is not None and now - last < self.period_s:
            self._held[kind] += 1
            self.suppressed[kind] += 1
            return False
        held = self._held.pop(kind, 0)
        suffix = f" (+{held} more like it in the last {now - last:.1f} s)" if held and last is not None else ""
        self._said_at[kind] = now
        self.emit(line + suffix)
        return True

    @property
    def suppressed_total(self) -> int:
        return sum(self.suppressed.values())
