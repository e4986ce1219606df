"""Per-stream rate, age and gap bookkeeping, so operators can see a dead camera at a glance."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class StreamReport:
    name: str
    count: int
    rate_hz: float
    age_s: float | None
    max_gap_s: float


class StreamStats:
    """Arrival times of one stream over a sliding window (times in seconds, caller's clock)."""

    def __init__(self, name: str, window_s: float = 2.0):
        self.name = name
        self.window_s = window_s
        self.count = 0
        self._times: deque[float] = deque()
        self.last: float | None = None

    def tick(self, now: float) -> None:
        self.count += 1
        self.last = now
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def report(self, now: float) -> StreamReport:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        times = list(self._times)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) >= 2 and times[-1] > times[0] else 0.0
        gaps = [b - a for a, b in zip(times, times[1:])]
        age = None if self.last is None else now - self.last
        return StreamReport(self.name, self.count, rate, age, max(gaps) if gaps else 0.0)
