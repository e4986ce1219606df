"""Episode state machine and auto-record trigger, without ROS."""
from __future__ import annotations

import json
import math
import os
import stat
import sys
import time

import yaml
from bag_fixtures import joint_state_cdr

from cosmos_policy_ros.data.auto_record import GripperCloseTrigger
from cosmos_policy_ros.data.bag_reader import open_bag
from cosmos_policy_ros.data.manifest import Manifest
from cosmos_policy_ros.data.session import EpisodeSession

JS = "sensor_msgs/msg/JointState"


def test_start_stop_label_discard(tmp_path):
    s = EpisodeSession(tmp_path, default_task="transfer_cube")
    assert not s.write("/a", JS, 1, joint_state_cdr(1, range(9)))  # idle: nothing written
    r = s.command("start", 10, kind="policy")
    assert r.success and r.episode_index == 0 and r.event["event"] == "start"
    assert not s.command("start", 11).success  # already recording
    for i in range(5):
        assert s.write("/follower_left/joint_states", JS, 20 + i, joint_state_cdr(i, range(9)))
    r = s.command("stop", 100, outcome="success", value=0.5)
    assert r.success and "7 messages" in r.message  # 5 joint states + start and stop markers
    bag = open_bag(tmp_path / "episode_0000")
    assert bag.topics["/follower_left/joint_states"].count == 5
    assert bag.custom_data["outcome"] == "success" and bag.custom_data["value"] == "0.5"
    events = [bag.deserialize(m) for m in bag.messages(["/cosmos/episode_event"])]
    assert [e.event for e in events] == ["start", "stop"] and events[0].kind == "policy"
    assert events[1].outcome == "success" and math.isclose(events[1].value, 0.5)
    assert events[0].task == "transfer_cube" and math.isnan(events[0].value)

    # label after the bag closed: manifest and metadata.yaml custom_data (the bag still opens)
    assert s.command("label", 200, outcome="failure").success
    assert Manifest(tmp_path).get(0).outcome == "failure" and Manifest(tmp_path).get(0).value == 0.0
    assert open_bag(tmp_path / "episode_0000").custom_data["outcome"] == "failure"
    meta = yaml.safe_load((tmp_path / "episode_0000" / "metadata.yaml").read_text())
    assert meta["rosbag2_bagfile_information"]["version"] == 9

    # second episode discarded while recording; third discarded after stop
    assert s.command("start", 300).episode_index == 1
    assert s.command("discard", 310).success and not (tmp_path / "episode_0001").exists()
    assert s.command("start", 400).episode_index == 2
    s.command("stop", 410)
    assert s.command("discard", 420).success and not (tmp_path / "episode_0002").exists()
    m = Manifest(tmp_path)
    assert [(e.index, e.status) for e in m.episodes] == [(0, "complete"), (1, "discarded"), (2, "discarded")]
    assert not s.command("stop", 500).success
    assert not s.command("label", 500, outcome="maybe").success
    assert "unknown command" in s.command("pause", 500).message
    # a new session in the same folder continues the numbering
    assert EpisodeSession(tmp_path).command("start", 600).episode_index == 3


def test_shutdown_closes_the_open_episode(tmp_path):
    s = EpisodeSession(tmp_path)
    s.command("start", 1)
    s.write("/x", JS, 2, joint_state_cdr(2, range(9)))
    s.close(3)
    assert open_bag(tmp_path / "episode_0000").complete
    assert Manifest(tmp_path).get(0).stop_reason == "shutdown"


def test_gripper_trigger_needs_both_closed_for_hold_and_rearms_after_open():
    tr = GripperCloseTrigger(0.0, hold_s=0.3)
    assert not tr.update("left", 0.0, -0.05)
    assert not tr.update("right", 0.1, 0.4)          # right open
    assert not tr.update("right", 0.2, -0.05)        # both closed from t=0.2
    assert not tr.update("left", 0.4, -0.05)
    assert tr.update("left", 0.5, -0.05)             # held 0.3 s
    assert not tr.update("left", 0.9, -0.05)         # fires once
    tr.update("left", 1.0, 0.5)                      # opened: re-armed
    tr.update("left", 1.1, -0.05)
    assert tr.update("right", 1.5, -0.05)


FAKE_ROS2 = '''#!{python}
"""Stand-in for `ros2` (no ROS 2 CLI here): logs its argv, writes a bag like rosbag2 does on SIGINT."""
import json, signal, sys, time
args = sys.argv[1:]
if args[:3] == ["bag", "record", "--help"]:
    sys.exit(0)
out = args[args.index("-o") + 1]
open(out + ".argv.json", "w").write(json.dumps(args))
def finish(*_):
    from cosmos_policy_ros.data.bag_writer import BagWriter
    w = BagWriter(out)
    w.add_topic("/cosmos/episode_event", "cosmos_policy_ros/msg/EpisodeEvent")
    w.close()
    sys.exit(0)
signal.signal(signal.SIGINT, finish)
while True:
    time.sleep(0.05)
'''


def test_ros2_bag_backend_runs_one_ros2_bag_record_per_episode(tmp_path, monkeypatch):
    from cosmos_policy_ros.data import ros2_bag

    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "ros2"
    exe.write_text(FAKE_ROS2.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    ros2_bag.ros2_cli.cache_clear()
    try:
        assert ros2_bag.ros2_cli() == str(exe)
        markers = []
        s = EpisodeSession(tmp_path / "bags", backend="ros2bag", ros2_topics=["/a", "/cosmos/episode_event"],
                           ros2_args=["--max-cache-size", "0"], on_marker=markers.append, marker_grace_s=0.0)
        r = s.command("start", 1, kind="teleop")
        assert r.success, r.message
        assert not s.write("/a", JS, 2, b"x")  # ros2 bag subscribes itself
        argv_file = tmp_path / "bags" / "episode_0000.argv.json"
        deadline = time.monotonic() + 10
        # the stand-in ros2 writes the file after it starts: wait for complete JSON, not just the file
        while time.monotonic() < deadline and not (argv_file.exists() and argv_file.read_text().endswith("]")):
            time.sleep(0.05)
        assert json.loads(argv_file.read_text()) == ["bag", "record", "-s", "mcap", "-o",
                                                      str(tmp_path / "bags" / "episode_0000"),
                                                      "--max-cache-size", "0", "/a", "/cosmos/episode_event"]
        r = s.command("stop", 5, outcome="success")
        assert r.success, r.message
        assert [m["event"] for m in markers] == ["start", "stop"]  # published before ros2 bag stopped
        bag = open_bag(tmp_path / "bags" / "episode_0000")
        assert bag.custom_data["outcome"] == "success"
        assert Manifest(tmp_path / "bags").get(0).message_counts == {"/cosmos/episode_event": 0}
        s.command("start", 10)
        assert s.command("discard", 11).success and not (tmp_path / "bags" / "episode_0001").exists()
    finally:
        ros2_bag.ros2_cli.cache_clear()
