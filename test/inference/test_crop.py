"""Per-camera workspace crop: the same cut in the nodes' preprocessing, the training cache, the exported bundle
and the sim's render size; a camera config stating another crop than the bundle's stops the node in one line.

Tiny model (config/model/tiny_test.yaml) on synthetic 128x128 episodes: seconds.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.data.aloha_hdf5 import read_episode, write_episode
from cosmos_policy_ros.demo import camera_size
from cosmos_policy_ros.deploy.bundle import build_engine, check_camera_crops, resolve_bundle
from cosmos_policy_ros.inference.images import preprocess_image
from cosmos_policy_ros.inference.preprocessing import TRAINER, Preprocessing, crop_pixels, crop_render_side
from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.train import cli
from cosmos_policy_ros.train.config import train_config_from_dict
from cosmos_policy_ros.train.demos import recipe_cameras

ROOT = Path(__file__).resolve().parents[2]
CAMS = ("cam_left_wrist", "cam_right_wrist", "cam_high")
CROP = [0.25, 0.125, 0.75, 0.625]          # 64x64 px of a 128x128 frame, at (32, 16)
INSTRUCTION = "do the toy task"


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_crop_then_resize_equals_the_hand_computation():
    img = frame(128, 128)
    prep = Preprocessing(resize="torch", center_crop=False, crop={"cam_high": CROP})
    # the box is exactly the model size: the crop alone
    assert np.array_equal(preprocess_image(img, 64, prep, camera="cam_high").numpy(), img[16:80, 32:96])
    # smaller model size: the crop, then one antialiased bicubic resize, rounded
    x = torch.from_numpy(img[16:80, 32:96].copy()).permute(2, 0, 1)[None].float()
    want = F.interpolate(x, size=(32, 32), mode="bicubic", antialias=True, align_corners=False).clamp(0, 255).round()
    got = preprocess_image(img, 32, prep, camera="cam_high")
    assert torch.equal(got, want[0].permute(1, 2, 0).to(torch.uint8))
    # other cameras and no camera: the whole frame
    whole = preprocess_image(img, 32, prep, camera="cam_left_wrist")
    assert torch.equal(whole, preprocess_image(img, 32, TRAINER))
    # edges round to the nearest pixel in a 4:3 frame; the sim renders large enough for the box to hold the size
    assert crop_pixels((0.1, 0.1, 0.6, 0.9), 640, 480) == (64, 48, 384, 432)
    assert crop_render_side(64, (0.35, 0.45, 0.75, 0.85)) == 160 and crop_render_side(64, None) == 64
    assert prep.square_render_side(64, CAMS) == 128 and TRAINER.square_render_side(64, CAMS) == 64


def test_crop_configs_refuse_bad_boxes_in_one_line(tmp_path):
    cams = yaml.safe_load((ROOT / "config/cameras.yaml").read_text())
    cams["cameras"]["cam_high"]["crop"] = [0.5, 0.0, 0.4, 1.0]
    (tmp_path / "cams.yaml").write_text(yaml.safe_dump(cams))
    with pytest.raises(ConfigError, match=r"cameras.cam_high.crop: expected 0 <= x0 < x1 <= 1") as e:
        load_cameras(tmp_path / "cams.yaml")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"r.yaml: train.crop.cam_high: expected \[x0, y0, x1, y1\]"):
        train_config_from_dict({"crop": {"cam_high": [0, 1]}}, "r.yaml")
    with pytest.raises(ConfigError, match=r"preprocess.crop.cam_high: expected 0 <= x0"):
        Preprocessing.from_meta({"model": {}, "preprocess": {"crop": {"cam_high": [0, 0, 2, 1]}}}, "policy.json")
    assert load_cameras().cameras["cam_high"].crop is None                  # the shipped default: whole frames


def make_episodes(d: Path, n: int = 1, T: int = 6) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for e in range(n):
        qpos = np.sin(np.linspace(0, 1, T)[:, None] * np.arange(1, 15) + e).astype(np.float32)
        imgs = {c: np.stack([frame(128, 128, 10 * e + t) for t in range(T)]) for c in CAMS}
        write_episode(d / f"episode_{e}.hdf5", qpos, qpos * 0, np.roll(qpos, -1, axis=0), imgs, success=True,
                      task="toy", instruction=INSTRUCTION, seed=e)
    return d


def test_exported_bundle_deploys_with_its_training_crop(tmp_path):
    """Train 2 steps with train.crop on 128x128 frames, export: the bundle records the crop, the engine built
    from it (as the nodes build it) encodes a raw frame exactly as the training cache did, the sim render
    size follows, and a camera config stating another crop is refused in one line."""
    data = make_episodes(tmp_path / "eps")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model": str(ROOT / "config/model/tiny_test.yaml"), "train": {
        "steps": 2, "batch_size": 4, "warmup_steps": 1, "sample_stride": 5, "checkpoint_every_s": 1e9, "threads": 1,
        "encode_batch": 4, "latent_dtype": "float32", "crop": {"cam_high": CROP}}}))
    tr = cli.start(recipe, data, tmp_path / "run", progress=False)
    tr.fit(progress=False, checkpoint=True)
    out = cli.export(tmp_path / "run", tmp_path / "bundle")
    assert json.loads((out / "policy.json").read_text())["preprocess"]["crop"] == {"cam_high": CROP}
    bundle = resolve_bundle(out)
    assert bundle.preprocessing.crop == {"cam_high": tuple(CROP)} and not bundle.preprocessing.center_crop
    assert resolve_bundle(tmp_path / "run").preprocessing.crop == bundle.preprocessing.crop   # checkpoint.json too
    engine = build_engine(bundle)
    ep = read_episode(next(data.glob("*.hdf5")), CAMS)
    obs = {"images": {c: ep.images[c][0] for c in CAMS}, "proprio": ep.qpos[0], "instruction": INSTRUCTION}
    given = engine.prepare(obs).clean
    cached = tr.data.latents.read(np.array([int(tr.data.table.row_t[0])]), np.array([0]))[0]
    shift, scale = tr.data.shift[:, None, None], tr.data.scale[:, None, None]   # folded into the bundle's VAE
    lay = engine.layout
    for k, cam in enumerate(CAMS):
        torch.testing.assert_close((torch.as_tensor(cached[k]) - shift) / scale, given[0, :, lay.camera(cam)],
                                   atol=1e-4, rtol=1e-4)
    uncropped = Preprocessing(**{**vars(bundle.preprocessing), "crop": {}})
    assert not torch.equal(preprocess_image(ep.images["cam_high"][0], 64, uncropped, camera="cam_high"),
                           preprocess_image(ep.images["cam_high"][0], 64, bundle.preprocessing, camera="cam_high"))
    assert bundle.preprocessing.square_render_side(64, lay.cameras) == 128
    assert camera_size(out, None, None) == (128, 128)                       # the demo graph's sim renders
    check_camera_crops(bundle, {"cam_high": tuple(CROP), "cam_low": (0.0, 0.0, 0.5, 0.5)}, "cameras.yaml")
    check_camera_crops(bundle, {"cam_high": None}, "cameras.yaml")              # not stated: the bundle's
    with pytest.raises(ConfigError, match=r"cameras.yaml: cameras.cam_high.crop \[0.0, 0.0, 1.0, 1.0\] differs") as e:
        check_camera_crops(bundle, {"cam_high": (0.0, 0.0, 1.0, 1.0)}, "cameras.yaml")
    assert "\n" not in str(e.value) and "[0.25, 0.125, 0.75, 0.625]" in str(e.value)
    with pytest.raises(ConfigError, match=r"cam_left_wrist.crop .* whole frames \(no crop\)"):
        check_camera_crops(bundle, {"cam_left_wrist": (0.0, 0.0, 0.5, 0.5)}, "cameras.yaml")


def test_recipe_render_size_for_the_demos():
    cams, side = recipe_cameras("sim_crop.yaml")
    _, train = cli.load_recipe(ROOT / "config/train/sim_crop.yaml")
    model, _ = cli.load_recipe(ROOT / "config/train/sim_crop.yaml")
    assert cams == list(model.layout.cameras) and "cam_high" in train.crop
    assert side == Preprocessing(crop=dict(train.crop)).square_render_side(model.layout.image_size, cams) > 64
    assert recipe_cameras("sim_small.yaml") == (["cam_high"], 64)
