"""config/train/sim_crop.yaml: it validates, its demos render at the size its crop needs, and 3 training steps
run on 2 short generated demos with its layout and crop (a tiny DiT in place of its own, for time)."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import yaml

from cosmos_policy_ros.inference.preprocessing import Preprocessing
from cosmos_policy_ros.train import cli
from cosmos_policy_ros.train.demos import generate_demos, recipe_cameras

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "config/train/sim_crop.yaml"


def test_sim_crop_recipe_trains_three_steps_on_two_generated_demos(tmp_path):
    model, train = cli.load_recipe(RECIPE)
    lay = model.layout
    assert "cam_high" in train.crop and set(train.crop) <= set(lay.cameras)
    cams, side = recipe_cameras(str(RECIPE))
    assert cams == list(lay.cameras)
    assert side == Preprocessing(crop=dict(train.crop)).square_render_side(lay.image_size, cams) > lay.image_size
    info = generate_demos(tmp_path / "demos", 2, cameras=cams, size=side, steps=40, keep_failures=True,
                          progress=False, compression="gzip")
    with h5py.File(tmp_path / "demos" / info["episodes"][0]) as f:       # stored whole, at the render size
        assert f[f"observations/images/{cams[0]}"].shape == (40, side, side, 3)
    raw = yaml.safe_load(RECIPE.read_text())
    raw["model"]["dit"].update(model_channels=32, num_blocks=1, num_heads=2, crossattn_emb_channels=16,
                               adaln_lora_dim=8)
    raw["train"].update(steps=3, batch_size=4, warmup_steps=1, sample_stride=10, checkpoint_every_s=1e9,
                        log_every=1, encode_batch=4)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    tr = cli.start(recipe, tmp_path / "demos", tmp_path / "run", progress=False)
    settings = json.loads((tmp_path / "run" / "dataset.json").read_text())["latents"]["settings"]
    assert Preprocessing(**settings["preprocess"]).crop == train.crop               # the cache cropped
    tr.fit(progress=False, checkpoint=False)
    assert tr.step == 3 and np.isfinite(tr.history[-1]["loss"])
