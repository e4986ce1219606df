"""Chunk scheduler: timing at the chunk's own period, stale/ordering rules, modes, early requests."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.robot.scheduler import (
    Chunk,
    ChunkError,
    ChunkScheduler,
    SchedulerConfig,
    actions_per_chunk_error,
)

P25 = 0.04  # upstream ALOHA action period (25 Hz)
T0 = 10.0  # stamp 0 means "unstamped" in ROS; tests start later


def ramp_chunk(stamp, n=50, period=P25, start=0.0, slope=1.0, seq=0, offset=0.0, latency=math.nan):
    """Every joint = start + slope * (due time - stamp): easy to check interpolation."""
    tfs = offset + period * np.arange(n)
    acts = (start + slope * tfs)[:, None] * np.ones((1, 14))
    return Chunk.build(stamp, tfs, acts, sequence=seq, source="policy", latency_s=latency)


def const_chunk(stamp, value, n=50, period=P25, seq=0):
    return Chunk.build(stamp, period * np.arange(n), np.full((n, 14), float(value)), sequence=seq, source="policy")


def test_follows_chunk_period_not_one_action_per_tick():
    s = ChunkScheduler(SchedulerConfig(mode="blend", blend_duration_s=0))
    assert s.add(ramp_chunk(10.0), 10.0)[0]
    # 50 Hz ticks on 25 Hz actions: every other tick is an interpolated midpoint.
    for i in range(10):
        now = 10.0 + 0.02 * i
        assert s.target(now)[0] == pytest.approx(0.02 * i)


def test_late_actions_are_skipped_by_stamp():
    s = ChunkScheduler(SchedulerConfig(blend_duration_s=0))
    ok, _ = s.add(ramp_chunk(10.0), 10.3)  # arrives 0.3 s after its observation
    assert ok
    assert s.target(10.3)[0] == pytest.approx(0.3)  # not action 0
    assert s.latency.value == pytest.approx(0.3)
    assert s.queue_depth(10.3) == 50 - 8  # actions due at <= 0.28 s are gone


@pytest.mark.parametrize("bad, msg", [
    (lambda: Chunk.build(1.0, [], np.zeros((0, 14))), "no actions"),
    (lambda: Chunk.build(1.0, [0.0], np.zeros((1, 13))), "13 values"),
    (lambda: Chunk.build(1.0, [0.0, 0.0], np.zeros((2, 14))), "not strictly increasing"),
    (lambda: Chunk.build(1.0, [0.0, 0.1], np.full((2, 14), np.nan)), "non-finite"),
    (lambda: Chunk.build(1.0, [0.0, 0.1], np.full((2, 14), np.inf)), "non-finite"),
    (lambda: Chunk.build(1.0, [0.0], np.zeros((2, 14))), "2 actions but 1 times"),
    (lambda: Chunk.build(math.inf, [0.0], np.zeros((1, 14))), "stamp"),
])
def test_invalid_chunks_raise_one_line(bad, msg):
    with pytest.raises(ChunkError, match=msg):
        bad()


def test_stale_and_out_of_order_and_duplicate_rejected():
    s = ChunkScheduler()
    ok, why = s.add(ramp_chunk(1.0), 5.0)
    assert not ok and why.startswith("stale")
    assert s.add(ramp_chunk(10.0, seq=2), 10.1)[0]
    ok, why = s.add(ramp_chunk(9.9, seq=3), 10.2)
    assert not ok and why.startswith("out of order")
    ok, why = s.add(ramp_chunk(10.0, seq=2), 10.2)
    assert not ok and why.startswith("duplicate")
    assert s.add(ramp_chunk(10.0, seq=3), 10.2)[0]  # same observation, newer sequence: fine
    assert (s.accepted, s.rejected) == (2, 3)


def test_runs_dry_returns_none():
    s = ChunkScheduler()
    assert s.target(0.0) is None
    s.add(const_chunk(1.0, 0.5, n=5), 1.0)
    assert s.target(1.1) is not None
    assert s.target(1.0 + 5 * P25) is None


def test_open_loop_switches_at_k_and_continues_when_late():
    s = ChunkScheduler(SchedulerConfig(mode="open_loop", execute_steps=10))
    s.add(const_chunk(T0, 0.0), T0)
    s.add(const_chunk(T0 + 0.1, 1.0), T0 + 0.1)  # arrives early: waits for the k boundary
    assert s.target(T0 + 0.2)[0] == 0.0
    assert s.target(T0 + 9 * P25 - 1e-6)[0] == 0.0
    assert s.target(T0 + 9 * P25)[0] == 1.0
    # No new chunk: the current one keeps running past k, then holds.
    assert s.target(T0 + 1.5)[0] == 1.0
    assert s.target(T0 + 0.1 + 50 * P25) is None


def test_temporal_ensemble_weights_oldest_most():
    s = ChunkScheduler(SchedulerConfig(mode="temporal_ensemble", ensemble_decay=1.0))
    s.add(const_chunk(T0, 0.0), T0)
    s.add(const_chunk(T0 + 0.5, 1.0), T0 + 0.5)
    w = math.exp(-1.0)
    assert s.target(T0 + 0.6)[0] == pytest.approx(w / (1 + w))
    assert s.target(T0 + 2.1)[0] == pytest.approx(1.0)  # only the newer chunk covers t > 1.96


def test_blend_crossfades_linearly():
    s = ChunkScheduler(SchedulerConfig(mode="blend", blend_duration_s=0.2))
    s.add(const_chunk(T0, 0.0), T0)
    s.add(const_chunk(T0 + 0.5, 1.0), T0 + 0.5)
    assert s.target(T0 + 0.5)[0] == pytest.approx(0.0)
    assert s.target(T0 + 0.6)[0] == pytest.approx(0.5)
    assert s.target(T0 + 0.71)[0] == pytest.approx(1.0)
    assert len(s.chunks) == 1


def test_unstamped_chunks_use_arrival_minus_reported_latency():
    s = ChunkScheduler(SchedulerConfig(use_stamps=False))
    c = ramp_chunk(0.0, latency=0.2)
    assert s.add(c, 100.0)[0]
    assert c.stamp == pytest.approx(99.8)
    assert s.target(100.0)[0] == pytest.approx(0.2)


def test_request_goes_out_early_by_measured_latency():
    cfg = SchedulerConfig(execute_steps=25, latency_margin_s=0.05)
    s = ChunkScheduler(cfg)
    assert s.wants_request(0.0)  # nothing yet: ask now
    assert not s.wants_request(0.1)  # outstanding
    s.add(ramp_chunk(T0), T0 + 0.3)  # latency 0.3
    handover = T0 + 24 * P25
    assert s.request_deadline() == pytest.approx(handover)
    assert not s.wants_request(handover - 0.35 - 0.02)
    assert s.wants_request(handover - 0.35 + 0.001)
    assert not s.wants_request(handover - 0.3)


@pytest.mark.parametrize("mode", ["open_loop", "blend", "temporal_ensemble"])
def test_pipelined_inference_never_runs_dry(mode):
    """A fake policy serves each request with latency L: execution never waits when L < k·period."""
    latency = 0.45
    s = ChunkScheduler(SchedulerConfig(mode=mode, execute_steps=25, latency_default_s=0.6))
    pending = []  # (arrival, chunk)
    dry_after_first = 0
    seq = 0
    for i in range(500):  # 10 s at 50 Hz
        now = T0 + 0.02 * i
        while pending and pending[0][0] <= now:
            assert s.add(pending.pop(0)[1], now)[0]
        if s.wants_request(now):
            seq += 1
            pending.append((now + latency, ramp_chunk(now, seq=seq)))
        if s.target(now) is None and s.accepted:
            dry_after_first += 1
    assert s.accepted >= 9
    assert dry_after_first == 0


def test_synchronous_plays_a_late_chunk_whole_then_requests_at_rest():
    """A planner slower than a chunk (2.8 s for a 2 s chunk): nothing is stale or skipped; the arm holds
    the last action until the next chunk, which is requested only when the current one has ended."""
    s = ChunkScheduler(SchedulerConfig(mode="synchronous"))
    assert s.wants_request(T0)
    arrival = T0 + 2.8
    ok, reason = s.add(ramp_chunk(T0), arrival)                      # blend would reject it as stale
    assert ok, reason
    assert s.latency.last == pytest.approx(2.8)
    assert s.target(arrival)[0] == pytest.approx(0.0)               # first action at arrival
    assert s.target(arrival + 10 * P25)[0] == pytest.approx(10 * P25)
    end = arrival + 49 * P25
    assert s.request_deadline() == pytest.approx(end)
    assert not s.wants_request(end - 0.02)                           # no look-ahead: request at rest
    assert s.wants_request(end + 0.001)
    assert s.target(end + 0.5) is None                               # dry: the executor holds the last command
    assert s.add(ramp_chunk(end + 0.001, seq=1, start=5.0), end + 3.0)[0]
    assert s.target(end + 3.0)[0] == pytest.approx(5.0)              # the new chunk from its first action
    assert len(s.chunks) == 1


def test_synchronous_steps_play_the_first_k_actions_then_request():
    """synchronous_steps k (eval --execute k through the lockstep graph): the chunk ends at its k-th action;
    the next request goes out there, at rest, and nothing after it is played."""
    s = ChunkScheduler(SchedulerConfig(mode="synchronous", synchronous_steps=10))
    assert s.add(ramp_chunk(T0), T0)[0]
    end = T0 + 9 * P25
    assert s.request_deadline() == pytest.approx(end)
    assert s.target(end)[0] == pytest.approx(9 * P25)
    assert not s.wants_request(end - 0.02) and s.wants_request(end + 0.001)
    assert s.target(end + 0.5) is None                               # dry: the 11th action is never played
    with pytest.raises(ConfigError, match="synchronous_steps"):
        SchedulerConfig(mode="synchronous", synchronous_steps=-1).validate()


def test_chunk_from_the_future_is_rejected_and_cannot_block_later_chunks():
    """A chunk stamped now + 1e6 s used to be accepted (acting seconds early) and then reject every valid
    chunk as out of order until its stamp passed. Small skew (within max_future_s) still passes."""
    s = ChunkScheduler(SchedulerConfig(blend_duration_s=0, max_future_s=0.05))
    ok, reason = s.add(const_chunk(10.0 + 1e6, 1.0), 10.0)
    assert not ok and reason.startswith("from the future: stamp 1000000.000 s ahead")
    assert s.add(const_chunk(10.03, 0.5), 10.0)[0]           # 30 ms of clock skew is tolerated
    assert s.add(const_chunk(10.1, 0.2, seq=1), 10.1)[0]     # and nothing blocks what follows


def test_stop_start_forgets_the_ordering_memory_but_a_watchdog_hold_does_not():
    s = ChunkScheduler(SchedulerConfig(blend_duration_s=0))
    assert s.add(const_chunk(20.0, 1.0), 20.0)[0]
    s.clear()                                   # watchdog hold: an older chunk is still late
    assert not s.add(const_chunk(19.5, 1.0), 20.1)[0]
    s.clear(forget_order=True)                  # stop / start / e-stop
    assert s.add(const_chunk(19.9, 1.0), 20.1)[0]


@pytest.mark.parametrize("bad", [0, -3, True, 2.0, "25", None])
def test_one_rule_for_how_many_actions_of_a_chunk_are_played(bad):
    """--execute, policy.json synchronous_steps and scheduler.execute_steps all refuse these, in the same words."""
    why = actions_per_chunk_error(bad)
    assert why == f"expected an integer >= 1 (actions of each chunk), got {bad!r}"
    assert actions_per_chunk_error(1) is None and actions_per_chunk_error(50) is None
    if isinstance(bad, int) and not isinstance(bad, bool):
        with pytest.raises(ConfigError, match=r"^scheduler\.execute_steps: expected an integer >= 1"):
            SchedulerConfig(execute_steps=bad).validate()
