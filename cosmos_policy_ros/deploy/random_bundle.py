"""A checkpoint bundle with random weights, for smoke tests of a node graph without trained weights.

The statistics span the robot's joint limits around the start pose, so whatever the untrained
network outputs maps into plausible joint targets (the executor clips anyway). Importing this module
imports torch: callers import it where they are about to build a model anyway.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cosmos_policy_ros.config import share_dir
from cosmos_policy_ros.deploy.bundle import EMBED_FILE, META_FILE, MODEL_FILE
from cosmos_policy_ros.model.config import config_to_dict, load_model_config
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel
from cosmos_policy_ros.model.text import T5EmbeddingStore
from cosmos_policy_ros.robot.aloha import AlohaRobot


def make_random_bundle(dest: str | Path, model_config: str = "tiny_test", instruction: str = "transfer the cube",
                       action_period_s: float = 0.04, seed: int = 0, spread: float = 0.3) -> Path:
    """Write a bundle (training-checkpoint layout: checkpoint.json, stats inline) into `dest`; returns `dest`.

    model_config names a YAML under config/model/; seed fixes weights and embeddings; spread (rad) is the
    half-width of the statistics around the start pose (other spreads give bundles with other statistics).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cfg = load_model_config(share_dir() / "config" / "model" / f"{model_config}.yaml")
    torch.manual_seed(seed)
    model = CosmosPolicyModel.build(cfg, "cpu", torch.float32, seed=seed)
    model.save(dest / MODEL_FILE)
    robot = AlohaRobot.from_yaml()
    centre = robot.pose14("start", gripper=0.5)
    lo = np.maximum(centre - spread, robot.lower)
    hi = np.minimum(centre + spread, robot.upper)
    stats = {"actions_min": lo.tolist(), "actions_max": hi.tolist(), "proprio_min": lo.tolist(),
             "proprio_max": hi.tolist()}
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(cfg.text_len, cfg.dit.crossattn_emb_channels, generator=g)
    T5EmbeddingStore({instruction: emb}).save(dest / EMBED_FILE)
    (dest / META_FILE).write_text(json.dumps({"model": config_to_dict(cfg), "stats": stats, "instruction": instruction,
                                              "action_period_s": action_period_s, "step": 0,
                                              "gripper_convention": robot.config.gripper.convention_record(),
                                              "note": "random weights (smoke tests only)"}, indent=1))
    return dest
