"""A small model written exactly in the layout of upstream's released checkpoint (model/released.py), for tests.

What each file holds, as upstream writes it (spec sections 2.10, 3.1, 4.4, 11):
* ``Cosmos-Policy-ALOHA-Predict2-2B.pt``: ``torch.save`` of a flat ``{"net.<param or buffer>": tensor}`` dict,
  saved from the bf16 model (``on_train_start`` casts the net to bf16, floating buffers included; the int64
  training counters stay int64), with the Transformer Engine ``_extra_state`` entries of the TE RMSNorms
  (q/k norms of every attention, ``t_embedding_norm``). Those hold no weights; their value depends on the TE
  version and on the distributed-checkpoint conversion: an ``io.BytesIO`` with a ``torch.save``d object (the
  reason diffusers and upstream load Cosmos-Predict2 .pt files with weights_only=False), None, or an empty
  uint8 tensor. `write_released_folder` writes all three kinds.
* ``aloha_dataset_statistics.json``: ``actions_`` / ``proprio_`` ``{min,max,mean,std,median}``, 14 floats each.
* ``aloha_t5_embeddings.pkl``: ``pickle.dump`` of ``{instruction: bf16 tensor (1, L, D)}``.
* ``tokenizer/tokenizer.pth``: ``torch.save`` of the Wan2.1 VAE state dict (``encoder.*``, ``conv1.*``,
  ``conv2.*``, ``decoder.*``), float32, as the base model's repository ships it.
"""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import torch

from cosmos_policy_ros.config import share_dir
from cosmos_policy_ros.model.config import load_model_config
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel
from cosmos_policy_ros.model.released import STATS, T5, TOKENIZER, WEIGHTS
from cosmos_policy_ros.robot.aloha import AlohaRobot

INSTRUCTIONS = ("fold shirt", "put candy in bag")


def te_extra_state(kind: int):
    """One of the three forms a TE ``_extra_state`` value takes in a saved state dict."""
    if kind == 0:
        buf = io.BytesIO()
        torch.save(None, buf)
        buf.seek(0)
        return buf
    return None if kind == 1 else torch.empty(0, dtype=torch.uint8)


def released_state_dict(model: CosmosPolicyModel) -> dict:
    """The DiT as upstream saves it: net.* in bf16 (int buffers as they are) + TE extra state entries."""
    sd = {}
    for k, v in model.net.state_dict().items():
        sd["net." + k] = v.detach().to(torch.bfloat16) if v.is_floating_point() else v.detach().clone()
    norms = ["t_embedding_norm"] + [f"blocks.{i}.{a}.{n}" for i in range(len(model.net.blocks))
                                    for a in ("self_attn", "cross_attn") for n in ("q_norm", "k_norm")]
    for i, name in enumerate(norms):
        sd[f"net.{name}._extra_state"] = te_extra_state(i % 3)
    return sd


def released_statistics(robot: AlohaRobot, spread: float = 0.3) -> dict:
    """Upstream's statistics keys, spanning the robot's limits around its start pose."""
    centre = robot.pose14("start", gripper=0.5)
    lo, hi = np.maximum(centre - spread, robot.lower), np.minimum(centre + spread, robot.upper)
    out = {}
    for kind in ("actions", "proprio"):
        out.update({f"{kind}_min": lo.tolist(), f"{kind}_max": hi.tolist(), f"{kind}_mean": centre.tolist(),
                    f"{kind}_std": ((hi - lo) / 4).tolist(), f"{kind}_median": centre.tolist()})
    return out


def write_released_folder(dest: Path, model_config: str = "tiny_test", seed: int = 0,
                          tokenizer_in_subfolder: bool = True) -> Path:
    """Write the four released files for a random model of config/model/<model_config>.yaml; returns dest."""
    dest.mkdir(parents=True, exist_ok=True)
    cfg = load_model_config(share_dir() / "config" / "model" / f"{model_config}.yaml")
    model = CosmosPolicyModel.build(cfg, "cpu", torch.float32, seed=seed)
    torch.save(released_state_dict(model), dest / WEIGHTS.names[0])
    tok = dest / (TOKENIZER.names[1] if tokenizer_in_subfolder else TOKENIZER.names[0])
    tok.parent.mkdir(exist_ok=True)
    torch.save(model.vae.state_dict(), tok)
    (dest / STATS.names[0]).write_text(json.dumps(released_statistics(AlohaRobot.from_yaml()), indent=4))
    g = torch.Generator().manual_seed(seed)
    table = {s: torch.randn(1, cfg.text_len, cfg.dit.crossattn_emb_channels, generator=g).to(torch.bfloat16)
             for s in INSTRUCTIONS}
    with open(dest / T5.names[0], "wb") as f:
        pickle.dump(table, f)
    return dest


def write_tiny_episodes(d: Path, instruction: str, n: int = 2, T: int = 41, height: int = 64, width: int = 64,
                        seed: int = 0) -> Path:
    """Episodes near the robot's start pose (inside `released_statistics`' range) with random frames of the
    three released cameras, as ALOHA HDF5 (what `cosmos-aloha convert` writes from a lab's recordings)."""
    from cosmos_policy_ros.data.aloha_hdf5 import write_episode
    rng = np.random.default_rng(seed)
    centre = AlohaRobot.from_yaml().pose14("start", gripper=0.5)
    cams = ("cam_left_wrist", "cam_right_wrist", "cam_high")
    for e in range(n):
        qpos = (centre + 0.1 * np.sin(np.linspace(0, 1, T)[:, None] * np.arange(1, 15) + e)).astype(np.float32)
        imgs = {c: (rng.random((T, height, width, 3)) * 255).astype(np.uint8) for c in cams}
        write_episode(d / f"episode_{e}.hdf5", qpos, qpos * 0, np.roll(qpos, -1, axis=0), imgs, success=True,
                      task="lab", instruction=instruction, seed=e)
    return d
