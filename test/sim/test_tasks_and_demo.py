"""Staged success and the scripted demonstrator's success rate over seeded episodes."""
from __future__ import annotations

import numpy as np
import pytest

from cosmos_policy_ros.sim.demonstrator import ScriptedDemonstrator
from cosmos_policy_ros.sim.episodes import run_demo_episode
from cosmos_policy_ros.sim.ik import ArmIK, rpy_to_mat

START = np.array([0.0, -0.96, 1.16, 0.0, -0.3, 0.0])
HOLD = np.concatenate([START, [1.0], START, [1.0]])


@pytest.mark.parametrize("task", ["transfer_cube", "insertion"])
def test_doing_nothing_never_succeeds(sim, task):
    sim.reset(task, 0)
    assert sim.stage() == 0 and not sim.success()
    for _ in range(100):
        st = sim.step(HOLD)
    assert st.max_stage == 0 and not sim.success()


def test_ik_reaches_a_pose(sim):
    sim.reset("transfer_cube", 0)
    ik = ArmIK(sim.model, [f"vx300s_right/{j}" for j in
                           ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")],
               "right/grasp")
    target, rot = np.array([0.1, 0.45, 0.08]), rpy_to_mat(np.pi, np.radians(70), 0.0)
    q, err = ik.solve(START, target, rot)
    pos, r = ik.forward(q)
    assert err < 1e-3 and np.linalg.norm(pos - target) < 1e-3
    assert np.allclose(r, rot, atol=1e-2)


def test_episode_record_shapes_and_action_space(sim):
    ep = run_demo_episode(sim, "transfer_cube", 0, steps=30, cameras=("cam_high", "cam_left_wrist"),
                          width=64, height=48)
    assert ep.qpos.shape == ep.qvel.shape == ep.actions.shape == (30, 14)
    assert ep.images["cam_high"].shape == (30, 48, 64, 3)
    assert np.all(np.isfinite(ep.actions))
    lo, hi = sim.robot.lower, sim.robot.upper
    assert np.all(ep.actions >= lo - 1e-9) and np.all(ep.actions <= hi + 1e-9)
    assert np.allclose(ep.qpos[0], np.concatenate([START, [ep.qpos[0, 6]], START, [ep.qpos[0, 13]]]))


def test_demonstrator_needs_a_known_task(sim):
    with pytest.raises(ValueError, match="no demonstrator plan"):
        ScriptedDemonstrator(sim.model, "stack_blocks", sim.wc.arm_prefix)


@pytest.mark.parametrize("task, min_successes", [("transfer_cube", 9), ("insertion", 7)])
def test_demonstrator_success_rate_over_10_seeds(sim, task, min_successes):
    results = [run_demo_episode(sim, task, seed) for seed in range(10)]
    wins = sum(ep.success for ep in results)
    assert wins >= min_successes, [(ep.seed, ep.max_stage) for ep in results]
    # the recorded stages agree with the success flag
    assert all(ep.success == (ep.stages.max() == 4) for ep in results)


def test_ik_posture_pull_leaves_the_wrist_singularity_on_the_preferred_branch(sim):
    """At wrist_angle = 0 forearm_roll and wrist_rotate trade turns freely; the posture pull picks 0."""
    joints = [f"vx300s_right/{j}"
              for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")]
    plain = ArmIK(sim.model, joints, "right/grasp")
    pulled = ArmIK(sim.model, joints, "right/grasp", posture={3: 0.0, 5: 0.0}, posture_gain=0.2)
    q_twisted = np.array([0.0, -0.5, 0.8, 0.6, 0.0, -0.6])   # same pose as roll 0 / rotate 0
    path = [plain.forward(np.array([0.0, -0.5 + 0.005 * k, 0.8, 0.0, 0.0, 0.0])) for k in range(1, 31)]
    qa, qb = q_twisted.copy(), q_twisted.copy()
    for pos, rot in path:
        qa, err_a = plain.solve(qa, pos, rot)
        qb, err_b = pulled.solve(qb, pos, rot)
    assert err_a < 1e-3 and err_b < 1e-3                      # both track the pose ...
    assert abs(qa[3]) > 0.4                                     # ... the plain one stays twisted
    assert abs(qb[3]) < 0.1 and abs(qb[5]) < 0.1                # the pulled one untwists


def test_transfer_cube_demos_stay_on_one_wrist_branch(sim):
    """The right arm's forearm_roll / wrist_rotate stay near 0 (no +-pi branch flips between seeds)."""
    for seed in (0, 4, 5):   # 0 and 5 flipped to ~+-3 rad before the posture pull, 4 did not
        ep = run_demo_episode(sim, "transfer_cube", seed, steps=120)
        assert np.abs(ep.actions[:, [10, 12]]).max() < 1.2, seed
