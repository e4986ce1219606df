"""Chunk scheduling: which 14-D target to send at each 50 Hz tick, given the chunks received so far.

Why time-based: a chunk's actions are due at ``stamp + time_from_start[i]`` (stamp = observation
time). Upstream Cosmos Policy runs ALOHA actions at 25 Hz, so the executor evaluates each chunk as a
piecewise-linear trajectory at the tick time — never "one action per tick". Actions whose due time
has passed are skipped (Diffusion Policy's latency compensation); a chunk wholly in the past is
rejected as stale; when nothing covers the current time, :meth:`target` returns None and the caller
holds the last safe command.

Modes (``SchedulerConfig.mode``):
  * ``open_loop`` — execute the first ``execute_steps`` (k) actions of a chunk, then switch to the
    newest chunk received; if none has arrived yet, keep following the rest of the current chunk
    (never stop while predictions remain), then hold.
  * ``temporal_ensemble`` — ACT: average all chunks covering now with weights exp(-m·i), i = 0 for
    the oldest (ACT weighs the oldest most).
  * ``blend`` — a new chunk takes over on arrival with a linear cross-fade from the previous chunk
    over ``blend_duration_s`` (LeRobot aggregates overlaps; a cross-fade avoids the step at the seam).
  * ``synchronous`` — upstream ALOHA deployment and the in-process evaluation: a chunk is played
    whole from its arrival (its times re-anchored to the arrival, nothing is skipped or stale), the
    arm then holds the last action, and only then is the next chunk requested, from an observation
    of the arm at rest. For producers slower than a chunk lasts (best-of-N planning on a CPU).
    ``synchronous_steps`` k > 0 plays only the first k actions of each chunk (`cosmos-aloha eval
    --execute k` in process and through the lockstep graph).

Requests: the next chunk is requested when ``now + latency + margin`` reaches the k-th action of
the newest chunk, where latency is the recent maximum of (arrival − stamp), so that with fast enough
inference the next chunk is there before it is needed. One request is outstanding at a time;
unanswered requests are repeated after ``request_retry_s``.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.errors import CosmosError

MODES = ("open_loop", "temporal_ensemble", "blend", "synchronous")


def actions_per_chunk_error(value: object) -> str | None:
    """Why `value` cannot be how many actions of each chunk are played (None: it can).

    One rule and one wording wherever the count arrives: --execute of eval, demo and export, a bundle's
    policy.json `synchronous_steps`, the scheduler's `execute_steps`.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"expected an integer >= 1 (actions of each chunk), got {value!r}"
    return None


class ChunkError(CosmosError, ValueError):
    """A chunk that cannot be executed (the message says why, in one line)."""


@dataclass
class Chunk:
    stamp: float  # observation time (s, same clock as ``now``)
    times: np.ndarray  # (N,) absolute due times, strictly increasing
    actions: np.ndarray  # (N, 14)
    sequence: int = 0
    source: str = ""
    latency_s: float = math.nan  # reported by the producer (observation -> publish)
    received: float = math.nan  # set by the scheduler on acceptance

    @classmethod
    def build(cls, stamp, time_from_start, actions, dim: int = 14, **kw) -> "Chunk":
        """Validate raw arrays into a chunk; raises ChunkError with one clear line."""
        try:
            a = np.asarray(actions, dtype=float)
            tfs = np.asarray(time_from_start, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ChunkError(f"chunk is not numeric: {exc}") from None
        if a.ndim != 2 or a.shape[0] == 0:
            raise ChunkError(f"chunk has no actions (shape {a.shape})")
        if a.shape[1] != dim:
            raise ChunkError(f"chunk actions have {a.shape[1]} values, expected {dim}")
        if tfs.shape != (a.shape[0],):
            raise ChunkError(f"chunk has {a.shape[0]} actions but {tfs.size} times")
        if not math.isfinite(stamp):
            raise ChunkError(f"chunk stamp is not finite ({stamp})")
        if not np.all(np.isfinite(tfs)) or np.any(tfs < 0):
            raise ChunkError("chunk time_from_start must be finite and >= 0")
        if np.any(np.diff(tfs) <= 0):
            i = int(np.flatnonzero(np.diff(tfs) <= 0)[0]) + 1
            raise ChunkError(f"chunk time_from_start not strictly increasing at point {i}")
        bad = np.argwhere(~np.isfinite(a))
        if bad.size:
            raise ChunkError(f"chunk action {bad[0][0]} joint {bad[0][1]} is {a[tuple(bad[0])]} (non-finite)")
        return cls(stamp=float(stamp), times=float(stamp) + tfs, actions=a, **kw)

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def at(self, t: float) -> np.ndarray:
        """Linear interpolation at time t (clamped to the first/last action)."""
        times, acts = self.times, self.actions
        if t <= times[0]:
            return acts[0].copy()
        if t >= times[-1]:
            return acts[-1].copy()
        j = int(np.searchsorted(times, t, side="right"))
        w = (t - times[j - 1]) / (times[j] - times[j - 1])
        return (1.0 - w) * acts[j - 1] + w * acts[j]

    def handover_time(self, k: int) -> float:
        """Due time of the k-th action: where open-loop switches and the next request aims."""
        return float(self.times[min(k, len(self.times)) - 1])


@dataclass
class SchedulerConfig:
    mode: Literal["open_loop", "temporal_ensemble", "blend", "synchronous"] = "blend"
    execute_steps: int = 25  # k: actions run from each chunk before the next takes over
    synchronous_steps: int = 0  # synchronous: actions played from each chunk before the next request (0 = all)
    ensemble_decay: float = 0.01  # ACT m in exp(-m*i)
    blend_duration_s: float = 0.2
    max_chunks: int = 8  # chunks kept for ensembling / blending
    use_stamps: bool = True  # false: treat a chunk as observed at (arrival - its inference_latency_s)
    latency_default_s: float = 0.5  # until the first chunk is measured
    latency_window: int = 10  # estimate = max of the last N measured latencies (decays, unlike a running max)
    latency_margin_s: float = 0.06
    request_retry_s: float = 1.0
    # s: a chunk stamped further ahead of this clock is rejected (a clock-skewed or broken producer would
    # otherwise act seconds early and block every later chunk as "out of order")
    max_future_s: float = 0.05

    def validate(self) -> None:
        if why := actions_per_chunk_error(self.execute_steps):
            raise cfg.ConfigError(f"scheduler.execute_steps: {why}")
        if self.synchronous_steps < 0:
            raise cfg.ConfigError("scheduler.synchronous_steps: must be >= 0 (0 = the whole chunk)")
        if self.blend_duration_s < 0 or self.ensemble_decay < 0:
            raise cfg.ConfigError("scheduler.blend_duration_s / ensemble_decay: must be >= 0")
        if self.max_chunks < 1 or self.latency_window < 1:
            raise cfg.ConfigError("scheduler.max_chunks / latency_window: must be >= 1")
        if self.request_retry_s <= 0:
            raise cfg.ConfigError("scheduler.request_retry_s: must be positive")
        if not self.max_future_s >= 0:
            raise cfg.ConfigError(f"scheduler.max_future_s: must be >= 0, got {self.max_future_s}")


class LatencyEstimator:
    """Conservative, decaying estimate: the max of the last ``window`` measurements."""

    def __init__(self, default: float, window: int):
        self.default = default
        self.samples: deque[float] = deque(maxlen=window)

    def add(self, latency: float) -> None:
        if math.isfinite(latency) and latency >= 0:
            self.samples.append(latency)

    @property
    def value(self) -> float:
        return max(self.samples) if self.samples else self.default

    @property
    def last(self) -> float:
        return self.samples[-1] if self.samples else math.nan


class ChunkScheduler:
    def __init__(self, config: SchedulerConfig | None = None):
        self.config = config or SchedulerConfig()
        self.config.validate()
        self.latency = LatencyEstimator(self.config.latency_default_s, self.config.latency_window)
        self.chunks: list[Chunk] = []  # accepted, oldest first
        self.active: Chunk | None = None  # open_loop only
        self.newest: Chunk | None = None  # kept after clear() for ordering checks
        self.last_request: float | None = None
        # s: a chunk counts as finished only this long after its last action (lockstep: half a tick, so a
        # tick stamped a nanosecond after the last action's due time still plays it)
        self.end_tolerance_s = 0.0
        self.accepted = 0
        self.rejected = 0

    # ---- input ----------------------------------------------------------------------------
    def add(self, chunk: Chunk, now: float) -> tuple[bool, str]:
        """Accept or reject a chunk; the reason is one line for the log."""
        ok, reason = self._check(chunk, now)
        if not ok:
            self.rejected += 1
            return False, reason
        chunk.received = now
        if self.config.use_stamps and chunk.stamp > 0:
            self.latency.add(now - chunk.stamp)
        else:
            self.latency.add(chunk.latency_s if math.isfinite(chunk.latency_s) else 0.0)
        if self.config.mode == "synchronous":  # play it (or its first k) from now; the stamp stays the observation time
            chunk.times = chunk.times + (now - chunk.stamp)
            k = self.config.synchronous_steps
            if 0 < k < len(chunk.times):
                chunk.times, chunk.actions = chunk.times[:k], chunk.actions[:k]
            self.chunks.clear()
        self.chunks.append(chunk)
        del self.chunks[: -self.config.max_chunks]
        self.newest = chunk
        if self.active is None:
            self.active = chunk  # open_loop: the first chunk runs its k actions before any switch
        self.last_request = None  # the outstanding request (if any) is answered
        self.accepted += 1
        return True, ""

    def _check(self, chunk: Chunk, now: float) -> tuple[bool, str]:
        if not self.config.use_stamps or chunk.stamp <= 0:
            lat = chunk.latency_s if math.isfinite(chunk.latency_s) and chunk.latency_s >= 0 else 0.0
            shift = (now - lat) - chunk.stamp
            chunk.stamp += shift
            chunk.times = chunk.times + shift
        if chunk.stamp > now + self.config.max_future_s:
            return False, (f"from the future: stamp {chunk.stamp - now:.3f} s ahead of this clock (limit "
                           f"scheduler.max_future_s {self.config.max_future_s:.3f} s); are the hosts' clocks in sync?")
        n = self.newest
        if n is not None:
            if chunk.stamp < n.stamp:
                return False, (f"out of order: stamp {chunk.stamp:.3f} is {n.stamp - chunk.stamp:.3f} s older "
                               f"than the newest accepted chunk (seq {n.sequence})")
            if chunk.stamp == n.stamp and chunk.source == n.source and chunk.sequence <= n.sequence:
                return False, f"duplicate: seq {chunk.sequence} with the stamp of accepted seq {n.sequence}"
        if chunk.end <= now and self.config.mode != "synchronous":
            return False, (f"stale: all {len(chunk.times)} actions are past due (last {now - chunk.end:.3f} s ago, "
                           f"observation {now - chunk.stamp:.3f} s old)")
        return True, ""

    def clear(self, forget_order: bool = False) -> None:
        """Forget queued chunks. A watchdog hold keeps the ordering memory (a late chunk stays late);
        stop / start / e-stop forget it too (``forget_order``), so nothing accepted before can block
        what comes after."""
        self.chunks.clear()
        self.active = None
        self.last_request = None
        if forget_order:
            self.newest = None

    # ---- output -----------------------------------------------------------------------------
    def target(self, now: float) -> np.ndarray | None:
        """The 14-D target due at ``now``, or None when dry (caller holds)."""
        self._drop_finished(now)
        if not self.chunks:
            return None
        mode = self.config.mode
        if mode == "open_loop":
            return self._open_loop(now)
        if mode == "temporal_ensemble":
            return self._ensemble(now)
        if mode == "synchronous":
            return self.chunks[-1].at(now)
        return self._blend(now)

    def _drop_finished(self, now: float) -> None:
        now = now - self.end_tolerance_s
        self.chunks = [c for c in self.chunks if c.end >= now]
        if self.active is not None and self.active.end < now:
            self.active = None

    def _open_loop(self, now: float) -> np.ndarray:
        newest = self.chunks[-1]
        k = self.config.execute_steps
        if self.active is None or (newest is not self.active and now >= self.active.handover_time(k)):
            self.active = newest
            self.chunks = [newest]
        return self.active.at(now)

    def _ensemble(self, now: float) -> np.ndarray:
        covering = [c for c in self.chunks if c.stamp <= now <= c.end]
        if not covering:
            covering = [self.chunks[-1]]
        w = np.exp(-self.config.ensemble_decay * np.arange(len(covering)))
        acts = np.stack([c.at(now) for c in covering])
        return (w[:, None] * acts).sum(0) / w.sum()

    def _blend(self, now: float) -> np.ndarray:
        # Nested cross-fades: each chunk fades in over blend_duration_s from the mix before it.
        d = self.config.blend_duration_s
        q = None
        first_needed = 0
        for i, c in enumerate(self.chunks):
            v = c.at(now)
            alpha = 1.0 if d <= 0 else min(max((now - c.received) / d, 0.0), 1.0)
            if q is None or alpha >= 1.0:
                q, first_needed = v, i
            else:
                q = (1.0 - alpha) * q + alpha * v
        del self.chunks[:first_needed]
        return q

    # ---- requests and diagnostics ----------------------------------------------------------------
    def request_deadline(self) -> float | None:
        """When the next chunk should take over (None: no chunk yet, i.e. needed now)."""
        if not self.chunks:
            return None
        if self.config.mode == "synchronous":
            return self.chunks[-1].end
        return self.chunks[-1].handover_time(self.config.execute_steps)

    def wants_request(self, now: float) -> bool:
        """True when a request for the next chunk should go out now (marks it outstanding)."""
        if self.last_request is not None and now - self.last_request < max(self.config.request_retry_s,
                                                                            2 * self.latency.value):
            return False
        deadline = self.request_deadline()
        lead = 0.0 if self.config.mode == "synchronous" else self.latency.value + self.config.latency_margin_s
        if deadline is not None and now + lead < deadline:
            return False
        self.last_request = now
        return True

    def queue_depth(self, now: float) -> int:
        """Actions of the newest chunk still ahead of ``now``."""
        if not self.chunks:
            return 0
        return int(np.count_nonzero(self.chunks[-1].times > now))

    def chunk_age(self, now: float) -> float:
        return math.nan if self.newest is None else now - self.newest.stamp
