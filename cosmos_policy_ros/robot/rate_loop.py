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


class _LoopThread:
    """The daemon thread a loop runs `_run` on, and its stop flag; `_wake` rouses a loop that waits elsewhere."""

    def __init__(self, name: str):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _wake(self) -> None:
        """RateLoop sleeps on the stop flag itself: nothing more to do."""

    def _run(self) -> None:
        raise NotImplementedError


class RateLoop(_LoopThread):
    def __init__(self, period: float, fn: Callable[[], None], name: str = "rate-loop", spin_s: float = 0.0003,
                 on_error: Callable[[BaseException], None] | None = None, priority: int = 0):
        super().__init__(name)
        self.period = period
        self.priority = priority  # >0: SCHED_FIFO priority for this thread (needs CAP_SYS_NICE / rtprio)
        self.priority_error = ""
        self.fn = fn
        self.spin_s = spin_s
        self.on_error = on_error
        self.stats = LoopStats(period)

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


class StepLoop(_LoopThread):
    """Lockstep: one tick per simulated step, on its own thread, instead of a wall-clock rate.

    ``advance(t)`` (callbacks) says the step at simulated time ``t`` is there (its /clock and both arms'
    joint states); the loop then calls ``fn(t)``, which returns whether it sent a command. A tick that
    sent nothing (the executor waits for a chunk: the sim waits for it, so time stands still) is tried
    again at the same ``t`` on ``poke()`` (a chunk arrived) or every ``retry_s`` of wall time. Stats are
    wall-clock periods between ticks that sent a command: how fast the graph runs, not a control rate.
    """

    def __init__(self, period: float, fn: Callable[[float], bool], name: str = "step-loop", retry_s: float = 0.02,
                 on_error: Callable[[BaseException], None] | None = None):
        super().__init__(name)
        self.period, self.fn, self.retry_s, self.on_error = period, fn, retry_s, on_error
        self.stats = LoopStats(period)
        self.priority_error = ""
        self._cond = threading.Condition()
        self._available: float | None = None  # newest step that is there
        self._done: float | None = None  # newest step a command was sent for
        self._poked = False

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def advance(self, t: float) -> None:
        with self._cond:
            if self._available is None or t > self._available:
                self._available, self._poked = t, True
                self._cond.notify_all()

    def poke(self) -> None:
        with self._cond:
            self._poked = True
            self._cond.notify_all()

    def _due(self) -> bool:
        return self._available is not None and (self._done is None or self._available > self._done)

    def _run(self) -> None:
        last_sent = None
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._stop.is_set() or (self._due() and self._poked), self.retry_s)
                self._poked = False
                if self._stop.is_set() or not self._due():
                    continue
                t = self._available
            try:
                sent = self.fn(t)
            except Exception as exc:  # noqa: BLE001 - the loop must survive a bad tick
                sent = False
                if self.on_error:
                    self.on_error(exc)
            self.stats.ticks += 1
            if sent:
                with self._cond:
                    self._done = t
                now = time.monotonic()
                if last_sent is not None:
                    self.stats.periods.append(now - last_sent)
                last_sent = now
