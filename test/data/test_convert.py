"""Bag -> ALOHA HDF5: values equal what was published; bad bags give one error and no files."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from bag_fixtures import TS, image_cdr, joint_state_cdr, record_episode

from cosmos_policy_ros.data.aloha_hdf5 import read_episode
from cosmos_policy_ros.data.bag_reader import BagError
from cosmos_policy_ros.data.bag_writer import BagWriter
from cosmos_policy_ros.data.convert import EpisodeSpec, convert_bag, convert_bags
from cosmos_policy_ros.data.recording_config import ConvertSettings
from cosmos_policy_ros.data.session import EpisodeSession
from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.train.value_targets import episode_returns, terminal_reward

JS = "sensor_msgs/msg/JointState"
IMG = "sensor_msgs/msg/Image"
S = 10**9
ROBOT = AlohaRobot.from_yaml()
SPEC = EpisodeSpec(ROBOT, load_cameras())
SETTINGS = ConvertSettings(image_compression="none")


def latest(items, t):
    return [x for x in items if x[0] <= t][-1]


def value_targets(path):
    """Per-step value targets of a converted episode, computed the way training does."""
    ep = read_episode(path)
    return episode_returns(len(ep), terminal_reward(ep.success, ep.success_score), gamma=0.998)


def test_round_trip_values_equal_published(tmp_path):
    sent = record_episode(tmp_path / "bags")
    out = tmp_path / "ep.hdf5"
    info = convert_bag(tmp_path / "bags" / "episode_0000", out, SPEC, SETTINGS)
    g = ROBOT.config.gripper
    with h5py.File(out) as f:
        ts = f["timestamps"][()]
        assert np.all(np.diff(ts) == 20_000_000)           # 50 Hz
        assert info.steps == len(ts) and len(ts) >= 45
        assert f.attrs["success"] and f.attrs["kind"] == "teleop" and f.attrs["task"] == "transfer_cube"
        assert json.loads(f.attrs["gripper_constants"])["leader_joint_open"] == g.leader_joint_open
        qpos, qvel, eff, act = (f["observations/qpos"][()], f["observations/qvel"][()],
                                f["observations/effort"][()], f["action"][()])
        for k, t in enumerate(ts):
            for i, side in enumerate(("left", "right")):
                _, p, v, e = latest(sent[f"/follower_{side}/joint_states"], t)
                finger_range = g.follower_position_open - g.follower_position_close
                want = np.append(p[:6], (p[7] - g.follower_position_close) / finger_range)
                np.testing.assert_array_equal(qpos[k, 7 * i:7 * i + 7], want)
                np.testing.assert_array_equal(qvel[k, 7 * i:7 * i + 6], v[:6])
                np.testing.assert_array_equal(eff[k, 7 * i:7 * i + 7], e[:7])
                _, lp, _, _ = latest(sent[f"/leader_{side}/joint_states"], t)
                want = np.append(lp[:6], (lp[6] - g.leader_joint_close) / (g.leader_joint_open - g.leader_joint_close))
                np.testing.assert_array_equal(act[k, 7 * i:7 * i + 7], want)
            _, fill = latest(sent["/cam_high/camera/color/image_rect_raw"], t)
            want = TS.deserialize_cdr(image_cdr(0, fill=fill), IMG).data.reshape(12, 16, 3)
            np.testing.assert_array_equal(f["observations/images/cam_high"][k], want)
        assert set(f["observations/images"]) == {"cam_high", "cam_left_wrist"}


def test_dataset_statistics_and_value_targets(tmp_path):
    record_episode(tmp_path / "bags", seed=1, outcome="success")
    record_episode(tmp_path / "bags", seed=2, outcome="failure", t0=50 * S)
    infos = convert_bags([tmp_path / "bags"], tmp_path / "ds", SPEC, SETTINGS, progress=False)
    assert [i.path.name for i in infos] == ["episode_0.hdf5", "episode_1.hdf5"]
    stats = json.loads((tmp_path / "ds" / "dataset_statistics.json").read_text())
    acts = np.concatenate([h5py.File(i.path)["action"][()] for i in infos])
    np.testing.assert_allclose(stats["actions_mean"], acts.mean(0))
    np.testing.assert_allclose(stats["actions_max"], acts.max(0))
    assert len(stats["proprio_std"]) == 14 and stats["num_episodes"] == 2
    ok, bad = (value_targets(i.path) for i in infos)
    assert ok[-1] == pytest.approx(1.0) and ok[0] < 1.0 and len(ok) == infos[0].steps
    assert (bad == -1.0).all()
    assert h5py.File(infos[0].path).attrs["labelled"] and not h5py.File(infos[1].path).attrs["success"]


def test_unlabelled_teleop_is_a_demonstration_unlabelled_rollout_is_not(tmp_path):
    for kind, want in (("teleop", True), ("policy", False)):
        s = EpisodeSession(tmp_path / kind)
        s.command("start", 0, kind=kind)
        for k in range(30):
            t = k * 10_000_000
            for role in ("follower", "leader"):
                for side in ("left", "right"):
                    s.write(f"/{role}_{side}/joint_states", JS, t, joint_state_cdr(t, np.zeros(9)))
            s.write("/cam_high/camera/color/image_rect_raw", IMG, t, image_cdr(t))
        s.command("stop", 3 * 10**8)
        info = convert_bag(tmp_path / kind / "episode_0000", tmp_path / f"{kind}.hdf5", SPEC,
                           ConvertSettings(action_source="leader", image_compression="none"))
        with h5py.File(info.path) as f:
            assert bool(f.attrs["success"]) is want and not f.attrs["labelled"] and f.attrs["outcome"] == ""
        assert bool(value_targets(info.path)[-1] == 1.0) is want   # a demonstration ends at 1, a failure at -1


def test_scored_success_keeps_its_score_as_the_terminal_reward(tmp_path):
    record_episode(tmp_path / "bags", outcome="success", value=0.7)
    info = convert_bag(tmp_path / "bags" / "episode_0000", tmp_path / "ep.hdf5", SPEC, SETTINGS)
    ep = read_episode(info.path)
    assert info.value == pytest.approx(0.7) and ep.success and ep.success_score == pytest.approx(0.7)
    assert terminal_reward(ep.success, ep.success_score) == pytest.approx(0.7)
    assert value_targets(info.path)[-1] == pytest.approx(1.0)   # rescaled by R: the last step is worth 1


def test_truncated_or_foreign_bags_convert_nothing(tmp_path):
    record_episode(tmp_path / "bags", seed=1)
    record_episode(tmp_path / "bags", seed=2, t0=50 * S)
    mcap = tmp_path / "bags" / "episode_0001" / "episode_0001.mcap"
    mcap.write_bytes(mcap.read_bytes()[:-5000])
    with pytest.raises(BagError) as err:
        convert_bags([tmp_path / "bags"], tmp_path / "ds", SPEC, SETTINGS, progress=False)
    assert "episode_0001" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "ds").exists() or not list((tmp_path / "ds").iterdir())

    w = BagWriter(tmp_path / "foreign")               # a bag of some other robot
    w.add_topic("/turtle1/pose", "std_msgs/msg/String")
    w.write("/turtle1/pose", 1, TS.serialize_cdr(TS.types["std_msgs/msg/String"]("x"), "std_msgs/msg/String"))
    w.close()
    with pytest.raises(BagError, match="not an ALOHA episode bag: no messages on /follower_left/joint_states"):
        convert_bag(tmp_path / "foreign", tmp_path / "f.hdf5", SPEC, SETTINGS)
    assert not list(tmp_path.glob("*.hdf5")) and not list(tmp_path.glob(".*tmp*"))


def test_camera_dropout_is_an_error_not_a_silent_repeat(tmp_path):
    s = EpisodeSession(tmp_path / "bags")
    s.command("start", 0)
    for k in range(100):
        t = k * 10_000_000
        for role in ("follower", "leader"):
            for side in ("left", "right"):
                s.write(f"/{role}_{side}/joint_states", JS, t, joint_state_cdr(t, np.zeros(9)))
        if k < 30 or k > 80:                      # 0.5 s gap
            s.write("/cam_high/camera/color/image_rect_raw", IMG, t, image_cdr(t))
    s.command("stop", 10**9)
    with pytest.raises(BagError, match="camera cam_high: no message for 0.2. s .*dropped out"):
        convert_bag(tmp_path / "bags" / "episode_0000", tmp_path / "x.hdf5", SPEC, SETTINGS)
    assert not list(tmp_path.glob("*.hdf5")) and not list(tmp_path.glob(".*"))
