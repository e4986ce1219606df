"""A recorder killed mid-episode needs no manual step: the next session or `convert` repairs the bag.

The kill is real: the episode is recorded by a forked child process that is SIGKILL-ed after a flush,
so the MCAP file really lacks its summary and the kernel really drops the child's episode lock.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from bag_fixtures import image_cdr, joint_state_cdr, record_episode
from mcap.reader import make_reader
from rosbags.rosbag2 import Reader

from cosmos_policy_ros import cli
from cosmos_policy_ros.data.manifest import EpisodeLock, Manifest
from cosmos_policy_ros.data.session import EpisodeSession

S = 10**9
JS = "sensor_msgs/msg/JointState"
IMG = "sensor_msgs/msg/Image"


def write_teleop(session: EpisodeSession, t0: int, steps: int, rng: np.random.Generator) -> None:
    """ALOHA teleop traffic as the recorder node writes it: joint states at 100 Hz, two cameras at 25 Hz."""
    for k in range(steps):
        t = t0 + 3_000_000 + k * 10_000_000
        for topic in ("/follower_left/joint_states", "/follower_right/joint_states",
                      "/leader_left/joint_states", "/leader_right/joint_states"):
            session.write(topic, JS, t, joint_state_cdr(t, rng.normal(size=9)))
        if k % 4 == 0:
            for i, cam in enumerate(("cam_high", "cam_left_wrist")):
                session.write(f"/{cam}/camera/color/image_rect_raw", IMG, t + 1_000_000, image_cdr(t, fill=k + i))


def _record_then_hang(bag_dir: Path, t0: int, conn) -> None:
    """Child process: record ~1 s, flush (as the node's timer does), write a little more, then wait to die."""
    session = EpisodeSession(bag_dir, default_task="transfer_cube", log=lambda line: None)
    session.command("start", t0, kind="teleop")
    rng = np.random.default_rng(0)
    write_teleop(session, t0, 100, rng)
    session.flush()
    conn.send(dict(session.writer.flushed_counts))
    write_teleop(session, t0 + S, 10, rng)  # never flushed: stays in the writer's memory, lost with the process
    time.sleep(600)


class Recorder:
    """A recording in a child process: started, flushed once, then alive until killed."""

    def __init__(self, bag_dir: Path, t0: int = 5 * S):
        ctx = multiprocessing.get_context("fork")
        here, there = ctx.Pipe()
        self.proc = ctx.Process(target=_record_then_hang, args=(bag_dir, t0, there), daemon=True)
        self.proc.start()
        assert here.poll(60), "the recording child never flushed"
        self.flushed: dict[str, int] = here.recv()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(10)
        assert self.proc.exitcode == -signal.SIGKILL


def killed_recording(bag_dir: Path) -> dict[str, int]:
    """Record an episode in a child and SIGKILL it after a flush; returns the flushed counts per topic."""
    rec = Recorder(bag_dir)
    rec.kill()
    assert not (bag_dir / "episode_0000" / "metadata.yaml").exists()
    return rec.flushed


def test_stock_mcap_reader_refuses_the_killed_bag_before_repair(tmp_path):
    killed_recording(tmp_path)
    with open(tmp_path / "episode_0000" / "episode_0000.mcap", "rb") as f, pytest.raises(Exception):
        list(make_reader(f).iter_messages())
    assert Manifest(tmp_path).get(0).status == "recording"
    assert not EpisodeLock(tmp_path, "episode_0000").held()


def test_next_session_repairs_a_killed_recording_and_marks_it_interrupted(tmp_path, capsys):
    flushed = killed_recording(tmp_path)
    assert cli.main(["episodes", str(tmp_path)]) == 0
    assert "recorder died" in capsys.readouterr().out
    lines: list[str] = []
    session = EpisodeSession(tmp_path, log=lines.append)
    assert len(lines) == 1 and "episode 0 was interrupted" in lines[0]
    assert f"{sum(flushed.values())} messages kept" in lines[0]
    rec = Manifest(tmp_path).get(0)
    assert rec.status == "interrupted" and rec.message_counts == flushed  # every flushed message, nothing else
    assert rec.outcome == "failure" and rec.value == 0.0 and "recorder died" in rec.stop_reason
    assert rec.stop_ns > rec.start_ns and not (tmp_path / "episode_0000.lock").exists()
    assert session.command("start", 20 * S).episode_index == 1  # numbering goes on; the lock works again
    session.command("stop", 21 * S)
    assert cli.main(["episodes", str(tmp_path)]) == 0
    assert "interrupted" in capsys.readouterr().out
    lines.clear()
    EpisodeSession(tmp_path, log=lines.append)
    assert lines == []  # repaired once


def test_repaired_bag_opens_with_the_stock_mcap_reader_and_rosbags(tmp_path):
    flushed = killed_recording(tmp_path)
    EpisodeSession(tmp_path, log=lambda line: None)
    bag = tmp_path / "episode_0000"
    with open(bag / "episode_0000.mcap", "rb") as f:
        reader = make_reader(f)
        stats = reader.get_summary().statistics
        channels = reader.get_summary().channels
        times, per_topic = [], {}
        for _, channel, message in reader.iter_messages():
            times.append(message.log_time)
            per_topic[channel.topic] = per_topic.get(channel.topic, 0) + 1
    assert per_topic == flushed and stats.message_count == len(times) == sum(flushed.values())
    assert {c.topic for c in channels.values()} == set(flushed)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["message_count"] == len(times)
    assert info["starting_time"]["nanoseconds_since_epoch"] == min(times)
    assert info["duration"]["nanoseconds"] == max(times) - min(times)
    assert {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]} == flushed
    assert info["custom_data"]["status"] == "interrupted" and info["custom_data"]["outcome"] == "failure"
    with Reader(bag) as r:
        assert r.message_count == len(times) and r.start_time == min(times) and r.end_time == max(times) + 1
        assert sum(1 for _ in r.messages()) == len(times)


def test_convert_repairs_a_killed_bag_without_a_manual_step(tmp_path, capsys):
    record_episode(tmp_path / "bags")                       # episode 0: complete, a demonstration
    Recorder(tmp_path / "bags", t0=30 * S).kill()           # episode 1: killed mid-episode
    loose = tmp_path / "loose" / "episode_0001"             # the same killed bag copied away from its manifest
    shutil.copytree(tmp_path / "bags" / "episode_0001", loose)
    assert cli.main(["convert", str(tmp_path / "bags"), "-o", str(tmp_path / "ds"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.count("was interrupted") == 1 and "episode 1 was interrupted" in out
    assert Manifest(tmp_path / "bags").get(1).status == "interrupted"
    with h5py.File(tmp_path / "ds" / "episode_0.hdf5") as f:
        assert f.attrs["success"]
    with h5py.File(tmp_path / "ds" / "episode_1.hdf5") as f:  # usable, clearly not a success
        assert not f.attrs["success"] and f.attrs["outcome"] == "failure" and len(f["action"]) >= 45

    assert cli.main(["convert", str(loose), "-o", str(tmp_path / "ds2"), "--no-progress"]) == 0
    assert "episode 1 was interrupted" in capsys.readouterr().out
    with h5py.File(tmp_path / "ds2" / "episode_1.hdf5") as f:
        assert not f.attrs["success"] and f.attrs["outcome"] == "failure" and f.attrs["kind"] == "teleop"


def test_bag_info_recover_also_marks_the_episode_interrupted(tmp_path, capsys):
    killed_recording(tmp_path)
    assert cli.main(["bag-info", str(tmp_path / "episode_0000"), "--recover"]) == 0
    out = capsys.readouterr().out
    assert "was interrupted" in out and "complete" in out and "status=interrupted" in out
    assert Manifest(tmp_path).get(0).status == "interrupted"


def test_a_live_recording_is_not_touched_by_a_second_session(tmp_path, capsys):
    live = Recorder(tmp_path)
    try:
        mcap = tmp_path / "episode_0000" / "episode_0000.mcap"
        before = (mcap.stat().st_size, mcap.stat().st_mtime_ns)
        lines: list[str] = []
        second = EpisodeSession(tmp_path, log=lines.append)
        assert len(lines) == 1 and "still being recorded" in lines[0] and "left alone" in lines[0]
        assert Manifest(tmp_path).get(0).status == "recording" and EpisodeLock(tmp_path, "episode_0000").held()
        assert (mcap.stat().st_size, mcap.stat().st_mtime_ns) == before
        assert not (tmp_path / "episode_0000" / "metadata.yaml").exists()
        assert cli.main(["episodes", str(tmp_path)]) == 0
        assert "recorder died" not in capsys.readouterr().out
        assert cli.main(["convert", str(tmp_path / "episode_0000"), "-o", str(tmp_path / "ds"), "--no-progress"]) == 1
        err = capsys.readouterr().err.strip()
        assert "still being recorded" in err and "\n" not in err
        assert second.command("start", 50 * S).episode_index == 1
        second.command("stop", 51 * S)
    finally:
        live.kill()
    lines = []
    EpisodeSession(tmp_path, log=lines.append)  # once it is dead, the next session repairs it
    assert len(lines) == 1 and Manifest(tmp_path).get(0).status == "interrupted"
    assert Manifest(tmp_path).get(1).status == "complete"
