"""The graph runner's parts that need no running graph: strip frames, the sim status it waits on, the result.

The runner itself (reset, start, wait through DDS) is exercised by test/foundation/test_demo.py.
"""
from __future__ import annotations

import numpy as np

from cosmos_policy_ros.evaluation.graph import (
    RESET_MAX_STEP,
    SimStatusWatch,
    StripCollector,
    episode_result,
    executor_summary,
)
from cosmos_policy_ros.evaluation.report import EvalResult, graph_report
from cosmos_policy_ros.msg import ExecutorStatus


def sim_status(seed: int, time_s: float, *, max_stage: int = 0, success: bool = False) -> dict:
    """What the sim node publishes on SIM_STATUS (50 Hz steps)."""
    return {"task": "transfer_cube", "seed": seed, "step": round(time_s * 50), "time": time_s, "stage": max_stage,
            "max_stage": max_stage, "success": success}


def frame(value: int) -> np.ndarray:
    return np.full((4, 6, 3), value, np.uint8)


def test_strip_keeps_one_frame_per_interval_of_the_running_episode_and_the_last():
    strip = StripCollector(every_s=1.0)
    strip.offer(frame(1), sim_status(7, 0.0))            # before begin: not this episode's
    strip.begin(7)
    strip.offer(frame(2), None)                          # no status yet
    strip.offer(frame(3), sim_status(6, 3.0))            # the previous episode's status
    for value, t in [(10, 0.0), (11, 0.4), (12, 1.0), (13, 1.9), (14, 2.1), (15, 2.5)]:
        strip.offer(frame(value), sim_status(7, t))
    frames = strip.finish()
    assert [int(f[0, 0, 0]) for f in frames] == [10, 12, 14, 15]
    strip.offer(frame(16), sim_status(7, 3.0))           # after finish: not collected
    assert len(strip.frames) == 4


def test_strip_converts_only_the_frames_it_keeps():
    converted = []

    def to_rgb(msg):
        converted.append(msg)
        return frame(msg)

    strip = StripCollector(every_s=0.5, to_rgb=to_rgb)
    strip.begin(1)
    for i, t in enumerate([0.0, 0.1, 0.2, 0.6]):
        strip.offer(i, sim_status(1, t))
    strip.finish()
    assert converted == [0, 3, 3]


def test_sim_status_watch_sees_the_reset_and_the_end_of_one_seed():
    watch = SimStatusWatch()
    assert not watch.is_reset_to(3) and not watch.episode_over(3, 10.0)
    watch.update(sim_status(2, 10.0))                    # the previous episode ran out
    assert not watch.is_reset_to(3) and not watch.episode_over(3, 10.0)
    watch.update(sim_status(3, 0.1))
    assert watch.is_reset_to(3) and watch.latest["step"] < RESET_MAX_STEP
    watch.update(sim_status(3, 5.0, max_stage=2))
    assert not watch.is_reset_to(3) and not watch.episode_over(3, 10.0)
    watch.update(sim_status(3, 10.0, max_stage=3))
    assert watch.episode_over(3, 10.0)
    watch.update(sim_status(4, 6.0, max_stage=4, success=True))
    assert watch.episode_over(4, 10.0)                   # success ends it early
    watch.update(sim_status(5, 10.5))
    assert not watch.episode_over(5, 10.0, started_s=1.2)  # the executor's start (gripper reboot) is not counted
    watch.update(sim_status(5, 11.2))
    assert watch.episode_over(5, 10.0, started_s=1.2)


def test_graph_episode_is_the_in_process_episode_result():
    ep = episode_result(sim_status(1000, 4.2, max_stage=4, success=True), [0.2, 0.4, 0.3], wall_s=8.5,
                        strip="episode_01000.png")
    assert (ep.seed, ep.success, ep.max_stage, ep.steps) == (1000, True, 4, 210)
    assert ep.queries == 3 and ep.policy_s == [0.2, 0.4, 0.3]
    assert (ep.sim_time_s, ep.wall_s, ep.strip) == (4.2, 8.5, "episode_01000.png")
    res = EvalResult.from_episodes("transfer_cube", [ep], wall_s=8.5)
    assert res.successes == 1 and res.latency_s_median == 0.3
    entry = graph_report([ep], note="", mode="direct", chunk_mode="blend", checkpoint="c", task="transfer_cube",
                         executor=None)["episodes"][0]
    assert entry["chunks"] == 3 and entry["sim_time_s"] == 4.2


def test_executor_summary_keeps_the_counters_the_report_prints():
    msg = ExecutorStatus(loop_period_mean_s=0.02, loop_period_p99_error_s=0.002, interventions=7,
                         last_intervention="step", chunks_accepted=12, chunks_rejected=1, queue_depth=30,
                         intervention_kinds=["step", "collision"], intervention_counts=[5, 2])
    summary = executor_summary(msg)
    assert summary["interventions"] == 7 and summary["chunks_accepted"] == 12 and summary["chunks_rejected"] == 1
    assert summary["last_intervention"] == "step" and abs(summary["loop_period_mean_s"] - 0.02) < 1e-6
    assert summary["intervention_kinds"] == {"step": 5, "collision": 2}
    assert set(summary) == {"loop_period_mean_s", "loop_period_p99_error_s", "interventions", "last_intervention",
                            "intervention_kinds", "chunks_accepted", "chunks_rejected"}
