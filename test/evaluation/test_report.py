"""What evaluations report: Wilson interval, summaries, the demo report's keys, strips, recorded evaluations."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cosmos_policy_ros.evaluation.report import (
    EpisodeResult,
    EvalResult,
    graph_report,
    print_graph_report,
    recorded_evaluations,
    save_strip,
    wilson_interval,
)


def make_episode(seed: int, success: bool, *, stage: int = 2, latencies=(0.1, 0.3), **extra) -> EpisodeResult:
    return EpisodeResult(seed=seed, success=success, max_stage=4 if success else stage, steps=500,
                         queries=len(latencies), policy_s=list(latencies), **extra)


@pytest.mark.parametrize("k, n, lo, hi", [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0),
                                          (0, 0, 0.0, 1.0)])
def test_wilson_interval_matches_the_textbook_values(k, n, lo, hi):
    assert wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_interval_narrows_with_more_episodes_and_contains_the_rate():
    widths = []
    for n in (10, 40, 160):
        lo, hi = wilson_interval(n // 4, n)
        assert lo < 0.25 < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]


def test_eval_result_counts_successes_stages_and_latency():
    res = EvalResult.from_episodes("transfer_cube", [make_episode(0, True), make_episode(1, False, stage=1),
                                                     make_episode(2, False, latencies=(0.2,))], wall_s=3.0)
    assert (res.n, res.successes) == (3, 1) and res.success_rate == pytest.approx(1 / 3)
    assert res.ci95 == wilson_interval(1, 3)
    assert res.mean_stage == pytest.approx((4 + 1 + 2) / 3)
    assert res.latency_s_median == pytest.approx(0.2)
    assert res.summary().startswith("transfer_cube: 1/3 success = 33.3 %")
    assert "safety filter" not in res.summary()


def test_safety_summary_adds_kinds_over_episodes_and_keeps_the_largest_change():
    eps = [make_episode(0, False, safety_interventions=100, safety_kinds={"limit": 90, "step": 10},
                        safety_max_arm_change_rad=0.1),
           make_episode(1, False, safety_interventions=150, safety_kinds={"step": 150}, safety_max_arm_change_rad=0.4)]
    text = EvalResult.from_episodes("transfer_cube", eps, wall_s=1.0).safety_summary()
    assert text == ("safety filter changed 25 % of the actions (step 160, limit 90); "
                    "largest arm-joint change 0.400 rad")
    eps[0].safety_gripper_only, eps[0].safety_max_gripper_change = 80, 0.0012
    eps[1].safety_gripper_only, eps[1].safety_max_gripper_change = 5, 0.02
    text = EvalResult.from_episodes("transfer_cube", eps, wall_s=1.0).safety_summary()
    assert text == ("safety filter changed 25 % of the actions (step 160, limit 90; 85 changed only a gripper, by at "
                    "most 0.02); largest arm-joint change 0.400 rad")


def test_graph_report_has_the_demo_report_keys():
    eps = [make_episode(1000, True, sim_time_s=4.2, wall_s=9.0, strip="episode_01000.png"),
           make_episode(1001, False, latencies=(), sim_time_s=10.0, wall_s=20.0, strip="episode_01001.png")]
    executor = {"loop_period_mean_s": 0.02, "loop_period_p99_error_s": 0.001, "interventions": 3,
                "last_intervention": "step", "chunks_accepted": 5, "chunks_rejected": 0}
    r = graph_report(eps, note="", mode="direct", chunk_mode="blend", checkpoint="ckpt", task="transfer_cube",
                     executor=executor)
    assert set(r) == {"note", "mode", "chunk_mode", "checkpoint", "task", "episodes", "success_rate", "success_ci95",
                      "chunk_latency_p50_s", "chunk_latency_p95_s", "executor"}
    assert r["episodes"][0] == {"seed": 1000, "success": True, "max_stage": 4, "sim_time_s": 4.2, "wall_s": 9.0,
                                "chunks": 2, "latency_s": [0.1, 0.3], "strip": "episode_01000.png",
                                "animation": "", "chunk_plot": ""}   # none written for this episode
    assert r["success_rate"] == 0.5 and r["success_ci95"] == list(wilson_interval(1, 2))
    assert r["chunk_latency_p50_s"] == pytest.approx(0.2)
    json.dumps(r)  # the report is written as JSON


@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_graph_report_without_any_chunk_says_nan_latency(capsys):
    r = graph_report([make_episode(5, False, latencies=())], note="random weights", mode="planning",
                     chunk_mode="synchronous", checkpoint="nowhere", task="transfer_cube", executor=None)
    assert np.isnan(r["chunk_latency_p50_s"])
    print_graph_report(r)
    out = capsys.readouterr().out
    assert "best-of-N planner" in out and "NOTE: random weights" in out
    assert "success: 0/1 = 0% (95% CI 0%-79%)" in out and "executor:" not in out


def test_save_strip_doubles_small_frames_under_a_label(tmp_path):
    frames = [np.full((32, 40, 3), v, np.uint8) for v in (0, 128, 255)]
    save_strip(frames, tmp_path / "s.png", "seed 3 fail stage 1")
    img = Image.open(tmp_path / "s.png")
    assert img.size == (3 * 40 * 2, 32 * 2 + 14)
    assert np.asarray(img)[14 + 10, 2 * 40 + 5].tolist() == [128, 128, 128]  # second frame, doubled
    save_strip([], tmp_path / "none.png", "no frames")
    assert not (tmp_path / "none.png").exists()


def test_recorded_evaluations_lists_eval_files_and_skips_broken_ones(tmp_path):
    (tmp_path / "eval_seeds0.json").write_text(json.dumps({"successes": 3, "n": 10, "success_rate": 0.3,
                                                           "ci95": [0.1, 0.6], "mean_stage": 2.5}))
    (tmp_path / "eval_broken.json").write_text("{not json")
    (tmp_path / "results.json").write_text("{}")
    assert recorded_evaluations(str(tmp_path)) == [
        "eval_seeds0.json: 3/10 = 30% (95% CI 10%-60%), mean stage 2.50/4"]


def test_the_demo_report_lists_interventions_by_kind_and_the_last_one(capsys):
    last = "collision: target puts right/gripper - table at -0.4 cm (margin 1.0 cm); kept 0 % of the step"
    executor = {"loop_period_mean_s": 0.02, "loop_period_p99_error_s": 0.001, "interventions": 9,
                "last_intervention": last, "intervention_kinds": {"step": 7, "collision": 2},
                "chunks_accepted": 5, "chunks_rejected": 0}
    print_graph_report(graph_report([make_episode(1, True)], note="", mode="direct", chunk_mode="blend",
                                    checkpoint="nowhere", task="transfer_cube", executor=executor))
    out = capsys.readouterr().out
    assert "safety interventions 9 (step 7, collision 2)" in out
    assert f"last intervention: {last}" in out
