"""Upstream's numerics at the edges of the model, each pinned against values computed by hand on small arrays:
the PIL 256 -> model-size resize, bf16 rounding of the injected proprio and of the frame normalisation, the
float32 threshold and unbiased std of the value aggregation; and that only a bundle that says it was trained
otherwise (our sim checkpoints) switches them off. Plus the speed levers that must not change results:
the T5 context cache, the VAE temporal window, bf16 autocast, torch.compile."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.deploy.bundle import default_checkpoint, default_planning_checkpoint, resolve_bundle
from cosmos_policy_ros.inference.engine import PolicyEngine
from cosmos_policy_ros.inference.images import pil_resize_256, preprocess_image
from cosmos_policy_ros.inference.normalization import DatasetStats
from cosmos_policy_ros.inference.preprocessing import TRAINER, UPSTREAM, Preprocessing
from cosmos_policy_ros.inference.value import aggregate_values
from cosmos_policy_ros.model import layout as L
from cosmos_policy_ros.model.config import load_model_config
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel, normalize_frames
from cosmos_policy_ros.model.text import T5EmbeddingStore

# proprio range [-2, 2]: proprio 0.2 normalises to exactly 0.1
STATS = {"actions_min": [-1.0] * 14, "actions_max": [1.0] * 14, "proprio_min": [-2.0] * 14, "proprio_max": [2.0] * 14}


def step_image(size: int = 256) -> np.ndarray:
    """Left half black, right half 255: each output column's value follows from the bicubic kernel alone."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:, size // 2:] = 255
    return img


def make_engine(model: CosmosPolicyModel, prep: Preprocessing = UPSTREAM) -> PolicyEngine:
    g = torch.Generator().manual_seed(0)
    text = T5EmbeddingStore({"fold shirt": torch.randn(1, 8, 16, generator=g)})
    return PolicyEngine(model, DatasetStats.from_dict(STATS, dim=14), text, preprocessing=prep)


def make_obs(proprio: float = 0.2, size=(48, 64)) -> dict:
    rng = np.random.default_rng(0)
    return {"images": {c: rng.integers(0, 255, (*size, 3), dtype=np.uint8)
                       for c in ("cam_left_wrist", "cam_right_wrist", "cam_high")},
            "proprio": np.full(14, proprio), "instruction": "fold shirt"}


@pytest.fixture(scope="module")
def bf16_model(tiny_cfg):
    return CosmosPolicyModel.build(tiny_cfg, "cpu", torch.bfloat16, seed=0)


# ---- images ------------------------------------------------------------------------------------------------


def test_pil_path_downsamples_a_step_with_the_bicubic_kernel_computed_by_hand():
    """256 -> 128 (the 256 step is a copy): PIL bicubic, a = -0.5, support 2 x scale 2 = 4 input pixels each side.

    Output column 63 is centred on input x = 127: the white pixels 128, 129, 130 sit at scaled distances 0.75,
    1.25, 1.75 with kernel weights 0.2265625, -0.0703125, -0.0234375 of a total 2.0 -> 255 * 0.06640625 = 16.93
    -> 17. Column 64 (centre 129) gets the complement of the three black pixels: 255 * 0.93359375 = 238.07 -> 238.
    Column 62 gets only the -0.0234375 tap (clipped to 0), column 65 1.0117 (clipped to 255).
    """
    out = pil_resize_256(step_image(), 128)
    assert out[:, 62:66, 0].tolist() == [[0, 17, 238, 255]] * 128
    assert (out[:, :62] == 0).all() and (out[:, 66:] == 255).all()


def test_pil_path_resizes_through_256_and_differs_from_one_torch_resize():
    img = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    twice = np.array(Image.fromarray(img).resize((256, 256), Image.BICUBIC).resize((32, 32), Image.BICUBIC))
    pil = preprocess_image(img, 32, dataclasses.replace(UPSTREAM, center_crop=False)).numpy()
    assert np.array_equal(pil, twice)
    once = preprocess_image(img, 32, dataclasses.replace(TRAINER, center_crop=False)).numpy()
    assert not np.array_equal(pil, once) and np.abs(pil.astype(int) - once).max() <= 255


def test_the_torch_path_leaves_a_frame_of_the_model_size_as_it_is():
    img = np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    assert np.array_equal(preprocess_image(img, 32, TRAINER).numpy(), img)


# ---- frames and proprio in the model's dtype ----------------------------------------------------------------


def test_frame_normalisation_in_bf16_rounds_each_step_as_computed_by_hand():
    """bf16 has 8 significant bits: 1/127.5 = 1.00392 * 2^-7 -> 1.0078125 * 2^-7; minus 1 -> -0.99212646 ->
    -0.9921875. 128/127.5 = 1.0039 -> 1.0078125; minus 1 -> 0.0078125 (float32: 0.0039216)."""
    x = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    assert normalize_frames(x, torch.bfloat16).float().tolist() == [-1.0, -0.9921875, 0.0078125, 1.0]
    assert normalize_frames(x).tolist() == pytest.approx([-1.0, 1 / 127.5 - 1, 128 / 127.5 - 1, 1.0], abs=1e-7)


def test_the_engine_normalises_frames_in_the_vaes_dtype(bf16_model):
    eng = make_engine(bf16_model)
    obs = make_obs(size=(64, 64))
    images = {c: preprocess_image(obs["images"][c], 64, UPSTREAM)[None] for c in eng.layout.cameras}
    video = L.build_pixel_sequence(images, eng.layout)
    want = bf16_model.vae.encode(normalize_frames(video, torch.bfloat16))
    assert torch.equal(eng.prepare(obs).clean, want)
    f32 = make_engine(bf16_model, dataclasses.replace(UPSTREAM, frame_dtype="float32")).prepare(obs).clean
    assert torch.equal(f32, bf16_model.vae.encode(normalize_frames(video, torch.float32)))
    assert not torch.equal(f32, want)


def test_proprio_is_rounded_to_bf16_before_injection_when_the_model_runs_bf16(bf16_model, tiny_model):
    """proprio 0.2 in [-2, 2] -> 0.1; bf16(0.1) = 205/128 * 2^-4 = 0.10009765625 (float32: 0.1)."""
    state = make_engine(bf16_model).prepare(make_obs(0.2))
    assert state.proprio_norm.tolist() == [[0.10009765625] * 14]
    assert L.read_proprio(state.given, bf16_model.layout, future=False).tolist() == [[0.10009765625] * 14]
    kept = make_engine(bf16_model, dataclasses.replace(UPSTREAM, proprio_dtype="float32")).prepare(make_obs(0.2))
    assert torch.equal(kept.proprio_norm, torch.full((1, 14), 0.1))
    fp32 = make_engine(tiny_model).prepare(make_obs(0.2))   # a float32 model rounds nothing
    assert torch.equal(fp32.proprio_norm, torch.full((1, 14), 0.1))


# ---- value aggregation --------------------------------------------------------------------------------------


def test_the_threshold_is_compared_in_float32():
    """float32(0.05) = 0.0500000007: above 0.05 in float64, not above float32(0.05). So of [0.05, 0.05, 0.9]
    only one value counts as success: 1/3 < 1/2 -> majority_mean 0 (a float64 comparison would give 0.3333)."""
    values = np.array([0.05, 0.05, 0.9], dtype=np.float32)
    assert aggregate_values(values, "majority_mean") == 0.0
    assert aggregate_values(values, "success_vote") == pytest.approx(1 / 3)


def test_lcb_subtracts_the_unbiased_std():
    """[0.5, 0.6, 0.7]: mean 0.6, sum of squares 0.02 / (3 - 1) -> std 0.1 -> 0.5 (population std: 0.5184)."""
    assert aggregate_values([0.5, 0.6, 0.7], "lcb") == pytest.approx(0.5, abs=1e-6)
    assert aggregate_values([0.2, 0.4], "lcb") == pytest.approx(0.3 - 0.02 ** 0.5, abs=1e-6)
    assert aggregate_values([0.7], "lcb") == pytest.approx(0.7)   # torch.std of one value is NaN; we take 0


# ---- which checkpoints get which -----------------------------------------------------------------------------


def test_only_bundles_that_say_so_switch_the_upstream_numerics_off(tmp_path):
    for path in (default_checkpoint(), default_planning_checkpoint()):
        assert resolve_bundle(path).preprocessing == TRAINER
    assert Preprocessing.from_meta({}) == UPSTREAM
    assert Preprocessing.from_meta({"model": {}}) == TRAINER   # our older bundles: as they were trained
    stated = Preprocessing.from_meta({"model": {}, "center_crop": True, "preprocess": {"resize": "pil_256_224"}})
    assert stated == dataclasses.replace(TRAINER, center_crop=True, resize="pil_256_224")
    for bad, needle in (({"resize": "lanczos"}, "preprocess.resize: expected one of pil_256_224, torch"),
                        ({"colour": 1}, "preprocess.colour: unknown key"),
                        ({"center_crop": "yes"}, "preprocess.center_crop: expected true/false")):
        with pytest.raises(ConfigError, match=needle):
            Preprocessing.from_meta({"model": {}, "preprocess": bad}, "policy.json")


# ---- speed levers that must not change results ---------------------------------------------------------------


def test_the_t5_context_is_cached_on_the_models_device_and_dtype(bf16_model):
    eng = make_engine(bf16_model)
    a, b = eng.context(["fold shirt"]), eng.context(["fold shirt", "fold shirt"])
    assert a.dtype == torch.bfloat16 and a.shape == (1, 8, 16) and torch.equal(b[1], a[0])
    assert eng._contexts["fold shirt"] is eng._contexts["fold shirt"]   # one entry, made once
    assert torch.equal(a[0], eng.text.get("fold shirt").to(torch.bfloat16))


def test_the_2b_config_encodes_the_proprio_frame_and_three_cameras_in_one_vae_call(tiny_model, tiny_cfg):
    assert load_model_config("config/model/cosmos_policy_2b_aloha.yaml").vae.temporal_window == 16
    video = torch.randint(0, 255, (1, 3, 41, 64, 64), dtype=torch.uint8)
    x = normalize_frames(video)
    calls = []
    hook = tiny_model.vae.encoder.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[2]))
    try:
        z4 = tiny_model.vae.encode(x)
        z16 = tiny_model.vae.encode(x, 16)
    finally:
        hook.remove()
    assert calls == [1] + [4] * 10 + [1, 16, 16, 8] and torch.allclose(z4, z16, atol=1e-5)


def test_bf16_autocast_with_float32_weights_stays_close_to_float32(tiny_cfg):
    model = CosmosPolicyModel.build(tiny_cfg, "cpu", torch.float32, seed=0)
    eng = make_engine(model)
    ref = eng.act(make_obs(), seed=3).actions_norm
    model.autocast_dtype = torch.bfloat16
    try:
        auto = eng.act(make_obs(), seed=3).actions_norm
    finally:
        model.autocast_dtype = None
    assert model.dtype == torch.float32
    # bf16 keeps 8 significant bits (relative 2^-8 = 0.4 %) per matmul; a 3-step sample of the tiny net
    # moves a normalised action by at most a few of those
    assert not np.array_equal(ref, auto) and np.abs(ref - auto).max() < 0.1


@pytest.mark.slow
def test_torch_compile_gives_the_eager_result(tiny_cfg):
    model = CosmosPolicyModel.build(tiny_cfg, "cpu", torch.float32, seed=0)
    eng = make_engine(model)
    ref = eng.act(make_obs(), seed=4).actions_norm
    model.compile_net()
    assert np.allclose(eng.act(make_obs(), seed=4).actions_norm, ref, atol=1e-4)
