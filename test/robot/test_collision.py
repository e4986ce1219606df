"""Collision guard: the capsules enclose the meshes, the kinematics match MuJoCo, and no command the
SafetyFilter emits brings a checked pair inside its margin (or, from inside, any closer)."""
from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import mujoco
import numpy as np
import pytest
import yaml
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.robot.aloha import AlohaRobot, RobotConfig
from cosmos_policy_ros.robot.collision import (
    CollisionConfig,
    CollisionModel,
    ObstacleCapsule,
    segment_distance,
)
from cosmos_policy_ros.robot.safety import SafetyConfig, SafetyFilter
from cosmos_policy_ros.sim.assets import gym_aloha_assets_dir

ROBOT = AlohaRobot.from_yaml()
START = ROBOT.pose14("start", gripper=0.5)
# Steps of up to 0.31 rad per joint (dt 0.1): the guard, not the step cap, keeps the arms apart.
GUARDED = SafetyConfig(collision=True, max_relative_target=None)
MODEL = SafetyFilter(ROBOT, GUARDED).guard.model
TOL = 1e-9
# Right arm bent down: its gripper capsule 2.4 cm into the table plane (margin 1 cm).
GRIPPER_IN_TABLE = START.copy()
GRIPPER_IN_TABLE[7:13] = [0.0, 0.9, 0.1, 0.0, -1.0, 0.0]


def workspace_target(spread: float = 1.2):
    """A 14-D command around the start pose: arm joints start ± spread rad, grippers 0..1."""
    joint = st.floats(-spread, spread, allow_nan=False)
    return st.tuples(*[st.floats(0, 1) if i in (6, 13) else joint for i in range(14)]).map(
        lambda v: np.where(np.isin(np.arange(14), (6, 13)), v, START + np.array(v)))


def clearances(q) -> np.ndarray:
    return MODEL.clearances(np.asarray(q, float)[None], exact=True)[0]


# A policy out of its data: goals anywhere near the workspace, each pursued for a number of ticks.
moves = st.lists(st.tuples(workspace_target(1.5), st.integers(1, 12)), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(moves, st.sampled_from([0.02, 0.1]))
def test_every_command_keeps_every_pair_outside_its_margin(goals, dt):
    f = SafetyFilter(ROBOT, GUARDED, dt=dt)
    prev = START.copy()
    assert clearances(prev).min() > 0
    for goal, ticks in goals:
        for _ in range(ticks):
            res = f.filter(goal, prev)
            assert clearances(res.command).min() >= -TOL, res.reason
            assert f.within_guarantees(res.command, prev)
            prev = res.command
    event(f"guard acted: {f.kinds['collision'] > 0}")


@settings(max_examples=60, deadline=None)
@given(st.one_of(workspace_target(1.5), st.just(GRIPPER_IN_TABLE)), moves)
def test_from_inside_a_margin_no_pair_gets_closer(start, goals):
    """Seeded anywhere (often inside a margin: the table, the other arm): a pair inside its margin never
    gets closer, and every other pair stays outside its margin."""
    f = SafetyFilter(ROBOT, GUARDED, dt=0.1)
    prev = np.clip(start, ROBOT.lower, ROBOT.upper)
    inside = clearances(prev).min() < 0
    for goal, ticks in goals:
        for _ in range(ticks):
            c = f.filter(goal, prev).command
            assert np.all(clearances(c) >= np.minimum(clearances(prev), 0.0) - TOL), f.last_reason
            prev = c
    event(f"seeded inside a margin: {inside}")
    event(f"guard acted: {f.kinds['collision'] > 0}")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.05, 0.05), min_size=14, max_size=14))
def test_commands_far_from_obstacles_pass_unchanged(delta):
    f = SafetyFilter(ROBOT, GUARDED)
    t = START + np.array(delta)
    assert clearances(t).min() > 0.005  # the start pose is > 2 cm clear of every margin
    res = f.filter(t, START)
    assert not res.intervened and np.array_equal(res.command, t) and not f.kinds


def test_a_step_into_the_table_is_shortened_along_its_segment_and_reported():
    f = SafetyFilter(ROBOT, GUARDED, dt=10.0)  # no step cap: the whole move in one tick
    res = f.filter(GRIPPER_IN_TABLE, START)
    arm = np.r_[0:6, 7:13]
    step, wanted = (res.command - START)[arm], (GRIPPER_IN_TABLE - START)[arm]
    fraction = step @ wanted / (wanted @ wanted)
    assert res.intervened and fraction == pytest.approx(7 / 8) and np.allclose(step, fraction * wanted)
    assert f.kinds == {"collision": 1}
    assert re.match(r"collision: target puts right/gripper - table at -2\.\d cm \(margin 1\.0 cm\); kept 88 % of",
                    f.last_reason), f.last_reason
    prev = res.command
    for _ in range(10):  # each tick keeps the clear part of what is left: the arm closes in on the margin
        prev = f.filter(GRIPPER_IN_TABLE, prev).command
    assert 0 <= clearances(prev).min() < 0.001


def test_inside_the_table_margin_moving_away_passes_and_deeper_is_held():
    f = SafetyFilter(ROBOT, GUARDED, dt=0.1)
    assert clearances(GRIPPER_IN_TABLE).min() < 0
    up, down = GRIPPER_IN_TABLE.copy(), GRIPPER_IN_TABLE.copy()
    up[8] -= 0.2    # right shoulder back: the gripper rises
    down[8] += 0.2  # forward: deeper into the table
    assert not f.filter(up, GRIPPER_IN_TABLE).intervened
    held = f.filter(down, GRIPPER_IN_TABLE)
    assert held.intervened and np.array_equal(held.command, GRIPPER_IN_TABLE)
    assert "kept 0 % of the step" in held.reason


def test_an_obstacle_capsule_stops_the_arm():
    post = ObstacleCapsule(name="post", a=(-0.1, 0.5, 0.0), b=(-0.1, 0.5, 0.6), radius=0.02)
    rc = dataclasses.replace(ROBOT.config, collision=CollisionConfig(obstacles=[post]))
    f = SafetyFilter(AlohaRobot(rc), GUARDED, dt=0.1)
    reach = START.copy()
    reach[1:3] = [0.4, 0.3]  # left shoulder forward, elbow open: the left gripper passes x = -0.1
    prev = START.copy()
    for _ in range(20):
        prev = f.filter(reach, prev).command
        assert f.guard.model.clearances(prev[None]).min() >= -TOL
    assert f.kinds["collision"] > 0 and "- post at" in f.last_reason


def test_gripper_commands_pass_the_guard_untouched():
    """Fingers are modelled over their whole travel: the gripper value never changes a checked distance."""
    f = SafetyFilter(ROBOT, GUARDED, dt=0.1)
    t = GRIPPER_IN_TABLE.copy()
    t[8] += 0.2
    t[6], t[13] = 0.9, 0.1
    res = f.filter(t, GRIPPER_IN_TABLE)
    assert res.intervened and res.command[6] == pytest.approx(0.9) and res.command[13] == pytest.approx(0.1)
    assert np.allclose(clearances(np.where(np.isin(np.arange(14), (6, 13)), 0.0, GRIPPER_IN_TABLE)),
                       clearances(GRIPPER_IN_TABLE))


segment = st.tuples(*[st.floats(-1, 1) for _ in range(6)]).map(lambda v: (np.array(v[:3]), np.array(v[3:])))


@settings(max_examples=200, deadline=None)
@given(segment, segment, st.sampled_from(["general", "point", "parallel"]))
def test_segment_distance_matches_a_brute_force_search(s1, s2, kind):
    (p1, q1), (p2, q2) = s1, s2
    if kind == "point":
        q2 = p2.copy()
    elif kind == "parallel":
        q2 = p2 + 0.7 * (q1 - p1)
    exact = float(segment_distance(p1, q1, p2, q2))
    u = np.linspace(0, 1, 401)
    a, b = p1 + u[:, None] * (q1 - p1), p2 + u[:, None] * (q2 - p2)
    grid = np.linalg.norm(a[:, None] - b[None], axis=2).min()
    # 1 µm slack: near-degenerate segments meet the EPS guards (1.5e-8 m seen), far below any margin
    assert exact <= grid + 1e-6
    assert grid - exact <= (np.linalg.norm(q1 - p1) + np.linalg.norm(q2 - p2)) / 400 + 1e-6


def test_capsules_enclose_every_mesh_vertex_and_kinematics_match_mujoco():
    """Against the MJCF itself: link poses equal MuJoCo's, and every vertex of every arm mesh (fingers
    anywhere in their travel) lies inside a capsule of its own arm."""
    m = mujoco.MjModel.from_xml_path(str(gym_aloha_assets_dir() / ROBOT.config.collision.scene))
    d = mujoco.MjData(m)
    rng = np.random.default_rng(0)
    prefix = ROBOT.config.collision.arm_prefix
    names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or "" for g in range(m.ngeom)]

    def qadr(side, joint):
        return m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f"{prefix[side]}/{joint}")]

    side_of = np.array([MODEL.links[i].side for i in MODEL.capsules.link])
    for _ in range(8):
        q = rng.uniform(ROBOT.lower, ROBOT.upper)
        for s, side in enumerate(("left", "right")):
            for j, joint in enumerate(ROBOT.config.arm_joints):
                d.qpos[qadr(side, joint)] = q[7 * s + j]
            finger = rng.uniform(0.021, 0.057)
            d.qpos[qadr(side, "left_finger")], d.qpos[qadr(side, "right_finger")] = finger, -finger
        mujoco.mj_kinematics(m, d)
        rot, pos = MODEL.link_poses(q[None])
        for k, link in enumerate(MODEL.links):
            body = prefix[("left", "right")[link.side]] + ("" if link.name == "base" else f"/{link.name}_link")
            b = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, body)
            assert np.allclose(pos[0, k], d.xpos[b], atol=1e-9) and np.allclose(rot[0, k].ravel(), d.xmat[b])
        a, b = MODEL.world_capsules(q)
        for g in range(m.ngeom):
            side = next((s for s, p in enumerate(prefix.values()) if names[g].startswith(p + "/")), None)
            if side is None or m.geom_type[g] != mujoco.mjtGeom.mjGEOM_MESH:
                continue
            mesh = m.geom_dataid[g]
            v = m.mesh_vert[m.mesh_vertadr[mesh]:m.mesh_vertadr[mesh] + m.mesh_vertnum[mesh]]
            v = v @ d.geom_xmat[g].reshape(3, 3).T + d.geom_xpos[g]
            own = side_of == side
            inside = segment_distance(v[:, None], v[:, None], a[0, own], b[0, own]) - MODEL.capsules.radius[own]
            assert inside.min(axis=1).max() <= 1e-9, names[g]


def test_disabled_guard_never_imports_mujoco():
    code = ("import sys, numpy as np\n"
            "from cosmos_policy_ros.robot.aloha import AlohaRobot\n"
            "from cosmos_policy_ros.robot.safety import SafetyConfig, SafetyFilter\n"
            "r = AlohaRobot.from_yaml()\n"
            "f = SafetyFilter(r, SafetyConfig(collision=False))\n"
            "f.filter(r.pose14('start') + 0.01, r.pose14('start'))\n"
            "assert f.guard is None and 'mujoco' not in sys.modules, 'mujoco imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_collision_config_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"collision.hand_links: unknown link 'wrsit' \(links: \["):
        CollisionModel.from_config(CollisionConfig(hand_links=["wrsit"]), ROBOT.config.arm_joints)
    src = (gym_aloha_assets_dir().parent / "missing.xml").name
    with pytest.raises(ConfigError, match="collision.scene: cannot load"):
        CollisionModel.from_config(CollisionConfig(scene=src), ROBOT.config.arm_joints)
    data = yaml.safe_load(open(ROBOT.config.source))
    data["collision"] = {"margins": {"table": -0.01}}
    bad = tmp_path / "robot.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"robot.yaml: collision.margins.table: must be >= 0 m or null, got -0.01"):
        AlohaRobot.from_yaml(bad)
    assert isinstance(AlohaRobot.from_yaml(ROBOT.config.source).config, RobotConfig)
