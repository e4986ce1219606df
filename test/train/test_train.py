"""Training loop: loss falls on a fixed tiny dataset, resume is bit-exact, targets/masks/errors are right.

Uses the tiny_test model on synthetic HDF5 episodes (no sim): seconds, not minutes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cosmos_policy_ros.data.aloha_hdf5 import EpisodeFormatError, read_episode, write_episode
from cosmos_policy_ros.evaluation.report import wilson_interval
from cosmos_policy_ros.model import layout as L
from cosmos_policy_ros.model.config import ConfigError
from cosmos_policy_ros.train import cli
from cosmos_policy_ros.train.objective import diffusion_loss
from cosmos_policy_ros.train.value_targets import episode_returns

ROOT = Path(__file__).resolve().parents[2]
CAMS = ("cam_left_wrist", "cam_right_wrist", "cam_high")


def _episodes(d: Path, n: int = 2, T: int = 60) -> Path:
    rng = np.random.default_rng(0)
    for e in range(n):
        t = np.linspace(0, 1, T)[:, None]
        qpos = np.sin(t * np.arange(1, 15) + e).astype(np.float32)
        actions = np.roll(qpos, -1, axis=0)
        imgs = {c: (rng.random((T, 64, 64, 3)) * 255).astype(np.uint8) for c in CAMS}
        write_episode(d / f"episode_{e}.hdf5", qpos, qpos * 0, actions, imgs, success=True, task="toy",
                      instruction="do the toy task", seed=e)
    return d


def _recipe(tmp: Path, **train) -> Path:
    body = {"steps": 80, "batch_size": 8, "lr": 0.003, "warmup_steps": 2, "sample_stride": 20,
            "checkpoint_every_s": 1e9, "log_every": 5, "threads": 1, "ema_decay": 0.9}
    body.update(train)
    lines = [f"model: {ROOT / 'config/model/tiny_test.yaml'}", "train:"]
    lines += [f"  {k}: {v}" for k, v in body.items()]
    p = tmp / "recipe.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return _episodes(tmp_path_factory.mktemp("eps"))


def _fixed_loss(tr, seed: int = 123) -> float:
    g = torch.Generator().manual_seed(seed)
    idx = np.arange(min(8, len(tr.data)))
    kinds = tr.data.kinds_for(len(idx), tr.cfg.mix)
    x0, mask = tr.data.batch(idx, kinds)
    sigma = torch.full((len(idx),), 5.0)
    noise = torch.randn(x0.shape, generator=g)
    ctx = tr.context[None].expand(len(idx), *tr.context.shape)
    with torch.no_grad():
        loss, _, _ = diffusion_loss(tr.model.net, x0, mask, ctx, sigma, noise)
    return float(loss)


def test_loss_falls_on_fixed_tiny_dataset(tmp_path, data_dir):
    tr = cli.start(_recipe(tmp_path), data_dir, tmp_path / "run", progress=False)
    before = _fixed_loss(tr)
    tr.fit(progress=False, checkpoint=False)
    after = _fixed_loss(tr)
    assert after < 0.75 * before, (before, after)  # random images bound how low it can go
    assert tr.history and tr.history[-1]["step"] == 80


def test_resume_is_bit_exact(tmp_path, data_dir):
    a = cli.start(_recipe(tmp_path, steps=6), data_dir, tmp_path / "a", progress=False)
    a.fit(progress=False, checkpoint=False)
    b = cli.start(_recipe(tmp_path, steps=6), data_dir, tmp_path / "b", progress=False)
    b.fit(until_step=3, progress=False, checkpoint=False)
    b.save()
    del b
    c = cli.resume(tmp_path / "b")
    assert c.step == 3
    c.fit(progress=False, checkpoint=False)
    for (k, va), (_, vc) in zip(a.model.net.state_dict().items(), c.model.net.state_dict().items()):
        assert torch.equal(va, vc), k
    for k in a.ema.shadow:
        assert torch.equal(a.ema.shadow[k], c.ema.shadow[k]), k
    assert a.rng.bit_generator.state == c.rng.bit_generator.state


def test_export_bundle_loads_in_engine(tmp_path, data_dir):
    from cosmos_policy_ros.evaluation.in_process import engine_from_dir
    tr = cli.start(_recipe(tmp_path, steps=2), data_dir, tmp_path / "run", progress=False)
    tr.fit(progress=False)
    out = cli.export(tmp_path / "run", tmp_path / "bundle")
    eng, meta = engine_from_dir(out)
    obs = {"images": {c: np.zeros((64, 64, 3), np.uint8) for c in CAMS}, "proprio": np.zeros(14),
           "instruction": meta["instruction"]}
    res = eng.act(obs, seed=0)
    assert res.actions.shape == (50, 14) and np.isfinite(res.actions).all()
    # the gripper constants that normalised the episodes (train.robot_config) travel with the bundle
    import json

    from cosmos_policy_ros.robot.aloha import AlohaRobot

    recorded = json.loads((out / "policy.json").read_text())["gripper_convention"]
    assert recorded == AlohaRobot.from_yaml().config.gripper.convention_record()


def test_episodes_recorded_with_other_gripper_constants_are_refused(tmp_path):
    """A converted recording names its gripper constants; training them under another robot config's would
    record a gripper convention the data does not have."""
    import json

    from cosmos_policy_ros.data.aloha_hdf5 import EpisodeData
    from cosmos_policy_ros.robot.aloha import AlohaRobot
    from cosmos_policy_ros.train.prepare import check_gripper_constants

    def episode(robot_config: str) -> EpisodeData:
        g = AlohaRobot.from_yaml(robot_config).config.gripper
        return EpisodeData("ep.hdf5", np.zeros((2, 14)), np.zeros((2, 14)),
                           gripper_constants=json.dumps({k: getattr(g, k) for k in g.__dataclass_fields__}))

    check_gripper_constants([episode("robot/aloha_interbotix.yaml"), EpisodeData("sim.hdf5", np.zeros((2, 14)),
                                                                                 np.zeros((2, 14)))],
                            "robot/aloha_interbotix.yaml")
    with pytest.raises(ValueError, match=r"^ep.hdf5: recorded with gripper constants .* not those of "
                                         r"train.robot_config robot/aloha_interbotix.yaml: set train.robot_config"):
        check_gripper_constants([episode("robot/aloha_ros1.yaml")], "robot/aloha_interbotix.yaml")
    check_gripper_constants([episode("robot/aloha_ros1.yaml")], "robot/aloha_ros1.yaml")


def test_batch_masks_and_targets(tmp_path, data_dir):
    tr = cli.start(_recipe(tmp_path, steps=1), data_dir, tmp_path / "run", progress=False)
    kinds = tr.data.kinds_for(8, (0.5, 0.25, 0.25))
    assert kinds.tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    x0, mask = tr.data.batch(np.zeros(8, dtype=int), kinds)
    lay = tr.model.layout
    assert mask[0].tolist() == L.condition_mask(lay, "policy")[0].tolist()
    assert mask[4, lay.action] == 1 and mask[0, lay.action] == 0
    assert mask[6].sum() == lay.num_frames - 1 and mask[6, lay.value] == 0
    a = L.read_actions(x0[:1], lay)[0].numpy()
    np.testing.assert_allclose(a, tr.data.table.action_chunks([0])[0], atol=1e-6)
    v = x0[0, :, lay.value].mean().item()
    assert v == pytest.approx(float(tr.data.table.value[0]), abs=1e-6)


def test_value_targets_follow_upstream():
    r = episode_returns(5, 1.0, 0.5)
    np.testing.assert_allclose(r, 2 * 0.5 ** np.array([4, 3, 2, 1, 0]) - 1)
    assert (episode_returns(5, 0.0, 0.5) == -1).all()


def test_wilson_interval():
    lo, hi = wilson_interval(0, 50)
    assert lo == 0 and 0.06 < hi < 0.08
    lo, hi = wilson_interval(25, 50)
    assert lo < 0.5 < hi and hi - lo < 0.3


def test_bad_inputs_fail_in_one_line(tmp_path, data_dir):
    with pytest.raises(EpisodeFormatError, match="episode file not found"):
        read_episode(tmp_path / "nope.hdf5")
    with pytest.raises(EpisodeFormatError, match="missing camera 'cam_low'"):
        read_episode(next(data_dir.glob("*.hdf5")), ["cam_low"])
    with pytest.raises(EpisodeFormatError, match="dataset directory not found"):
        cli.start(_recipe(tmp_path), tmp_path / "missing", tmp_path / "run", progress=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"model: {ROOT / 'config/model/tiny_test.yaml'}\ntrain:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match="train.stepz: unknown key"):
        cli.start(bad, data_dir, tmp_path / "run", progress=False)


def test_reused_cache_brings_its_vae(tmp_path, data_dir):
    """A latent cache reused by another run holds what that run's VAE encodes (its manifest names the VAE)."""
    import shutil

    from cosmos_policy_ros.train.latent_cache import encode_prefixes
    a = cli.start(_recipe(tmp_path, steps=1), data_dir, tmp_path / "a", progress=False)
    shutil.copytree(tmp_path / "a" / "latents", tmp_path / "b" / "latents")
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "b" / "latents").glob("ep_*.npy")}
    b = cli.start(_recipe(tmp_path, steps=1, seed=0), data_dir, tmp_path / "b", progress=False)
    assert stamp == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "b" / "latents").glob("ep_*.npy")}
    for k, v in a.model.vae.state_dict().items():
        assert torch.equal(v, b.model.vae.state_dict()[k]), k
    ep = read_episode(next(data_dir.glob("*.hdf5")), CAMS)
    cam, _ = encode_prefixes(b.model, {c: ep.images[c][:1] for c in CAMS})
    row = int(b.data.table.row_t[0])
    # float16 cache: relative rounding 2^-11 of the latents' scale
    assert torch.allclose(cam[0], b.data.camera_latents([row])[0], atol=1e-2, rtol=1e-3)


def _failures(d: Path, n: int = 2, T: int = 60) -> Path:
    """Rollouts that failed: other motions, success=False (value target -1 everywhere)."""
    rng = np.random.default_rng(1)
    for e in range(n):
        qpos = (0.3 * rng.standard_normal((T, 14))).astype(np.float32)
        imgs = {c: (rng.random((T, 64, 64, 3)) * 255).astype(np.uint8) for c in CAMS}
        write_episode(d / f"rollout_{e}.hdf5", qpos, qpos * 0, qpos, imgs, success=False, task="toy",
                      instruction="do the toy task", seed=100 + e)
    return d


def _planning_recipe(tmp: Path) -> Path:
    p = tmp / "planning.yaml"
    p.write_text("train:\n  steps: 4\n  batch_size: 8\n  warmup_steps: 1\n  sample_stride: 20\n"
                 "  checkpoint_every_s: 1000000000\n  threads: 1\n  mix: [0.0, 0.5, 0.5]\n  value_query: v_sprime\n")
    return p


def test_planning_fine_tune_from_a_policy_on_rollouts_and_plan_with_it(tmp_path, data_dir):
    """--init-from: parent weights/VAE/statistics carried over, failures give -1 value targets, and the
    exported planning bundle scores the policy's candidates in the planner."""
    from cosmos_policy_ros.evaluation.in_process import engine_from_dir
    from cosmos_policy_ros.inference.planning import PlanConfig, plan
    parent_run = cli.start(_recipe(tmp_path, steps=2), data_dir, tmp_path / "policy_run", progress=False)
    parent_run.fit(progress=False)
    policy = cli.export(tmp_path / "policy_run", tmp_path / "policy")
    rollouts = _failures(tmp_path / "rollouts")

    tr = cli.start(_planning_recipe(tmp_path), [data_dir, rollouts], tmp_path / "plan_run", progress=False,
                   init_from=policy)
    assert tr.stats == parent_run.stats                                  # statistics inherited, not re-measured
    assert tr.model.cfg.vae == parent_run.model.cfg.vae                  # same latent normalisation
    for k, v in tr.model.net.state_dict().items():                       # starts from the parent's EMA weights
        if v.is_floating_point():
            assert torch.equal(v, parent_run.ema.shadow[k]), k
    values = tr.data.table.value
    assert (values == -1).sum() >= 6 and (values > -1).any()              # failures and successes both present
    kinds = tr.data.kinds_for(8, tr.cfg.mix)
    assert kinds.tolist() == [1, 1, 1, 1, 2, 2, 2, 2]
    lay = tr.model.layout
    _, mask = tr.data.batch(np.zeros(8, dtype=int), kinds, "v_sprime")
    assert mask[4].tolist() == L.condition_mask(lay, "value_sprime")[0].tolist()   # V(s'): no current state/action
    assert mask[4, lay.action] == 0 and mask[4, lay.future_proprio] == 1 and mask[0, lay.action] == 1
    lm = tr.data.loss_mask(kinds, "v_sprime")
    assert lm[0].sum() == lay.num_frames and lm[4].sum() == 1 and lm[4, lay.value] == 1   # value frame only
    tr.fit(progress=False)
    planning = cli.export(tmp_path / "plan_run", tmp_path / "planning")
    assert str(policy) in (planning / "policy.json").read_text()          # provenance: init_from

    eng, meta = engine_from_dir(policy, planning=planning)
    assert eng.planning_model is not eng.model
    obs = {"images": {c: np.zeros((64, 64, 3), np.uint8) for c in CAMS}, "proprio": np.zeros(14),
           "instruction": meta["instruction"]}
    r = plan(eng, obs, PlanConfig(num_candidates=3, world_steps=(1,), value_steps=(1, 2), action_steps=2))
    assert r.values.shape == (3, 1, 2) and np.isfinite(r.scores).all()
    np.testing.assert_allclose(r.actions, r.all_actions[r.best])


def test_planning_bundle_with_other_statistics_is_refused(tmp_path, data_dir):
    from cosmos_policy_ros.evaluation.in_process import engine_from_dir
    for name, d in (("a", data_dir), ("b", _failures(tmp_path / "other"))):
        tr = cli.start(_recipe(tmp_path, steps=1), d, tmp_path / f"run_{name}", progress=False)
        tr.fit(progress=False)
        cli.export(tmp_path / f"run_{name}", tmp_path / name)
    with pytest.raises(ConfigError, match="other dataset statistics"):
        engine_from_dir(tmp_path / "a", planning=tmp_path / "b")
    with pytest.raises(ConfigError, match="needs --init-from"):
        cli.start(_planning_recipe(tmp_path), data_dir, tmp_path / "run_c", progress=False)


def test_evaluation_loads_training_checkpoints_on_their_ema_weights(tmp_path, data_dir):
    """A run folder resolves to its latest checkpoint, and the engine runs the EMA weights, not the raw ones."""
    from safetensors.torch import load_file

    from cosmos_policy_ros.evaluation.in_process import engine_from_dir
    tr = cli.start(_recipe(tmp_path, steps=3), data_dir, tmp_path / "run", progress=False)
    tr.fit(progress=False)
    eng, meta = engine_from_dir(tmp_path / "run")
    latest = (tmp_path / "run" / "latest").read_text().strip()
    assert meta["step"] == 3 and latest.endswith("3")
    saved = load_file(tmp_path / "run" / "checkpoints" / latest / "model.safetensors")
    weights = {k: v for k, v in eng.model.net.state_dict().items() if v.dtype.is_floating_point}
    assert all(torch.equal(v, saved[f"net_ema.{k}"]) for k, v in weights.items())
    assert any(not torch.equal(saved[f"net_ema.{k}"], saved[f"net.{k}"]) for k in weights)  # they really differ


def test_a_training_checkpoint_deploys_with_its_runs_preprocessing(tmp_path, data_dir):
    """Not exported: the run folder still deploys with the run's resize and, after augmented training, the
    test-time centre crop (as an export would), not with the plain trainer defaults."""
    from cosmos_policy_ros.deploy.bundle import resolve_bundle
    tr = cli.start(_recipe(tmp_path, steps=2, augment_copies=2, image_resize="pil_256_224"), data_dir,
                   tmp_path / "run", progress=False)
    tr.fit(progress=False)
    pre = resolve_bundle(tmp_path / "run").preprocessing
    assert pre.center_crop is True and pre.resize == "pil_256_224"
    plain = cli.start(_recipe(tmp_path, steps=2), data_dir, tmp_path / "plain", progress=False)
    plain.fit(progress=False)
    pre = resolve_bundle(tmp_path / "plain").preprocessing
    assert pre.center_crop is False and pre.resize == "torch"


def test_early_steps_are_drawn_more_often_and_default_draws_are_unchanged(tmp_path, data_dir):
    from cosmos_policy_ros.train.step_batches import plan_step

    tr = cli.start(_recipe(tmp_path, steps=1, sample_stride=5), data_dir, tmp_path / "run", progress=False)
    tab = tr.data.table
    t = tab.step_in_episode()
    assert t.tolist() == list(range(0, 60, 5)) * 2           # two 60-step episodes, a start every 5 steps
    # uniform (the default): the draws are the integers every earlier run drew, so old recipes reproduce
    plan = plan_step(tr.data, tr.cfg, 7, tr.model.layout.num_frames)
    rng = np.random.Generator(np.random.PCG64([tr.cfg.seed, 7]))
    assert plan.index.tolist() == rng.integers(0, len(tr.data), tr.cfg.batch_size).tolist()
    # starts before step 15 (3 of 12 per episode) drawn 3x as often: 9/(9+9) = half of the draws
    cfg = tr.cfg.__class__(**{**tr.cfg.__dict__, "early_steps": 15, "early_weight": 3.0})
    drawn = np.concatenate([plan_step(tr.data, cfg, s, tr.model.layout.num_frames).index for s in range(400)])
    assert abs(float(np.mean(t[drawn] < 15)) - 0.5) < 0.03
    with pytest.raises(ValueError, match="early_weight"):
        cfg.__class__(**{**cfg.__dict__, "early_weight": 0.0}).validate()


def test_export_sets_the_bundles_action_smoothing_and_refuses_an_even_window(tmp_path, data_dir):
    """A run trained before its recipe smoothed the chunk can still ship a bundle that does (the weights are
    the same); the engine built from that bundle reads it."""
    from cosmos_policy_ros.evaluation.in_process import engine_from_dir
    tr = cli.start(_recipe(tmp_path, steps=2), data_dir, tmp_path / "run", progress=False)
    tr.fit(progress=False)
    out = cli.export(tmp_path / "run", tmp_path / "bundle", sampler={"action_smoothing": 9})
    eng, meta = engine_from_dir(out)
    assert eng.cfg.sampler.action_smoothing == 9 and meta["model"]["sampler"]["action_smoothing"] == 9
    with pytest.raises(ConfigError, match="action_smoothing"):
        cli.export(tmp_path / "run", tmp_path / "bad", sampler={"action_smoothing": 4})
    assert cli.main(["--run", str(tmp_path / "run"), "--export", str(tmp_path / "b2"), "--action-smoothing", "5"]) == 0
    assert engine_from_dir(tmp_path / "b2")[0].cfg.sampler.action_smoothing == 5
    with pytest.raises(SystemExit) as exc:   # without --export it would set nothing: refused, not ignored
        cli.main(["--run", str(tmp_path / "run"), "--resume", "--action-smoothing", "5"])
    assert exc.value.code == 2


def test_export_states_how_the_bundle_is_run_and_the_launch_and_eval_read_it(tmp_path, data_dir):
    """--execute K: the bundle is run in chunk mode synchronous, K actions per chunk, as it was evaluated; the
    launch graph and `cosmos-aloha eval` take it as their default."""
    from cosmos_policy_ros.deploy.bundle import launch_chunk_mode, launch_synchronous_steps
    tr = cli.start(_recipe(tmp_path, steps=2), data_dir, tmp_path / "run", progress=False)
    tr.fit(progress=False)
    plain = cli.export(tmp_path / "run", tmp_path / "plain")
    assert launch_synchronous_steps(plain) is None and launch_chunk_mode(plain, "direct") is None
    assert cli.main(["--run", str(tmp_path / "run"), "--export", str(tmp_path / "b"), "--execute", "25"]) == 0
    assert launch_synchronous_steps(tmp_path / "b") == 25
    assert launch_chunk_mode(tmp_path / "b", "direct") == "synchronous"
    with pytest.raises(ValueError, match="execute"):
        cli.export(tmp_path / "run", tmp_path / "bad", execute=0)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--run", str(tmp_path / "run"), "--resume", "--execute", "25"])
    assert exc.value.code == 2
