"""Safety markers without ROS: every checked capsule and its margin drawn where the guard has it, the closest
pair's line as long as its reported distance, gripper-tip paths at the fingers, plans coloured by score."""
from __future__ import annotations

import dataclasses
from collections import Counter

import mujoco
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.collision import CollisionModel, ObstacleCapsule, segment_distance
from cosmos_policy_ros.robot.collision_markers import (
    SafetyMarkers,
    capsule_shapes,
    closest_points,
    score_color,
)
from cosmos_policy_ros.sim.assets import gym_aloha_assets_dir

ROBOT = AlohaRobot.from_yaml()
START = ROBOT.pose14("start", gripper=0.5)
MODEL = CollisionModel.from_config(ROBOT.config.collision, ROBOT.config.arm_joints)
MARKERS = SafetyMarkers(MODEL)
# Right arm bent down: its gripper capsule inside the table margin.
GRIPPER_IN_TABLE = START.copy()
GRIPPER_IN_TABLE[7:13] = [0.0, 0.9, 0.1, 0.0, -1.0, 0.0]
# Both arms reaching forward, the left gripper 0.8 cm from the right hand (test/sim/test_collision_guard.py's
# crossing arms, three quarters of the way).
HANDS_CLOSE = START.copy()
HANDS_CLOSE[0:6] = START[0:6] + 0.75 * (np.array([0.39, 0.22, 0.69, 0.0, -0.47, 0.0]) - START[0:6])
HANDS_CLOSE[7:13] = START[7:13] + 0.75 * (np.array([-0.11, 0.25, 0.33, 0.0, -0.11, 0.0]) - START[7:13])


def random_pose(rng: np.random.Generator, spread: float = 1.2) -> np.ndarray:
    q = START + rng.uniform(-spread, spread, 14)
    return np.clip(q, ROBOT.lower, ROBOT.upper)


def rotate(quat, v) -> np.ndarray:
    """v rotated by quaternion (x, y, z, w)."""
    x, y, z, w = quat
    u = np.array([x, y, z])
    return v + 2 * np.cross(u, np.cross(u, v) + w * v)


def test_scene_draws_every_capsule_its_margin_shell_the_table_and_the_closest_pair():
    shapes = MARKERS.scene(START)
    n = len(MODEL.capsules.radius)
    shelled = int(np.sum(MARKERS.shell_margin > 0))
    kinds = Counter((s.ns, s.kind) for s in shapes)
    assert kinds == {("capsules", "cylinder"): n, ("capsules", "sphere_list"): n, ("margins", "cylinder"): shelled,
                     ("margins", "sphere_list"): shelled, ("table", "cube"): 2, ("closest", "line_list"): 1,
                     ("closest", "text"): 1}
    assert len({(s.ns, s.id) for s in shapes}) == len(shapes), "marker ids must be unique per namespace"
    a, b = MODEL.world_capsules(START[None])
    caps = {s.id: s for s in shapes if s.ns == "capsules"}
    shells = {s.id: s for s in shapes if s.ns == "margins"}
    for k in range(n):
        ends = caps[2 * k + 1]
        assert np.allclose(ends.points, [a[0, k], b[0, k]])
        assert ends.scale[0] == pytest.approx(2 * MODEL.capsules.radius[k])
        if MARKERS.shell_margin[k] > 0:
            swollen = MODEL.capsules.radius[k] + MARKERS.shell_margin[k]
            assert shells[2 * k].scale[0] == pytest.approx(2 * swollen) and shells[2 * k].color[3] < 0.5
    # the shell is the largest margin the capsule keeps to the other arm: arm_arm (2 cm) for every link here
    assert MARKERS.shell_margin.max() == pytest.approx(MODEL.config.margins.arm_arm)
    text = next(s for s in shapes if s.kind == "text")
    assert text.text == str(MODEL.closest(START))


def test_capsule_cylinders_lie_along_their_segment_whatever_its_direction():
    for axis in ([0, 0, 1], [0, 0, -1], [1, 0, 0], [0.3, -0.5, 0.2]):
        a = np.array([0.1, 0.2, 0.3])
        b = a + np.asarray(axis, float)
        body, ends = capsule_shapes("c", 0, a, b, 0.05, (1, 1, 1, 1))
        u = (b - a) / np.linalg.norm(b - a)
        assert np.allclose(rotate(body.orientation, np.array([0.0, 0.0, 1.0])), u)
        assert np.allclose(body.position, (a + b) / 2)
        assert body.scale == pytest.approx((0.1, 0.1, np.linalg.norm(b - a)))


def test_the_closest_pair_line_is_as_long_as_its_reported_distance():
    rng = np.random.default_rng(3)
    kinds = set()
    for q in [START, GRIPPER_IN_TABLE, HANDS_CLOSE] + [random_pose(rng) for _ in range(40)]:
        info, p, r = MARKERS.closest_pair(q)
        kinds.add("table" if info.pair.endswith("table") else "arm")
        if info.distance > 0:
            assert np.linalg.norm(p - r) == pytest.approx(info.distance, abs=1e-6), info
    assert kinds == {"table", "arm"}, "both kinds of pair must be exercised"
    line = next(s for s in MARKERS.closest(GRIPPER_IN_TABLE) if s.kind == "line_list")
    assert line.color[:3] == (1.0, 0.1, 0.1), "a pair inside its margin is drawn red"
    line = next(s for s in MARKERS.closest(HANDS_CLOSE) if s.kind == "line_list")
    assert line.color[:3] == (1.0, 0.75, 0.0), "a pair within 2 cm of its margin is drawn amber"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=12, max_size=12), st.sampled_from(["segments", "point", "parallel"]))
def test_closest_points_are_as_far_apart_as_segment_distance(v, kind):
    p1, q1, p2, q2 = np.array(v).reshape(4, 3)
    if kind == "point":
        q2 = p2
    elif kind == "parallel":
        q2 = p2 + (q1 - p1)
    x, y = closest_points(p1, q1, p2, q2)
    # 1 µm: near-degenerate segments meet the EPS guards of segment_distance
    assert np.linalg.norm(x - y) == pytest.approx(float(segment_distance(p1, q1, p2, q2)), abs=1e-6)


def test_an_obstacle_is_drawn_with_its_shell():
    upright = ObstacleCapsule("upright", (0, 0.9, 0), (0, 0.9, 1), 0.03)
    cc = dataclasses.replace(ROBOT.config.collision, obstacles=[upright])
    shapes = SafetyMarkers(CollisionModel.from_config(cc, ROBOT.config.arm_joints)).fixed()
    obstacles = [s for s in shapes if s.ns == "obstacles" and s.kind == "cylinder"]
    assert [s.scale[0] for s in obstacles] == pytest.approx([0.06, 0.06 + 2 * cc.margins.obstacle])


def test_gripper_tips_are_at_the_fingertips_in_mujoco():
    """Against the MJCF: the tip is within 3 cm of the farthest finger vertex and at most 1 cm beyond it along
    the gripper's axis, for any arm pose."""
    m = mujoco.MjModel.from_xml_path(str(gym_aloha_assets_dir() / ROBOT.config.collision.scene))
    d = mujoco.MjData(m)
    prefix = ROBOT.config.collision.arm_prefix
    names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, g) or "" for g in range(m.ngeom)]
    rng = np.random.default_rng(1)
    for _ in range(5):
        q = rng.uniform(ROBOT.lower, ROBOT.upper)
        for s, side in enumerate(("left", "right")):
            for j, joint in enumerate(ROBOT.config.arm_joints):
                d.qpos[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f"{prefix[side]}/{joint}")]] = \
                    q[7 * s + j]
        mujoco.mj_kinematics(m, d)
        tips = MARKERS.gripper_tips(q)[0]
        for s, side in enumerate(("left", "right")):
            fingers = [g for g in range(m.ngeom) if names[g].startswith(f"{prefix[side]}/") and "finger" in names[g]
                       and m.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH]
            verts = []
            for g in fingers:
                mesh = m.geom_dataid[g]
                v = m.mesh_vert[m.mesh_vertadr[mesh]:m.mesh_vertadr[mesh] + m.mesh_vertnum[mesh]]
                verts.append(v @ d.geom_xmat[g].reshape(3, 3).T + d.geom_xpos[g])
            v = np.concatenate(verts)
            body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"{prefix[side]}/gripper_link")
            forward = d.xmat[body].reshape(3, 3)[:, 0]
            far = v[np.argmax(v @ forward)]
            assert np.linalg.norm(tips[s] - far) < 0.03 and -0.001 < (tips[s] - far) @ forward < 0.01


def test_a_chunk_becomes_one_gripper_path_per_arm():
    actions = START + np.linspace(0, 0.3, 20)[:, None] * np.ones(14)
    paths = MARKERS.chunk_paths(actions)
    assert [(s.ns, s.id, s.kind, len(s.points)) for s in paths] == [("chunk", 0, "line_strip", 20),
                                                                    ("chunk", 1, "line_strip", 20)]
    tips = MARKERS.gripper_tips(actions)
    assert np.allclose(paths[0].points, tips[:, 0])
    assert np.allclose(paths[1].points[0], MARKERS.gripper_tips(START)[0, 1])
    assert paths[0].points[0, 0] < 0 < paths[1].points[0, 0]  # the left arm stands at x < 0


def test_a_plan_is_coloured_by_its_score_and_lists_every_candidate():
    actions = np.tile(START, (10, 1))
    best = MARKERS.plan(actions, [0.2, 0.9, 0.5], chosen=1)
    assert best[0].color[:3] == pytest.approx((0.0, 0.9, 0.2)) and best[0].ns == "plan"
    assert best[2].kind == "text" and best[2].text == "best of 3: 0.20 [0.90] 0.50 (chose 1)"
    worst = MARKERS.plan(actions, [0.2, 0.9, 0.5], chosen=0, fell_back=True)
    assert worst[0].color[:3] == pytest.approx((1.0, 0.3, 0.2))
    assert worst[2].text.endswith("(fell back to the direct policy chunk)")
    assert score_color(float("nan"), [0.1, 0.2]) == (0.7, 0.7, 0.7, 1.0)
