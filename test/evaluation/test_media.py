"""What people look at after an evaluation, without ROS: captioned GIFs and the executed-chunk plot.

The collectors that fill them through the graph (ViewerCollector, GraphChunkTrace) are fed here by hand,
as their subscriptions would; test/foundation/test_demo.py runs them over DDS.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageSequence

from cosmos_policy_ros.evaluation.animation import (
    CAPTION_PX,
    EpisodeAnimation,
    StageTimeline,
    caption,
    captioned,
    outcome_caption,
    save_gif,
)
from cosmos_policy_ros.evaluation.chunk_plot import ChunkTrace, joint_index, plot_chunk_trace
from cosmos_policy_ros.evaluation.graph import GraphChunkTrace, ViewerCollector
from cosmos_policy_ros.evaluation.report import graph_report, media_lines
from cosmos_policy_ros.robot.aloha import AlohaRobot


def moving_frames(n: int, h: int = 240, w: int = 320) -> list[np.ndarray]:
    """Grey frames with a red square that moves right: what a viewer sees of a cube being carried."""
    frames = []
    for k in range(n):
        f = np.full((h, w, 3), 70, np.uint8)
        f[100:120, 10 + 8 * k:30 + 8 * k] = (220, 20, 20)
        frames.append(f)
    return frames


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


def test_captions_say_seed_time_and_stage_by_name():
    assert caption(1000, 3.21, 2) == "seed 1000   t  3.2 s   stage 2/4 lifted"
    assert outcome_caption(7, 6.4, 4, True) == "seed 7   SUCCESS at 6.4 s   stage 4/4 success"
    assert outcome_caption(7, 10.0, 1, False) == "seed 7   failure at 10.0 s   stage 1/4 touch"


def test_a_captioned_frame_keeps_the_picture_and_adds_a_text_band():
    frame = moving_frames(1)[0]
    out = captioned(frame, "seed 1   t 0.0 s   stage 0/4 none")
    assert out.shape == (240 + CAPTION_PX, 320, 3)
    np.testing.assert_array_equal(out[:240], frame)
    assert out[240:].max() > 200                         # white text on the black band


def test_gif_plays_every_frame_at_the_rate_and_holds_the_last(tmp_path):
    save_gif(moving_frames(4), tmp_path / "a.gif", fps=5.0, hold_last_s=1.5)
    frames = gif_frames(tmp_path / "a.gif")
    assert len(frames) == 4 and frames[0].shape == (240, 320, 3)
    assert not np.array_equal(frames[0], frames[-1])
    with Image.open(tmp_path / "a.gif") as im:
        durations = [f.info["duration"] for f in ImageSequence.Iterator(im)]
        assert im.info.get("loop") == 0
    assert durations == [200, 200, 200, 1500]
    red = frames[1][110, 30]                              # the palette keeps the cube red
    assert red[0] > 180 and red[1] < 60
    with pytest.raises(ValueError, match="no frames"):
        save_gif([], tmp_path / "b.gif", fps=5.0)


def test_episode_animation_ends_on_its_outcome_and_writes_nothing_without_frames(tmp_path):
    anim = EpisodeAnimation(seed=3, fps=5.0)
    assert not anim.write(tmp_path / "none.gif") and not (tmp_path / "none.gif").exists()
    for k, f in enumerate(moving_frames(3)):
        anim.add(f, 0.2 * k, stage=k)
    anim.close(moving_frames(3)[-1], 0.5, 4, success=True)
    assert anim.write(tmp_path / "ep.gif")
    assert len(gif_frames(tmp_path / "ep.gif")) == 4


def test_stage_timeline_gives_the_stage_reported_by_each_time():
    stages = StageTimeline()
    for t, s in [(0.2, 0), (1.0, 1), (1.4, 2), (2.0, 2)]:
        stages.add(t, s)
    assert [stages.at(t) for t in (0.0, 0.9, 1.0, 1.3, 5.0)] == [0, 0, 1, 1, 2]


def status(seed: int, t: float, max_stage: int = 0, success: bool = False) -> dict:
    return {"seed": seed, "time": t, "step": round(t * 50), "max_stage": max_stage, "success": success}


def test_viewer_collector_keeps_this_episodes_frames_in_order_with_their_stage():
    viewer = ViewerCollector(fps=5.0)
    viewer.offer(moving_frames(1)[0], 0.0)                # before begin: not collected
    viewer.begin(9)
    frames = moving_frames(6)
    viewer.offer(frames[0], 7.8)                          # the previous episode's last frames, late
    viewer.offer(frames[1], 0.0)
    viewer.status(status(9, 0.3, max_stage=1))
    viewer.offer(frames[2], 0.4)
    viewer.status(status(8, 3.0, max_stage=4))            # another seed's status: ignored
    viewer.offer(frames[3], 0.8)
    anim = viewer.finish(status(9, 1.1, max_stage=2))
    assert len(anim.frames) == 4                          # 0.0, 0.4, 0.8 and the closing outcome frame
    np.testing.assert_array_equal(anim.frames[0][:240], frames[1])
    np.testing.assert_array_equal(anim.frames[-1][:240], frames[3])
    assert viewer.seed is None
    viewer.offer(frames[4], 1.2)                          # after finish: not collected
    viewer.begin(10)
    viewer.offer(frames[4], 0.2)
    viewer.offer(frames[5], 0.0)                          # an earlier stamp: the sim was reset again
    assert [t for t, _ in viewer.frames] == [0.0]


def joint_state(robot: AlohaRobot, q7) -> tuple[list[str], list[float]]:
    """An xs_sdk joint_states (names, positions) for a 7-D [6 rad, gripper 0..1] arm state."""
    finger = float(robot.normalized_to_follower_finger(q7[6]))
    names = robot.driver_joint_names
    pos = {**dict(zip(robot.config.arm_joints, q7[:6])), robot.config.finger_joints[0]: finger}
    return names, [pos.get(n, 0.0) for n in names]


# the first joint state's stamp: simulated time since the reset (fast, lockstep), strict lockstep's clock that
# goes on across resets, the wall clock
@pytest.mark.parametrize("stamp0", [0.5, 23.5, 1.7e9])
def test_graph_trace_puts_everything_on_the_episodes_simulated_time(stamp0):
    robot = AlohaRobot.from_yaml("robot/aloha_interbotix.yaml")
    trace = GraphChunkTrace(robot)
    trace.arm_command(0, [0.1] * 6)                       # not begun: ignored
    trace.begin(start_s=0.5)
    trace.arm_command(0, [0.1] * 6)                       # no joint state yet: no time for it
    q = np.array([0.1, -0.9, 1.1, 0.0, -0.3, 0.0, 0.8])
    trace.joint_state(0, stamp0, *joint_state(robot, q))
    trace.executor_counts({"step": 4})                    # the baseline
    trace.arm_command(0, [0.2] * 6)
    trace.gripper_command(1, float(robot.normalized_to_follower_joint(0.25)))
    trace.chunk(stamp0 - 0.1, stamp0 - 0.1 + 0.02 * np.arange(3), np.zeros((3, 14)))
    trace.joint_state(1, stamp0 + 0.02, *joint_state(robot, q))
    trace.executor_counts({"step": 6, "collision": 1})
    got = trace.finish()
    t, v = got.measured.of(joint_index("left", "gripper"))
    np.testing.assert_allclose(t, [0.5])
    np.testing.assert_allclose(v, [0.8], atol=1e-6)
    ct, cv = got.commanded.of(joint_index("left", "waist"))
    np.testing.assert_allclose(ct, [0.5])
    np.testing.assert_allclose(cv, [0.2])
    np.testing.assert_allclose(got.commanded.of(joint_index("right", "gripper"))[1], [0.25], atol=1e-6)
    assert got.chunks[0].start == pytest.approx(0.5)      # when it arrived
    np.testing.assert_allclose(got.chunks[0].times, [0.4, 0.42, 0.44], atol=1e-6)
    (mark,) = got.interventions
    assert mark.t == pytest.approx(0.52) and mark.count == 3 and mark.kind == "step 2, collision 1"
    assert mark.joints == ()
    trace.joint_state(0, stamp0 + 1, *joint_state(robot, q))   # after finish: not collected
    assert len(got.measured.of(0)[0]) == 1


def test_chunk_plot_is_written_from_a_trace(tmp_path):
    trace = ChunkTrace()
    q = np.zeros(14)
    for k in range(3):
        actions = q + 0.01 * np.arange(25)[:, None] * (k + 1)
        trace.add_chunk(0.5 * k, 0.5 * k + 0.02 * np.arange(25), actions)
        for i in range(25):
            t = 0.5 * k + 0.02 * i
            trace.measured.add(t, q)
            trace.commanded.add(t, actions[i])
            q = 0.5 * (q + actions[i])
    trace.add_intervention(0.3, 1, "step", [joint_index("left", "waist")])
    trace.add_intervention(0.9, 5, "step 5")
    plot_chunk_trace(trace, tmp_path / "chunks.png", "seed 1 fail stage 0")
    with Image.open(tmp_path / "chunks.png") as im:
        assert im.width >= 800 and im.height >= 600
    assert not ChunkTrace() and trace


def test_the_report_lists_each_episodes_files_and_says_where_they_are(tmp_path):
    from cosmos_policy_ros.evaluation.report import EpisodeResult

    ep = EpisodeResult(seed=5, success=False, max_stage=1, steps=100, queries=2, policy_s=[0.2, 0.3],
                       strip="episode_00005.png",
                       animation="episode_00005.gif", chunk_plot="episode_00005_chunks.png")
    report = graph_report([ep], note="", mode="direct", chunk_mode="blend", checkpoint="c", task="t", executor=None)
    entry = report["episodes"][0]
    assert (entry["animation"], entry["chunk_plot"]) == ("episode_00005.gif", "episode_00005_chunks.png")
    assert media_lines(report["episodes"], tmp_path) == [
        f"seed 5: GIF {tmp_path / 'episode_00005.gif'}, chunk plot {tmp_path / 'episode_00005_chunks.png'}, "
        f"strip {tmp_path / 'episode_00005.png'}"]
