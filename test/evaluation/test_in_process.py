"""In-process evaluation: seeded episodes in the real MuJoCo sim, rollouts recorded for fine-tuning."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cosmos_policy_ros.data.aloha_hdf5 import read_episode
from cosmos_policy_ros.deploy.bundle import build_engine, resolve_bundle
from cosmos_policy_ros.deploy.random_bundle import make_random_bundle
from cosmos_policy_ros.evaluation import cli as eval_cli
from cosmos_policy_ros.evaluation.in_process import EnginePolicy, engine_from_dir, evaluate


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
    assert ep.safety_gripper_only == 0 and ep.safety_max_gripper_change >= 0.05 - 1e-6  # the waist moved too


def test_actions_changed_only_at_a_gripper_are_told_apart():
    """A gripper command a hair above its open limit, arms held: every action is changed (the gripper's step cap,
    then its limit), none at an arm joint."""
    def grip_over(obs):
        chunk = np.repeat(np.asarray(obs["proprio"], float)[None], 5, axis=0)
        chunk[:, 6] = 1.001           # left gripper, normalised: 1 = open
        return chunk

    res = evaluate(grip_over, 1, [3], steps=8, progress=False)
    ep = res.episodes[0]
    assert ep.safety_interventions == ep.safety_gripper_only == 8
    assert ep.safety_max_gripper_change > 0.001 and ep.safety_max_arm_change_rad == 0
    assert "(limit" in res.summary() and "8 changed only a gripper, by at most" in res.summary()


def test_episodes_report_simulated_time_and_their_strip(tmp_path):
    """In-process episodes fill the same time and strip fields as episodes through the graph."""
    hold = lambda obs: np.repeat(np.asarray(obs["proprio"], float)[None], 10, axis=0)  # noqa: E731
    res = evaluate(hold, 1, [2], steps=15, execute=10, out_dir=tmp_path, progress=False)
    ep = res.episodes[0]
    assert ep.steps == 15 and ep.queries == 2 and ep.sim_time_s == pytest.approx(15 * 0.02)
    assert ep.strip == "episode_0002.png" and (tmp_path / ep.strip).is_file()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["episodes"][0]["strip"] == ep.strip and saved["n"] == 1
    assert saved["settings"] == {"execute": 10, "safety": True, "cameras": ["cam_high"], "size": 64, "horizon": 15}


def test_engine_policy_query_k_samples_with_seed_plus_k(tmp_path):
    """Episodes are reproducible: the k-th query of an EnginePolicy is engine.act(obs, seed=seed + k)."""
    bundle = resolve_bundle(make_random_bundle(tmp_path / "bundle", "tiny_test"))  # no EMA weights to evaluate
    eng, meta = build_engine(bundle, None, device="cpu"), bundle.meta
    lay = eng.cfg.layout
    obs = {"images": {c: np.zeros((lay.image_size, lay.image_size, 3), np.uint8) for c in lay.cameras},
           "proprio": np.zeros(14), "instruction": meta["instruction"]}
    policy = EnginePolicy(eng, seed=7, steps=2)
    first, second = policy(obs), policy(obs)
    assert policy.queries == 2
    np.testing.assert_allclose(first, eng.act(obs, seed=7, steps=2).actions)
    np.testing.assert_allclose(second, eng.act(obs, seed=8, steps=2).actions)
    assert not np.allclose(first, second)


def test_eval_command_names_a_missing_policy_and_exits_2(tmp_path, capsys):
    assert eval_cli.main([str(tmp_path / "nothing"), "-n", "1"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_sampler_overrides_reach_the_engine_and_invalid_ones_are_refused(tmp_path, capsys):
    bundle = Path(__file__).resolve().parents[2] / "checkpoints" / "sim_small_transfer_cube"  # the shipped one
    eng, _ = engine_from_dir(bundle, sampler={"camera_guidance": 1.5})
    assert eng.model.cfg.sampler.camera_guidance == 1.5 and eng.cfg is eng.model.cfg
    for flag, bad, field in (("--camera-guidance", "-1", "camera_guidance"),
                             ("--action-smoothing", "4", "action_smoothing")):
        assert eval_cli.main([str(bundle), "-n", "1", flag, bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and field in err and len(err.strip().splitlines()) == 1


def test_eval_refuses_an_execute_below_one_in_one_line(capsys):
    bundle = Path(__file__).resolve().parents[2] / "checkpoints" / "sim_small_transfer_cube"
    assert eval_cli.main([str(bundle), "-n", "1", "--execute", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --execute: expected an integer >= 1 (actions of each chunk), got 0\n"


def test_action_smoothing_averages_the_executed_chunk_over_time():
    """The chunk the engine returns (and the executor runs) is the generated one averaged over the window;
    same seed, same generated latents."""
    from cosmos_policy_ros.inference.chunk_smoothing import smooth_chunk

    bundle = Path(__file__).resolve().parents[2] / "checkpoints" / "sim_small_transfer_cube"
    raw_eng, meta = engine_from_dir(bundle)
    eng, _ = engine_from_dir(bundle, sampler={"action_smoothing": 7})
    side = raw_eng.cfg.layout.image_size
    obs = {"images": {c: np.full((side, side, 3), 90, np.uint8) for c in raw_eng.cfg.layout.cameras},
           "proprio": np.zeros(14), "instruction": meta["instruction"]}
    raw = raw_eng.act(obs, seed=3, steps=2)
    smooth = eng.act(obs, seed=3, steps=2)
    np.testing.assert_allclose(smooth.actions_norm, smooth_chunk(raw.actions_norm, 7), atol=1e-5)
    assert np.abs(np.diff(smooth.actions, 2, axis=0)).mean() < np.abs(np.diff(raw.actions, 2, axis=0)).mean()


def test_episodes_write_a_viewer_gif_and_a_chunk_plot_people_can_look_at(tmp_path):
    """With --out each episode gets an animated GIF of the large viewer (not the policy's 64x64 input), in
    which the arm visibly moves, and a plot of the chunks it executed; results.json names both."""
    from PIL import Image, ImageSequence

    from cosmos_policy_ros.sim.viewer import load_viewer_config

    def reach(obs):
        q = np.asarray(obs["proprio"], float)
        chunk = np.repeat(q[None], 25, axis=0)
        chunk[:, 0] += np.linspace(0.1, 0.6, 25)     # left waist swings; its first step beyond the step cap
        return chunk

    res = evaluate(reach, 1, [4], steps=50, execute=25, out_dir=tmp_path, progress=False)
    ep, viewer = res.episodes[0], load_viewer_config()
    assert (ep.animation, ep.chunk_plot) == ("episode_0004.gif", "episode_0004_chunks.png")
    with Image.open(tmp_path / ep.animation) as gif:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    assert len(frames) >= 5                              # 1 s at the viewer's 5 Hz, and the outcome frame
    assert frames[0].shape[0] >= viewer.height and frames[0].shape[1] >= viewer.width
    assert not np.array_equal(frames[0][:viewer.height], frames[-1][:viewer.height])   # the arm moved
    with Image.open(tmp_path / ep.chunk_plot) as plot:
        assert plot.width >= 800
    saved = json.loads((tmp_path / "results.json").read_text())["episodes"][0]
    assert (saved["animation"], saved["chunk_plot"]) == (ep.animation, ep.chunk_plot)
    assert ep.safety_interventions > 0                   # what the plot marks in red
    res = evaluate(reach, 1, [4], steps=5, out_dir=tmp_path / "plain", progress=False, media=False)
    assert res.episodes[0].animation == "" and not list((tmp_path / "plain").glob("*.gif"))
