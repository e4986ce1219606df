"""Per-position camera latent normalisation (model/camera_norm.py, train.camera_latent_norm): measured on the
training latents, recorded in the model config, applied identically by the training batches and by the engine
the nodes build, undone before decoding.

Tiny model (config/model/tiny_test.yaml) on synthetic 64x64 episodes: a fixed background with a square that
moves, so some positions vary and most do not. Seconds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.data.aloha_hdf5 import read_episode, write_episode
from cosmos_policy_ros.deploy.bundle import build_engine, resolve_bundle
from cosmos_policy_ros.inference.images import preprocess_image
from cosmos_policy_ros.model.camera_norm import camera_norm_maps, denormalize_cameras, normalize_cameras
from cosmos_policy_ros.model.config import config_to_dict, model_config_from_dict
from cosmos_policy_ros.model.layout import LatentLayout, build_pixel_sequence
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel
from cosmos_policy_ros.train import cli

ROOT = Path(__file__).resolve().parents[2]
CAMS = ("cam_left_wrist", "cam_right_wrist", "cam_high")
INSTRUCTION = "do the toy task"
FLOOR = 0.05


def scene(t: int, e: int) -> np.ndarray:
    """A fixed textured background with an 8x8 red square whose place depends on episode and step."""
    img = (np.random.default_rng(7).random((64, 64, 3)) * 120).astype(np.uint8)
    y, x = 8 + 4 * e + t, 40 - 5 * t
    img[y:y + 8, x:x + 8] = (220, 30, 30)
    return img


def episodes(d: Path, n: int = 3, T: int = 6) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for e in range(n):
        qpos = np.sin(np.linspace(0, 1, T)[:, None] * np.arange(1, 15) + e).astype(np.float32)
        imgs = {c: np.stack([scene(t, e) for t in range(T)]) for c in CAMS}
        write_episode(d / f"episode_{e}.hdf5", qpos, qpos * 0, np.roll(qpos, -1, axis=0), imgs, success=True,
                      task="toy", instruction=INSTRUCTION, seed=e)
    return d


def test_normalize_and_denormalize_are_inverse_on_camera_frames_only():
    lay = LatentLayout(("a", "b"), 4, 2, 2)
    mean, std = torch.randn(2, 3, 2, 2), torch.rand(2, 3, 2, 2) + 0.1
    z = torch.randn(1, 3, lay.num_frames, 2, 2)
    n = normalize_cameras(z, lay, (mean, std))
    torch.testing.assert_close(denormalize_cameras(n, lay, (mean, std)), z)
    others = [f for f in range(lay.num_frames) if f not in lay.camera_frames + lay.future_camera_frames]
    assert torch.equal(n[:, :, others], z[:, :, others])
    torch.testing.assert_close(n[0, :, lay.future_camera_frames[1]], (z[0, :, lay.future_camera_frames[1]] - mean[1])
                               / std[1])
    short = z[:, :, :4]                                     # a prefix (blank, proprio, cameras) is normalised too
    torch.testing.assert_close(normalize_cameras(short, lay, (mean, std)), n[:, :, :4])
    assert normalize_cameras(z, lay, None) is z


def test_model_config_refuses_maps_of_the_wrong_size_in_one_line():
    d = yaml.safe_load((ROOT / "config/model/tiny_test.yaml").read_text())["model"]
    with pytest.raises(ConfigError, match=r"camera_latent_mean/std need \d+ values each") as e:
        model_config_from_dict({**d, "camera_latent_mean": [0.0] * 5, "camera_latent_std": [1.0] * 5}, "m.yaml")
    assert "\n" not in str(e.value)


def test_training_batches_and_the_deployed_engine_see_the_same_normalised_cameras(tmp_path):
    """Train 2 steps with camera_latent_norm, export: the config carries per-position statistics (mean ~0 and
    std ~1 over the training frames where they vary, the floor elsewhere); the bundle's engine encodes a raw
    frame exactly as the training batches present it; decoding undoes it (same pixels as a model without it)."""
    data = episodes(tmp_path / "eps")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model": str(ROOT / "config/model/tiny_test.yaml"), "train": {
        "steps": 2, "batch_size": 4, "warmup_steps": 1, "sample_stride": 1, "checkpoint_every_s": 1e9, "threads": 1,
        "encode_batch": 4, "latent_dtype": "float32", "camera_latent_norm": FLOOR}}))
    tr = cli.start(recipe, data, tmp_path / "run", progress=False)
    tr.fit(progress=False, checkpoint=True)
    cfg = model_config_from_dict(json.loads((tmp_path / "run/dataset.json").read_text())["model"])
    mean, std = camera_norm_maps(cfg)
    assert std.min() >= FLOOR - 1e-6 and (std > FLOOR).any() and (std == FLOOR).any()
    z = tr.data.camera_latents(np.arange(len(tr.data.latents)))          # every training frame, normalised
    varying = std > FLOOR
    assert z.mean(0).abs().max() < 1e-4
    torch.testing.assert_close(z.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-4, rtol=1e-4)

    bundle = resolve_bundle(cli.export(tmp_path / "run", tmp_path / "bundle"))
    engine = build_engine(bundle)
    ep = read_episode(sorted(data.glob("*.hdf5"))[0], CAMS)      # rows of episode 0 come first
    obs = {"images": {c: ep.images[c][0] for c in CAMS}, "proprio": ep.qpos[0], "instruction": INSTRUCTION}
    given = engine.prepare(obs).clean
    trained = tr.data.camera_latents(np.array([int(tr.data.table.row_t[0])]))[0]
    lay = engine.layout
    for k, cam in enumerate(CAMS):
        torch.testing.assert_close(trained[k], given[0, :, lay.camera(cam)], atol=1e-4, rtol=1e-4)
    # the same VAE without the map: its latents are the denormalised ones, its decoded pixels ours
    plain = CosmosPolicyModel.build(model_config_from_dict({**config_to_dict(engine.model.cfg),
                                                            "camera_latent_mean": [], "camera_latent_std": []}))
    plain.vae.load_state_dict(engine.model.vae.state_dict())
    size = engine.cfg.layout.image_size
    pixels = build_pixel_sequence({c: preprocess_image(obs["images"][c], size, bundle.preprocessing, camera=c)[None]
                                   for c in CAMS}, lay)
    per_channel = plain.encode_video(pixels)
    torch.testing.assert_close(denormalize_cameras(given, lay, (mean, std)), per_channel, atol=1e-4, rtol=1e-4)
    frames = list(lay.camera_frames)
    ours, theirs = engine.model.decode_frames(given, frames), plain.decode_frames(per_channel, frames)
    for f in frames:
        assert (ours[f].int() - theirs[f].int()).abs().max() <= 1
