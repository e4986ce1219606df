"""In-process evaluation: seeded episodes in the real MuJoCo sim, rollouts recorded for fine-tuning."""
from __future__ import annotations

import numpy as np

from cosmos_policy_ros.train.evaluate import evaluate
from cosmos_policy_ros.data.aloha_hdf5 import read_episode


def test_rollouts_are_recorded_as_training_episodes(tmp_path):
    """--record writes each rollout (here: a policy that only ever reaches out) with what was really sent."""
    sent = []

    def reach(obs):
        q = np.asarray(obs["proprio"], float)
        chunk = np.repeat(q[None], 10, axis=0)
        chunk[:, 1] += np.linspace(0.01, 0.1, 10)   # left shoulder forward, within the velocity cap
        sent.append(chunk)
        return chunk

    res = evaluate(reach, 2, [5, 6], steps=20, record_dir=tmp_path / "rollouts", out_dir=tmp_path / "eval",
                   instruction="pick up the cube", progress=False)
    assert res.n == 2 and res.successes == 0
    files = sorted((tmp_path / "rollouts").glob("*.hdf5"))
    assert [f.name for f in files] == ["rollout_00005.hdf5", "rollout_00006.hdf5"]
    ep = read_episode(files[0], ["cam_high"])
    assert len(ep) == 20 and ep.images["cam_high"].shape == (20, 64, 64, 3)
    assert not ep.success and ep.instruction == "pick up the cube"
    np.testing.assert_allclose(ep.actions[:10], sent[0], atol=1e-6)   # commands after the safety filter
    assert ep.qpos[0, 1] < ep.qpos[-1, 1]                              # the arm really moved
    assert (tmp_path / "eval" / "episode_0005.png").is_file()


def test_safety_filter_effect_is_reported_per_kind_and_size():
    """A policy that jumps 0.5 rad is held back by the step cap; grippers above 1 are clipped to the limit."""
    def jumpy(obs):
        q = np.asarray(obs["proprio"], float)
        chunk = np.repeat(q[None], 5, axis=0)
        chunk[:, 0] += 0.5            # left waist: far beyond one step at pi rad/s
        chunk[:, 13] = 1.05           # right gripper above its open limit
        return chunk

    res = evaluate(jumpy, 1, [3], steps=10, progress=False)
    ep = res.episodes[0]
    assert ep.safety_interventions == 10 and sum(ep.safety_kinds.values()) == 10
    assert set(ep.safety_kinds) <= {"limit", "relative", "step"} and ep.safety_kinds.get("limit", 0) > 0
    assert 0.35 < ep.safety_max_arm_change_rad <= 0.5    # the waist was held back, by at most the jump
    assert "safety filter changed 100 % of the actions" in res.summary()
    calm = evaluate(lambda obs: np.repeat(np.asarray(obs["proprio"], float)[None], 5, axis=0), 1, [3], steps=5,
                    progress=False)
    assert calm.episodes[0].safety_interventions == 0 and "safety filter" not in calm.summary()


def test_success_curve_plot_marks_where_a_fine_tune_started(tmp_path):
    """The curve figure is written with a marker line; success % and stage come from the points."""
    import matplotlib.image as mpimg

    from cosmos_policy_ros.train.curve import plot_curve

    points = [{"train_minutes": m, "successes": s, "n": 10, "ci95": [0.0, 0.3], "mean_stage": st}
              for m, s, st in [(5, 0, 0.2), (10, 1, 0.8), (15, 3, 1.5)]]
    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    plot_curve(points, plain)
    plot_curve(points, marked, marks=[(10.0, "fine-tune")])
    a, b = mpimg.imread(plain), mpimg.imread(marked)
    assert a.shape == b.shape and a.shape[0] > 100
    assert (a != b).any()  # the mark is drawn
