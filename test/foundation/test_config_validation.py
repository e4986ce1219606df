"""Bad configuration files fail with one line naming the file and the key."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cosmos_policy_ros.config import ConfigError, config_path
from cosmos_policy_ros.graph import load_graph
from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.robot.aloha import AlohaRobot

ROBOT = config_path("robot/aloha_interbotix.yaml")


def _robot_variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(ROBOT.read_text())
    edit(data)
    p = tmp_path / "robot.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("edit, key, words", [
    (lambda d: d["joint_limits"].__setitem__("shoulder", "abc"), "joint_limits.shoulder", "expected a list"),
    (lambda d: d["joint_limits"].__setitem__("elbow", [1.0]), "joint_limits.elbow", "expected a list of 2 items"),
    (lambda d: d["joint_limits"].__setitem__("waist", [1.0, -1.0]), "joint_limits.waist", "must be below upper"),
    (lambda d: d["joint_limits"].pop("wrist_angle"), "joint_limits.wrist_angle", "required key is missing"),
    (lambda d: d["gripper"].pop("follower_joint_open"), "gripper.follower_joint_open", "required key is missing"),
    (lambda d: d["gripper"].__setitem__("follower_joint_open", "wide"), "gripper.follower_joint_open",
     "expected a number"),
    (lambda d: d.__setitem__("velocity_limt", 3.0), "velocity_limt", "unknown key"),
    (lambda d: d["poses"].__setitem__("start", [0, 0, 9, 0, 0, 0]), "poses.start", "outside joint_limits.elbow"),
    (lambda d: d.__setitem__("arms", ["right", "left"]), "arms", "must be [left, right]"),
    (lambda d: d["gripper"].__setitem__("leader_joint_close", 0.8298), "gripper.leader_joint_open", "must differ"),
])
def test_bad_robot_config_names_file_and_key(tmp_path, edit, key, words):
    path = _robot_variant(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        AlohaRobot.from_yaml(path)
    msg = str(info.value)
    assert msg.startswith(str(path)), msg
    assert key in msg and words in msg, msg
    assert "\n" not in msg


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+ not valid YAML"):
        AlohaRobot.from_yaml(bad)
    with pytest.raises(ConfigError, match="nothere.yaml: config file not found"):
        AlohaRobot.from_yaml(tmp_path / "nothere.yaml")
    top_list = tmp_path / "list.yaml"
    top_list.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        AlohaRobot.from_yaml(top_list)


def test_camera_and_graph_configs_validate(tmp_path):
    cams = tmp_path / "cams.yaml"
    cams.write_text("topic_pattern: /{name}/image\ncameras: {a: {role: wrist}, b: {role: wrist}}\n")
    with pytest.raises(ConfigError, match="exactly one camera must have role: primary"):
        load_cameras(cams)
    cams.write_text("topic_pattern: /{name}/image\ncameras: {a: {role: top}}\n")
    with pytest.raises(ConfigError, match=r"cameras.a.role: expected one of \['primary', 'wrist', 'secondary'\]"):
        load_cameras(cams)
    g = tmp_path / "graph.yaml"
    g.write_text("arguments: {}\nnodes: {n: {executable: e, module: m, name: n, parameters: {x: $(arg nope)}}}\n"
                 "modes: {}\n")
    with pytest.raises(ConfigError, match=r"nodes.n.parameters.x: unknown argument \$\(arg nope\)"):
        load_graph(g)
    g.write_text("arguments: {}\nnodes: {}\nmodes: {m: [ghost]}\n")
    with pytest.raises(ConfigError, match="modes.m: unknown node 'ghost'"):
        load_graph(g)


def test_shipped_configs_load():
    robot = AlohaRobot.from_yaml()
    assert len(robot.joint_names) == 14
    ros1 = AlohaRobot.from_yaml("robot/aloha_ros1.yaml")
    assert ros1.config.gripper.follower_joint_close != robot.config.gripper.follower_joint_close
    assert load_cameras().topic("cam_high") == "/cam_high/camera/color/image_rect_raw"
    assert set(load_graph().modes) == {"direct", "planning", "sim", "record"}


@pytest.mark.parametrize("name, load", [
    ("executor.yaml", "cosmos_policy_ros.robot.executor_config:load_executor_config"),
    ("policy.yaml", "cosmos_policy_ros.deploy.policy_config:load_policy_config"),
    ("planner.yaml", "cosmos_policy_ros.deploy.planner_config:load_planner_config"),
])
def test_a_topics_section_says_in_one_line_that_topics_are_remapped_now(tmp_path, name, load):
    import importlib

    module, func = load.split(":")
    loader = getattr(importlib.import_module(module), func)
    loader(name)  # the shipped file loads
    old = tmp_path / name
    old.write_text(config_path(name).read_text() + "topics:\n  action_chunk: /lab/chunk\n")
    with pytest.raises(ConfigError) as info:
        loader(old)
    msg = str(info.value)
    assert msg.startswith(f"{old}: topics: ") and "remapp" in msg and "config/graph.yaml" in msg, msg
    assert "\n" not in msg
