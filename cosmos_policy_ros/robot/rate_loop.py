"""A fixed-rate loop on its own thread, with period statistics.

Why not an rclpy timer: timers are dispatched by the executor's wait set, so their start time
depends on whatever other callbacks (images, chunks, services) are queued in that executor. A
dedicated thread sleeping to absolute deadlines keeps the 50 Hz stream independent of everything
else in the process; inference runs in another process, so it cannot hold our GIL. The last
``spin_s`` before each deadline is busy-waited, which removes most of the OS sleep overshoot.
Missed deadlines are counted as overruns and the schedule re-anchors instead of bursting.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Callable

import numpy as np


class LoopStats:
    """Tick-to-tick periods of the last ``window`` ticks."""

    def __init__(self, period: float, window: int = 1000):
        self.period = period
        self.periods: deque[float] = deque(maxlen=window)
        self.overruns = 0
        self.ticks = 0
        self.max_tick_duration = 0.0

    def summary(self) -> dict:
        p = np.asarray(self.periods, dtype=float)
        if p.size == 0:
            return dict(mean=float("nan"), p50_error=float("nan"), p99_error=float("nan"),
                        max_error=float("nan"), overruns=self.overruns, ticks=self.ticks)
        err = np.abs(p - self.period)
        return dict(mean=float(p.mean()), p50_error=float(np.percentile(err, 50)),
                    p99_error=float(np.percentile(err, 99)), max_error=float(err.max()),
                    overruns=self.overruns, ticks=self.ticks)


class RateLoop:
    def __init__(self, period: float, fn: Callable[[], None], name: str = "rate-loop", spin_s: float = 0.0003,
                 on_error: Callable[[BaseException], None] | None = None, priority: int = 0):
        self.period = period
        self.priority = priority  # >0: SCHED_FIFO priority for this thread (needs CAP_SYS_NICE / rtprio)
        self.priority_error = ""
        self.fn = fn
        self.spin_s = spin_s
        self.on_error = on_error
        self.stats = LoopStats(period)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _set_priority(self) -> None:
        if self.priority <= 0:
            return
        try:  # pid 0 = the calling thread on Linux
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.priority))
        except (OSError, AttributeError) as exc:
            self.priority_error = f"SCHED_FIFO {self.priority} not permitted ({exc}); running at normal priority"

    def _run(self) -> None:
        self._set_priority()
        clock = time.monotonic
        deadline = clock()
        last_start = None
        while not self._stop.is_set():
            start = clock()
            if last_start is not None:
                self.stats.periods.append(start - last_start)
            last_start = start
            try:
                self.fn()
            except Exception as exc:  # noqa: BLE001 - the loop must survive a bad tick
                if self.on_error:
                    self.on_error(exc)
            self.stats.ticks += 1
            self.stats.max_tick_duration = max(self.stats.max_tick_duration, clock() - start)
            deadline += self.period
            now = clock()
            if now > deadline:  # missed at least one slot: count, re-anchor, no burst
                self.stats.overruns += 1
                deadline = now
                continue
            remaining = deadline - now - self.spin_s
            if remaining > 0:
                self._stop.wait(remaining)
            while clock() < deadline:
                pass
