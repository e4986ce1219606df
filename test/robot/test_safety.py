"""Safety filter: adversarial targets never produce a command outside limits or the step cap."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.safety import SafetyConfig, SafetyFilter

ROBOT = AlohaRobot.from_yaml()
START = ROBOT.pose14("start", gripper=0.5)

adversarial_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(-10, 10),
    st.sampled_from([np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0]),
)
adversarial_vector = st.one_of(
    st.lists(adversarial_float, min_size=14, max_size=14),
    st.lists(st.floats(-4, 4), min_size=14, max_size=14),
    st.lists(adversarial_float, min_size=0, max_size=30),  # wrong lengths, empty
)


@settings(max_examples=300, deadline=None)
@given(st.lists(adversarial_vector, min_size=1, max_size=40), st.booleans())
def test_every_command_within_limits_and_step_cap(targets, with_measured):
    f = SafetyFilter(ROBOT)
    prev = START.copy()
    for t in targets:
        measured = prev + 0.01 if with_measured else None
        res = f.filter(t, prev, measured)
        c = res.command
        assert c.shape == (14,) and np.all(np.isfinite(c))
        assert np.all(np.abs(c - prev) <= f.step + 1e-12)
        assert np.all(c >= ROBOT.lower - 1e-12) and np.all(c <= ROBOT.upper + 1e-12)
        prev = c


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.floats(-5, 5), min_size=14, max_size=14), min_size=1, max_size=30), st.booleans())
def test_seed_beyond_limit_only_moves_inward(targets, inward):
    # The ALOHA sleep pose rests beyond the shoulder and wrist_angle limits.
    f = SafetyFilter(ROBOT)
    prev = ROBOT.pose14("sleep")
    for t in targets:
        c = f.filter(t, prev, inward_from_previous=inward).command
        assert f.within_guarantees(c, prev)
        outside_before = np.maximum(ROBOT.lower - prev, 0) + np.maximum(prev - ROBOT.upper, 0)
        outside_after = np.maximum(ROBOT.lower - c, 0) + np.maximum(c - ROBOT.upper, 0)
        assert np.all(outside_after <= outside_before + 1e-12)
        prev = c


def test_hold_repeats_previous_even_beyond_limits():
    f = SafetyFilter(ROBOT)
    sleep = ROBOT.pose14("sleep")
    res = f.filter(START, sleep, hold=True)
    assert np.array_equal(res.command, sleep) and not res.intervened


def test_nan_is_rejected_with_reason_and_counted():
    f = SafetyFilter(ROBOT)
    t = START.copy()
    t[3] = np.nan
    res = f.filter(t, START)
    assert res.intervened and np.array_equal(res.command, START)
    assert "non-finite" in f.last_reason and "left_forearm_roll" in f.last_reason
    assert f.interventions == 1
    f.filter([0.0] * 13, START)
    assert "expected 14 values" in f.last_reason and f.interventions == 2
    f.filter("garbage", START)
    assert f.interventions == 3


def test_limit_clip_not_drop():
    f = SafetyFilter(ROBOT, SafetyConfig(max_relative_target=None), dt=100.0)  # huge step: limit only
    t = START.copy()
    t[1] = -5.0  # shoulder far below its limit
    t[13] = 2.0  # right gripper above 1
    res = f.filter(t, START)
    assert res.command[1] == pytest.approx(ROBOT.lower[1])
    assert res.command[13] == 1.0
    assert res.command[0] == t[0]  # other joints untouched
    assert "joint limit" in res.reason


def test_step_cap_is_velocity_times_dt_and_per_joint_configurable():
    f = SafetyFilter(ROBOT, SafetyConfig(max_velocity={"shoulder": 1.0, "right_waist": 0.5}, max_relative_target=None))
    assert f.step[0] == pytest.approx(ROBOT.config.velocity_limit * 0.02)
    assert f.step[1] == pytest.approx(0.02) and f.step[8] == pytest.approx(0.02)
    assert f.step[7] == pytest.approx(0.01)
    assert f.step[6] == pytest.approx(5.0 * 0.02)
    res = f.filter(START + 1.0, START)
    assert np.allclose(np.abs(res.command - START),
                       np.minimum(f.step, np.abs(np.clip(START + 1, ROBOT.lower, ROBOT.upper) - START)))
    assert "step cap" in res.reason


def test_relative_target_cap_arms_only():
    f = SafetyFilter(ROBOT, SafetyConfig(max_relative_target=0.1), dt=100.0)
    measured = START.copy()
    t = START.copy()
    t[0] += 0.5
    t[6] = 0.0  # gripper may close on an object far from the measured finger
    res = f.filter(t, START, measured)
    assert res.command[0] == pytest.approx(START[0] + 0.1)
    assert res.command[6] == 0.0
    assert "max relative target" in res.reason


def test_unknown_joint_in_config_is_one_line_error():
    with pytest.raises(ConfigError, match="safety.max_velocity.elbw"):
        SafetyFilter(ROBOT, SafetyConfig(max_velocity={"elbw": 1.0}))


def test_clean_target_passes_unchanged():
    f = SafetyFilter(ROBOT)
    t = START + 0.01
    res = f.filter(t, START, START)
    assert not res.intervened and np.array_equal(res.command, t) and f.interventions == 0


ACCEL = SafetyConfig(max_acceleration=20.0, gripper_max_acceleration=50.0, max_relative_target=None)


@settings(max_examples=300, deadline=None)
@given(st.lists(adversarial_vector, min_size=1, max_size=40))
def test_acceleration_cap_holds_inside_limits_and_step_cap_stays_hard(targets):
    """With max_acceleration set: limits and step cap still always hold, and the step changes by at most
    accel*dt^2 per tick except where a joint limit stopped the joint or the target was rejected."""
    f = SafetyFilter(ROBOT, ACCEL)
    prev, step = START.copy(), np.zeros(14)
    for t in targets:
        res = f.filter(t, prev, previous_step=step)
        c = res.command
        assert f.within_guarantees(c, prev)
        assert np.all(c >= ROBOT.lower - 1e-12) and np.all(c <= ROBOT.upper + 1e-12)
        new_step = c - prev
        at_limit = (np.abs(c - ROBOT.lower) < 1e-12) | (np.abs(c - ROBOT.upper) < 1e-12)
        if not res.reason.startswith("rejected"):
            ok = (np.abs(new_step - step) <= f.accel + 1e-12) | at_limit
            assert np.all(ok), res.reason
        prev, step = c, new_step


def test_alternating_chunk_no_longer_chatters_at_the_step_cap():
    """An alternating +-0.25 rad target reverses every joint at the step cap each tick without an
    acceleration cap; with one, the arm barely moves and reverses far less often."""
    def run(config):
        f = SafetyFilter(ROBOT, config)
        prev, step, cmds = START.copy(), np.zeros(14), []
        for k in range(250):
            t = START + (0.25 if k % 2 == 0 else -0.25)
            c = f.filter(t, prev, previous_step=step).command
            prev, step = c, c - prev
            cmds.append(c[0])
        d = np.diff(cmds)
        return int(np.sum(np.sign(d[1:]) * np.sign(d[:-1]) < 0)), float(np.max(np.abs(d)))

    reversals, largest = run(SafetyConfig(max_relative_target=None))
    assert reversals > 200 and largest == pytest.approx(np.pi * 0.02)
    reversals, largest = run(ACCEL)
    assert largest <= 20.0 * 0.02 ** 2 * 2 + 1e-12 and largest < 0.01


def test_acceleration_config_rejects_non_positive_and_unknown_joints():
    with pytest.raises(ConfigError, match="safety.max_acceleration: must be positive"):
        SafetyFilter(ROBOT, SafetyConfig(max_acceleration=0.0))
    with pytest.raises(ConfigError, match="safety.max_acceleration_joints.elbw"):
        SafetyFilter(ROBOT, SafetyConfig(max_acceleration=10.0, max_acceleration_joints={"elbw": 1.0}))
