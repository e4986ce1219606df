"""ExecutorCore: adversarial chunk streams, watchdog hold timing, e-stop hold, pose moves."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.backends.base import RecordingBackend, apply_tick
from cosmos_policy_ros.robot.executor_config import ExecutorConfig
from cosmos_policy_ros.robot.executor_core import ESTOP, HOLDING, IDLE, MOVING, RUNNING, ExecutorCore
from cosmos_policy_ros.robot.scheduler import Chunk, ChunkError, SchedulerConfig
from cosmos_policy_ros.robot.watchdog import WatchdogConfig

ROBOT = AlohaRobot.from_yaml()
START = ROBOT.pose14("start", gripper=0.5)
DT = 0.02
T0 = 100.0


def make_core(mode="blend", timeout=1.0, **kw) -> ExecutorCore:
    cfg = ExecutorConfig(scheduler=SchedulerConfig(mode=mode, **kw),
                         watchdog=WatchdogConfig(chunk_timeout_s=timeout, joint_state_timeout_s=0.0))
    core = ExecutorCore(ROBOT, cfg)
    core.on_measured(START, T0)
    return core


def smooth_chunk(stamp, n=50, seq=1, amp=0.3):
    tfs = 0.04 * np.arange(n)
    acts = START + amp * np.sin(tfs)[:, None] * np.ones(14)
    return Chunk.build(stamp, tfs, acts, sequence=seq, source="policy")


# ---- adversarial chunk streams through the whole core ---------------------------------------------
bad_value = st.sampled_from([np.nan, np.inf, -np.inf, 1e9, -1e9, 50.0])
chunk_event = st.fixed_dictionaries({
    "kind": st.just("chunk"),
    "n": st.integers(0, 60),
    "dim": st.sampled_from([14, 14, 14, 13, 15, 0]),
    "stamp_offset": st.floats(-3.0, 0.5),  # out-of-order and stale stamps included
    "period": st.sampled_from([0.02, 0.04, 0.1, 0.0, -0.04]),
    "jump": st.floats(-10, 10),
    "poison": st.one_of(st.none(), bad_value),
    "seq": st.integers(0, 5),
})
good_chunk = st.fixed_dictionaries({  # valid timing, arbitrary (huge) jumps: must be clipped, not dropped
    "kind": st.just("chunk"),
    "n": st.integers(2, 60),
    "dim": st.just(14),
    "stamp_offset": st.floats(-0.3, 0.0),
    "period": st.sampled_from([0.02, 0.04]),
    "jump": st.floats(-10, 10),
    "poison": st.none(),
    "seq": st.integers(0, 5),
})
tick_event = st.fixed_dictionaries({"kind": st.just("ticks"), "n": st.integers(1, 20)})
misc_event = st.sampled_from([{"kind": "estop", "on": True}, {"kind": "estop", "on": False},
                              {"kind": "start"}, {"kind": "stop"}, {"kind": "home"}, {"kind": "sleep"}])


def build_adversarial(ev, now):
    n, dim = ev["n"], ev["dim"]
    tfs = np.arange(n) * ev["period"]
    rng = np.random.default_rng(n * 31 + ev["seq"])
    base = np.resize(START, dim)
    acts = base + ev["jump"] * rng.standard_normal((n, dim))
    if ev["poison"] is not None and n and dim:
        acts[rng.integers(n), rng.integers(dim)] = ev["poison"]
    return Chunk.build(now + ev["stamp_offset"], tfs, acts, sequence=ev["seq"], source="fuzz")


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(good_chunk, chunk_event, tick_event, tick_event, misc_event), min_size=1, max_size=30),
       st.sampled_from(["open_loop", "blend", "temporal_ensemble"]))
def test_adversarial_chunks_never_produce_unsafe_commands(events, mode):
    core = make_core(mode, timeout=0.5, execute_steps=10)
    core.start(T0)
    backend = RecordingBackend()
    now = T0
    prev = None
    for ev in events:
        kind = ev["kind"]
        if kind == "chunk":
            try:
                ok, _ = core.on_chunk(build_adversarial(ev, now), now)
                event("chunk accepted" if ok else "chunk rejected by scheduler")
            except ChunkError:
                event("chunk invalid")  # the node logs it and drops the message
        elif kind == "estop":
            core.set_estop(ev["on"], now)
        elif kind in ("start", "stop", "home", "sleep"):
            getattr(core, kind)(now)
        else:
            for _ in range(ev["n"]):
                now += DT
                apply_tick(core.tick(now), backend)
                if backend.commands:
                    core.on_measured(backend.commands[-1], now)  # the arm tracks its goal
                if len(backend.commands) and (prev is None or backend.commands[-1] is not prev):
                    c = backend.commands[-1]
                    assert c.shape == (14,) and np.all(np.isfinite(c))
                    assert np.all(c >= ROBOT.lower - 1e-9) and np.all(c <= ROBOT.upper + 1e-9)
                    if prev is not None:
                        assert np.all(np.abs(c - prev) <= core.safety.step + 1e-9)
                    prev = c
    assert False not in backend.torque_calls
    event(f"interventions>0: {core.safety.interventions > 0}")


# ---- watchdog ---------------------------------------------------------------------------------------
def test_stale_chunk_holds_within_one_cycle_of_timeout():
    timeout = 0.5
    core = make_core(timeout=timeout)
    assert core.start(T0)[0]
    chunk_time = T0 + 0.1
    assert core.on_chunk(smooth_chunk(chunk_time, n=200), chunk_time)[0]  # 8 s of actions, never renewed
    now, held_at, commands = T0, None, []
    while now < T0 + 2.0:
        now = round(now + DT, 6)
        out = core.tick(now)
        commands.append((now, out.command.copy(), core.state))
        if held_at is None and core.state == HOLDING:
            held_at = now
    assert held_at is not None
    assert chunk_time + timeout <= held_at < chunk_time + timeout + DT + 1e-9
    held = [c for t, c, s in commands if t >= held_at]
    assert all(np.array_equal(h, held[0]) for h in held)  # position held, not following the old chunk
    moving = [c for t, c, s in commands if t < held_at]
    assert not np.array_equal(moving[-1], moving[len(moving) // 2])  # it was following the chunk before


def test_fresh_chunk_after_hold_resumes():
    core = make_core(timeout=0.3)
    core.start(T0)
    core.on_chunk(smooth_chunk(T0, n=100), T0)
    for i in range(1, 30):
        core.tick(T0 + i * DT)
    assert core.state == HOLDING and core.scheduler.queue_depth(T0 + 0.6) == 0
    t = T0 + 0.6
    assert core.on_chunk(smooth_chunk(t, seq=2), t)[0]
    core.tick(t + DT)
    assert core.state == RUNNING


def test_stale_joint_states_hold():
    cfg = ExecutorConfig(watchdog=WatchdogConfig(chunk_timeout_s=5, joint_state_timeout_s=0.2))
    core = ExecutorCore(ROBOT, cfg)
    core.on_measured(START, T0)
    core.start(T0)
    core.on_chunk(smooth_chunk(T0), T0)
    core.tick(T0 + 0.1)
    assert core.state == RUNNING
    core.tick(T0 + 0.2)
    assert core.state == HOLDING


# ---- e-stop --------------------------------------------------------------------------------------------
def test_estop_holds_position_and_never_disables_torque():
    core = make_core()
    backend = RecordingBackend()
    core.start(T0)
    core.on_chunk(smooth_chunk(T0, n=100, amp=1.0), T0)
    now = T0
    for _ in range(20):
        now += DT
        apply_tick(core.tick(now), backend)
    before = backend.commands[-1].copy()
    core.set_estop(True, now)
    assert core.state == ESTOP
    assert not core.on_chunk(smooth_chunk(now, seq=5), now)[0]
    for name in ("start", "home", "sleep"):
        assert not getattr(core, name)(now)[0]
    for _ in range(100):
        now += DT
        apply_tick(core.tick(now), backend)
    assert all(np.array_equal(c, before) for c in backend.commands[20:])
    assert len(backend.commands) == 120  # the hold is streamed, not silence
    assert backend.torque_calls == []
    core.set_estop(False, now)
    assert core.state == IDLE and core.tick(now + DT).command is None


def test_estop_from_idle_stays_passive():
    core = make_core()
    core.set_estop(True, T0)
    assert core.tick(T0 + DT).command is None  # never commanded: motors keep their own goal


# ---- pose moves ----------------------------------------------------------------------------------------
def test_home_moves_smoothly_from_sleep_to_start_then_idle():
    core = ExecutorCore(ROBOT, ExecutorConfig())
    sleep = ROBOT.pose14("sleep")
    core.on_measured(sleep, T0)  # resting beyond the shoulder/wrist limits
    ok, msg = core.home(T0)
    assert ok and core.state == MOVING, msg
    backend = RecordingBackend()
    now, prev = T0, sleep
    while core.state == MOVING and now < T0 + 20:
        now += DT
        core.on_measured(prev, now)
        apply_tick(core.tick(now), backend)
        c = backend.commands[-1]
        assert np.all(np.abs(c - prev) <= core.safety.step + 1e-9)
        prev = c
    assert core.state == IDLE
    goal = ROBOT.pose14("start", gripper=core.config.motion.home_gripper)
    assert np.allclose(backend.commands[-1], goal, atol=1e-4)
    assert core.safety.interventions == 0  # the move itself never needed clipping
    speeds = np.abs(np.diff(np.array(backend.commands), axis=0)) / DT
    assert speeds[:, [0, 1, 2, 3, 4, 5]].max() <= core.config.motion.speed * 1.01


def test_sleep_goal_is_clipped_and_torque_off_only_when_configured_and_at_pose():
    cfg = ExecutorConfig()
    cfg.motion.torque_off_after_sleep = True
    core = ExecutorCore(ROBOT, cfg)
    core.on_measured(START, T0)
    core.sleep(T0)
    now, torque_off = T0, []
    while core.state == MOVING:
        now += DT
        out = core.tick(now)
        core.on_measured(out.command, now)  # perfect tracking
        torque_off.append(out.torque_off)
    assert np.all(out.command >= ROBOT.lower) and out.command[1] == pytest.approx(ROBOT.lower[1])
    assert torque_off[-1] and not any(torque_off[:-1])


def test_services_need_joint_states():
    core = ExecutorCore(ROBOT, ExecutorConfig())
    ok, msg = core.start(T0)
    assert not ok and "joint state" in msg
    assert core.tick(T0).command is None


def test_chunks_ignored_unless_running():
    core = make_core()
    ok, msg = core.on_chunk(smooth_chunk(T0), T0)
    assert not ok and "IDLE" in msg


def test_latency_and_status_reported():
    core = make_core()
    core.start(T0)
    core.on_chunk(smooth_chunk(T0 - 0.3), T0)
    core.tick(T0 + DT)
    st_ = core.status(T0 + DT)
    assert st_["state"] == RUNNING and st_["chunks_accepted"] == 1
    assert st_["latency_estimate_s"] == pytest.approx(0.3)
    assert st_["queue_depth"] > 0 and math.isfinite(st_["chunk_age_s"])


def test_synchronous_mode_waits_for_a_slow_planner_without_tripping_the_watchdog():
    from cosmos_policy_ros.robot.executor_config import ExecutorConfig
    from cosmos_policy_ros.robot.scheduler import Chunk
    cfg = ExecutorConfig()
    cfg.scheduler.mode = "synchronous"
    robot = AlohaRobot.from_yaml()
    core = ExecutorCore(robot, cfg)
    q = robot.pose14("start", gripper=0.5)
    t = 100.0
    core.on_measured(q, t)
    assert core.start(t)[0]
    for k in range(3):                       # three plans, each 2.5 s late, each chunk 1 s long
        stamp = t
        while t < stamp + 2.5:               # waiting for the plan: holding, still RUNNING
            core.on_measured(q, t)
            out = core.tick(t)
            assert core.state == "RUNNING" or k == 0, (k, t, core.state)
            t += 0.02
        chunk = Chunk.build(stamp, 0.02 * np.arange(1, 51), np.repeat(q[None], 50, 0), sequence=k, source="planner")
        assert core.on_chunk(chunk, t)[0]
        requested = False
        for _ in range(55):
            core.on_measured(q, t)
            out = core.tick(t)
            requested |= out.request
            t += 0.02
        assert requested                     # asked again once the chunk was played
    assert core.scheduler.rejected == 0


def test_start_home_and_sleep_refuse_a_stale_joint_state_and_say_how_old():
    """With joint states 2.5 s old, start used to answer "running" and jump 0.36 rad in its first tick."""
    cfg = ExecutorConfig(watchdog=WatchdogConfig(joint_state_timeout_s=0.5))
    core = ExecutorCore(ROBOT, cfg)
    core.on_measured(START, T0)
    for call in (core.start, core.home, core.sleep):
        ok, line = call(T0 + 2.5)
        assert not ok and "joint state is 2.50 s old (limit watchdog.joint_state_timeout_s 0.50 s)" in line
        assert core.state == IDLE and core.tick(T0 + 2.5).command is None
    core.on_measured(START + 0.2, T0 + 2.5)        # the arm moved meanwhile; a fresh state arrives
    ok, _ = core.start(T0 + 2.51)
    assert ok
    first = core.tick(T0 + 2.52).command
    assert np.allclose(first, START + 0.2)          # seeded from where the arm really is


def test_a_future_chunk_is_rejected_and_stop_start_clears_the_ordering_memory():
    core = make_core()
    core.start(T0)
    ok, line = core.on_chunk(smooth_chunk(T0 + 1e6), T0)
    assert not ok and "from the future" in line
    assert core.on_chunk(smooth_chunk(T0 + 0.5, seq=2), T0 + 0.5)[0]
    core.stop(T0 + 0.6)
    core.start(T0 + 0.6)
    assert core.on_chunk(smooth_chunk(T0 + 0.4, seq=3), T0 + 0.6)[0]   # older stamp, new run: accepted


def test_status_names_the_collision_pair_and_counts_interventions_by_kind():
    """A chunk driving the right wrist down through the table: the status says collision, the pair and the counts."""
    core = make_core(timeout=5.0)
    assert core.start(T0)[0]
    goal = START.copy()
    goal[7:13] = [0.0, 0.9, 0.1, 0.0, -1.0, 0.0]  # right shoulder forward, wrist bent: through the table top
    n = 150
    acts = START + np.minimum(np.arange(n) / 100, 1.0)[:, None] * (goal - START)
    assert core.on_chunk(Chunk.build(T0, DT * np.arange(n), acts, sequence=1, source="policy"), T0)[0]
    backend = RecordingBackend()
    for k in range(1, n):
        apply_tick(core.tick(T0 + k * DT), backend)
        core.on_measured(backend.commands[-1], T0 + k * DT)  # the arm tracks its goal
    st_ = core.status(T0 + n * DT)
    assert st_["last_intervention"].startswith("collision: target puts right/"), st_["last_intervention"]
    assert " - table at " in st_["last_intervention"] and "margin 1.0 cm" in st_["last_intervention"]
    kinds = st_["intervention_kinds"]
    assert kinds["collision"] > 0 and sum(kinds.values()) == st_["interventions"]
    assert list(kinds.values()) == sorted(kinds.values(), reverse=True)  # most frequent first
