"""The planner node over real DDS: N scores from K x M value ensembles, the argmax is executed,
and a missed deadline falls back to the direct policy chunk."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from cosmos_policy_ros import topics

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from cosmos_policy_ros.deploy.random_bundle import make_random_bundle

    d = tmp_path_factory.mktemp("planner")
    bundle = make_random_bundle(d / "bundle")
    sim = subprocess.Popen([sys.executable, "-m", "cosmos_policy_ros.nodes.sim_node", "--ros-args",
                            "-r", "__node:=planner_test_sim", "-p", "width:=96", "-p", "height:=72",
                            "-p", "camera_rate_hz:=10.0", "-p", "cameras:=cam_high,cam_left_wrist,cam_right_wrist"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    yield d, bundle
    sim.terminate()
    sim.wait(timeout=20)


def _planner(d, bundle, name, planning=None, **overrides):
    cfg = {"num_candidates": 3, "world_steps": [1, 2], "value_steps": [1, 2], "deadline_s": 60.0, **overrides}
    path = d / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    extra = ["-p", f"planning_checkpoint:={planning}"] if planning else []
    return subprocess.Popen([sys.executable, "-m", "cosmos_policy_ros.nodes.planner_node", "--ros-args",
                             "-r", f"__node:={name}", "-p", f"policy_checkpoint:={bundle}",
                             "-p", f"planner_config:={path}", "-p", "trigger:=continuous", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())


def _collect(ros_context, proc, want: int, timeout: float = 180):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from cosmos_policy_ros.msg import ActionChunk, PlanResult

    node = rclpy.create_node("planner_listener", context=ros_context)
    plans, chunks = [], []
    node.create_subscription(PlanResult, topics.PLAN_RESULT, plans.append, 10)
    node.create_subscription(ActionChunk, topics.ACTION_CHUNK, chunks.append, 10)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    end = time.monotonic() + timeout
    try:
        while len(plans) < want and time.monotonic() < end and proc.poll() is None:
            ex.spin_once(timeout_sec=0.1)
        end = time.monotonic() + 2
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.1)
    finally:
        node.destroy_node()
        proc.send_signal(2)
        out = proc.communicate(timeout=30)[0]
    return plans, chunks, out


def test_planner_scores_candidates_and_executes_the_best(setup, ros_context):
    from cosmos_policy_ros.inference.planning import choose
    from cosmos_policy_ros.inference.value import aggregate_values

    d, bundle = setup
    plans, chunks, out = _collect(ros_context, _planner(d, bundle, "planner_ok"), want=2)
    assert len(plans) >= 2, out[-2000:]
    for p in plans:
        assert not p.fell_back_to_direct
        assert (p.num_candidates, p.num_futures, p.num_values) == (3, 2, 2)
        scores = np.array(p.candidate_scores)
        raw = np.array(p.raw_values).reshape(3, 2, 2)
        assert np.all((raw >= 0) & (raw <= 1))
        assert np.allclose(scores, [aggregate_values(raw[q], "majority_mean", 0.05) for q in range(3)], atol=1e-6)
        assert p.chosen_index == choose(scores) and scores[p.chosen_index] == scores.max()
        assert p.chosen.source == "planner" and len(p.chosen.trajectory.points) == 50
        assert p.world_model_latency_s > 0 and p.value_latency_s > 0
    by_seq = {c.sequence: c for c in chunks}
    # DDS does not order two topics: the newest plan may arrive before its chunk at the end of the window
    p = next((p for p in reversed(plans) if p.sequence in by_seq), None)
    assert p is not None, (sorted(by_seq), [q.sequence for q in plans])
    published = by_seq[p.sequence].trajectory.points
    assert [pt.positions for pt in published] == [pt.positions for pt in p.chosen.trajectory.points]


def test_planner_falls_back_to_direct_policy_when_late(setup, ros_context):
    d, bundle = setup
    plans, chunks, out = _collect(ros_context, _planner(d, bundle, "planner_late", deadline_s=0.001), want=1)
    assert plans, out[-2000:]
    assert plans[0].fell_back_to_direct and len(plans[0].candidate_scores) == 0
    assert len(plans[0].chosen.trajectory.points) == 50
    assert "planning exceeded" in out


def test_planner_scores_with_a_separate_planning_checkpoint(setup, ros_context):
    """Dual deployment: actions from the policy bundle, world model + value from the planning bundle;
    a planning bundle trained with other statistics is refused in one line."""
    from cosmos_policy_ros.deploy.bundle import resolve_bundle
    from cosmos_policy_ros.deploy.random_bundle import make_random_bundle

    d, bundle = setup
    planning = make_random_bundle(d / "planning", seed=1)            # same statistics, other weights
    plans, chunks, out = _collect(ros_context, _planner(d, bundle, "planner_dual", planning=planning), want=1)
    assert plans, out[-2000:]
    ids = (resolve_bundle(bundle).checkpoint_id, resolve_bundle(planning).checkpoint_id)
    assert ids[0] != ids[1] and plans[0].chosen.checkpoint_id == f"{ids[0]}+{ids[1]}"

    other = make_random_bundle(d / "other_stats", seed=1, spread=0.2)
    proc = _planner(d, bundle, "planner_mismatch", planning=other)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0
    assert "other dataset statistics" in out, out[-2000:]
