"""The cosmos-aloha data tools: one-line errors, summary tables, plot, ros2 bag record equivalent."""
from __future__ import annotations

import h5py
from bag_fixtures import record_episode

from cosmos_policy_ros import cli
from cosmos_policy_ros.data.recording_config import RecordSettings, recorded_topics, ros2_bag_record_command
from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.robot.aloha import AlohaRobot


def test_convert_bag_info_episodes_and_plot(tmp_path, capsys):
    record_episode(tmp_path / "bags")
    assert cli.main(["convert", str(tmp_path / "bags"), "-o", str(tmp_path / "ds"), "--plot", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "episode_0.hdf5" in out and "success" in out and "leader" in out
    assert (tmp_path / "ds" / "episode_0.png").stat().st_size > 10_000
    assert (tmp_path / "ds" / "dataset_statistics.json").exists()
    with h5py.File(tmp_path / "ds" / "episode_0.hdf5") as f:
        assert f["observations/qpos"].shape[1] == 14 and f["action"].shape == f["observations/qpos"].shape

    assert cli.main(["bag-info", str(tmp_path / "bags" / "episode_0000")]) == 0
    out = capsys.readouterr().out
    assert "complete" in out and "/follower_left/joint_states" in out and "outcome=success" in out

    assert cli.main(["episodes", str(tmp_path / "bags"), "--label", "0", "failure"]) == 0
    assert "failure" in capsys.readouterr().out
    assert cli.main(["episodes", str(tmp_path / "ds")]) == 0
    assert "episode_0.hdf5" in capsys.readouterr().out


def test_bad_input_is_one_error_line(tmp_path, capsys):
    (tmp_path / "notabag").mkdir()
    assert cli.main(["convert", str(tmp_path / "notabag"), "-o", str(tmp_path / "ds"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cosmos-aloha convert: ") and "\n" not in err and "no bags" in err
    assert not (tmp_path / "ds").exists()
    assert cli.main(["bag-info", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_ros2_bag_record_line_lists_every_recorded_topic():
    topics = recorded_topics(AlohaRobot.from_yaml(), load_cameras(), RecordSettings(extra_topics={
        "/cosmos/action_chunk": "cosmos_policy_ros/msg/ActionChunk"}))
    line = ros2_bag_record_command(topics, "bags/episode_0000")
    assert line.startswith("ros2 bag record -s mcap -o bags/episode_0000 ")
    for t in ("/cam_high/camera/color/image_rect_raw", "/follower_left/joint_states", "/leader_right/joint_states",
              "/follower_right/commands/joint_single", "/cosmos/action_chunk", "/cosmos/episode_event"):
        assert f" {t}" in line
    compressed = recorded_topics(AlohaRobot.from_yaml(), load_cameras(), RecordSettings(image_transport="compressed"))
    assert compressed[0].name == "/cam_high/camera/color/image_rect_raw/compressed"
