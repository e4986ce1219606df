"""PolicyEngine on the tiny model: shapes, units, determinism, queries, planning, from_files."""
import numpy as np
import pytest
import torch

from cosmos_policy_ros.inference.engine import PolicyEngine
from cosmos_policy_ros.inference.images import preprocess_image
from cosmos_policy_ros.inference.normalization import DatasetStats, StatsError
from cosmos_policy_ros.inference.planning import PlanConfig, choose, plan
from cosmos_policy_ros.inference.value import aggregate_values
from cosmos_policy_ros.model import layout as L
from cosmos_policy_ros.model.text import T5EmbeddingStore, UnknownInstructionError

STATS = {
    "actions_min": [-1.0] * 6 + [0.0] + [-1.0] * 6 + [0.0], "actions_max": [1.0] * 6 + [1.0] + [1.0] * 6 + [1.0],
    "proprio_min": [-2.0] * 14, "proprio_max": [2.0] * 14,
    "actions_mean": [0.0] * 14, "actions_std": [0.5] * 14, "proprio_mean": [0.0] * 14, "proprio_std": [1.0] * 14,
}


@pytest.fixture(scope="module")
def engine(tiny_model, tiny_cfg):
    g = torch.Generator().manual_seed(0)
    text = T5EmbeddingStore({"fold shirt": torch.randn(1, 8, 16, generator=g),
                             "put candy in bag": torch.randn(1, 8, 16, generator=g)})
    return PolicyEngine(tiny_model, DatasetStats.from_dict(STATS, dim=14), text)


def make_obs(seed=0, size=(48, 64), instruction="fold shirt"):
    rng = np.random.default_rng(seed)
    cams = ("cam_left_wrist", "cam_right_wrist", "cam_high", "cam_low")
    return {"images": {c: rng.integers(0, 255, (*size, 3), dtype=np.uint8) for c in cams},
            "proprio": rng.uniform(-1, 1, 14), "instruction": instruction}


def test_act_shapes_and_units(engine):
    out = engine.act(make_obs(), seed=3, decode_images=True)
    assert out.actions.shape == (50, 14) and out.actions_norm.shape == (50, 14)
    assert np.allclose(out.actions, engine.stats.unnormalize_actions(out.actions_norm), atol=1e-6)
    assert out.future_proprio.shape == (14,) and 0.0 <= out.value <= 1.0
    assert set(out.future_images) == {"cam_left_wrist", "cam_right_wrist", "cam_high"}
    assert out.future_images["cam_high"].shape == (64, 64, 3) and out.future_images["cam_high"].dtype == np.uint8
    assert out.timings["sample_s"] > 0


def test_act_deterministic_per_seed(engine):
    a = engine.act(make_obs(), seed=5).actions
    b = engine.act(make_obs(), seed=5).actions
    c = engine.act(make_obs(), seed=6).actions
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_proprio_is_conditioned(engine):
    state = engine.prepare(make_obs())
    p = L.read_proprio(state.given, engine.layout, future=False)
    assert torch.allclose(p, state.proprio_norm, atol=1e-6)
    lat = engine.sample_actions(state, [1, 2])
    assert torch.equal(lat[:, :, :5], state.given.expand(2, -1, -1, -1, -1)[:, :, :5])


def test_unknown_instruction_and_missing_camera(engine):
    with pytest.raises(UnknownInstructionError, match="fold pants"):
        engine.act(make_obs(instruction="fold pants"))
    obs = make_obs()
    del obs["images"]["cam_high"]
    with pytest.raises(KeyError, match="cam_high"):
        engine.act(obs)


def test_world_and_value_queries(engine):
    state = engine.prepare(make_obs())
    acts = engine.sample_actions(state, [1, 2])
    fut = engine.predict_future(state, [10, 11], [1, 3], action_latents=acts)
    lay = engine.layout
    assert torch.equal(fut[:, :, lay.action], acts[:, :, lay.action])   # action frame given
    a_norm = torch.from_numpy(engine.actions_from(acts)[1])
    fut2 = engine.predict_future(state, [10, 11], 2, actions_norm=a_norm)
    assert torch.allclose(L.read_actions(fut2, lay), a_norm, atol=1e-6)
    for mode in ("v_sprime", "v_sas", "q"):
        v = engine.predict_value(fut, state.context, [1, 2], [1, 2], mode)
        assert v.shape == (2,) and np.all((v >= 0) & (v <= 1))
    with pytest.raises(ValueError):
        engine.predict_future(state, [1])


def test_value_sprime_ignores_current_state(engine):
    """V(s') must not depend on current proprio/images/action (frames 1..5 are masked)."""
    state = engine.prepare(make_obs())
    fut = engine.predict_future(state, [4], 2, action_latents=engine.sample_actions(state, [4]))
    other = fut.clone()
    other[:, :, 1:6] = torch.randn_like(other[:, :, 1:6])
    v1 = engine.predict_value(fut, state.context, [9], 3, "v_sprime")
    v2 = engine.predict_value(other, state.context, [9], 3, "v_sprime")
    v3 = engine.predict_value(other, state.context, [9], 3, "v_sas")
    v4 = engine.predict_value(fut, state.context, [9], 3, "v_sas")
    assert np.allclose(v1, v2) and not np.allclose(v3, v4)


def test_plan_batched_equals_sequential(engine):
    cfg = PlanConfig(num_candidates=3, base_seed=195, action_steps=2, world_steps=(1, 3), value_steps=(1, 2))
    state = engine.prepare(make_obs())
    res = plan(engine, state, cfg)
    assert res.values.shape == (3, 2, 2) and res.all_actions.shape == (3, 50, 14)
    assert res.best == choose(res.scores) and np.array_equal(res.actions, res.all_actions[res.best])
    # sequential upstream-style loop with batch-1 calls gives the same values
    for q in range(3):
        a = engine.sample_actions(state, [195 + q], 2)
        for k, ws in enumerate(cfg.world_steps):
            f = engine.predict_future(state, [195 + q + k], ws, action_latents=a)
            for m, vs in enumerate(cfg.value_steps):
                v = engine.predict_value(f, state.context, [195 + q + m], vs, "v_sprime")[0]
                assert v == pytest.approx(res.values[q, k, m], abs=1e-4)
    res_img = plan(engine, state, PlanConfig(num_candidates=2, action_steps=1, world_steps=(1,),
                                             value_steps=(1,), decode_images=True))
    assert res_img.future_images["cam_high"].shape == (64, 64, 3)


def test_choose_keeps_base_on_ties():
    assert choose([0.5, 0.5, 0.4]) == 0 and choose([0.1, 0.5, 0.5]) == 1 and choose([0.0, 0.0]) == 0


@pytest.mark.parametrize("values,method,expected", [
    ([0.9, 0.8, 0.01], "majority_mean", 0.85),
    ([0.9, 0.01, 0.02], "majority_mean", 0.0),
    ([0.9, 0.04, 0.06, 0.01], "majority_mean", 0.48),   # exactly half above 0.05
    ([0.2, 0.4], "average", 0.3),
    ([0.2, 0.4], "lcb", 0.3 - 0.1 * 2 ** 0.5),   # unbiased std, as torch.std upstream
    ([0.2, 0.01, 0.3, 0.04], "success_vote", 0.5),
])
def test_aggregation(values, method, expected):
    assert aggregate_values(values, method) == pytest.approx(expected)


def test_aggregation_errors():
    with pytest.raises(ValueError):
        aggregate_values([], "average")
    with pytest.raises(ValueError):
        aggregate_values([0.1], "median")


def test_normalisation_round_trip_and_formula():
    st = DatasetStats.from_dict(STATS, dim=14)
    p = np.linspace(-2, 2, 14)
    assert np.allclose(st.normalize_proprio(p), p / 2)            # 2(p-min)/(max-min)-1
    a = np.random.default_rng(0).uniform(-1, 1, (50, 14))
    assert np.allclose(st.unnormalize_actions(st.normalize_actions(a)), a, atol=1e-6)
    ms = DatasetStats.from_dict(STATS, method="mean_std", dim=14)
    assert np.allclose(ms.normalize_actions(np.full(14, 0.5)), 1.0)
    flat = DatasetStats.from_dict({**STATS, "proprio_min": [1.0] * 14, "proprio_max": [1.0] * 14})
    assert np.all(np.isfinite(flat.normalize_proprio(np.ones(14))))


def test_stats_errors(tmp_path):
    with pytest.raises(StatsError, match="'proprio_max'"):
        DatasetStats.from_dict({k: v for k, v in STATS.items() if k != "proprio_max"})
    with pytest.raises(StatsError, match="13 entries"):
        DatasetStats.from_dict({**STATS, "actions_min": [0.0] * 13}, dim=14)
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(StatsError, match="s.json"):
        DatasetStats.load(tmp_path / "s.json")


def test_preprocess_image():
    img = np.zeros((48, 64, 3), dtype=np.uint8)
    img[:, :, 0] = 200
    out = preprocess_image(img, 32)
    assert out.shape == (32, 32, 3) and out.dtype == torch.uint8 and int(out[16, 16, 0]) == 200
    with pytest.raises(ValueError):
        preprocess_image(img.astype(np.float32), 32)


def test_from_files_loads_the_saved_weights_with_the_given_config_and_stats(tmp_path, tiny_model, tiny_cfg):
    ckpt = tmp_path / "tiny.safetensors"
    tiny_model.save(ckpt)
    T5EmbeddingStore({"fold shirt": torch.randn(1, 8, 16)}).save(tmp_path / "t5.pt")
    eng = PolicyEngine.from_files(tiny_cfg, ckpt, STATS, tmp_path / "t5.pt", device="cpu", planning_checkpoint=ckpt)
    sd_a, sd_b = eng.model.net.state_dict(), tiny_model.net.state_dict()
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert np.array_equal(eng.stats.actions_max, STATS["actions_max"])
    assert eng.act(make_obs(), seed=1).actions.shape == (50, 14)


def test_from_files_names_the_statistics_source_in_errors(tmp_path, tiny_model, tiny_cfg):
    ckpt = tmp_path / "tiny.safetensors"
    tiny_model.save(ckpt)
    T5EmbeddingStore({"fold shirt": torch.randn(1, 8, 16)}).save(tmp_path / "t5.pt")
    broken = {k: v for k, v in STATS.items() if k != "proprio_max"}
    with pytest.raises(StatsError, match="policy.json: missing key 'proprio_max'"):
        PolicyEngine.from_files(tiny_cfg, ckpt, broken, tmp_path / "t5.pt", device="cpu", stats_source="policy.json")
