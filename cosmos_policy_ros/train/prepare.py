"""Dataset preparation: HDF5 episodes -> statistics, sample table and cached VAE latents in the run dir.

Also measures the per-channel mean/std of the (frozen) VAE's latents on these images and folds them
into the model config, so the diffusion sees unit-scale latents, as Wan2.1's released statistics
do for its own VAE. Everything lands in `<run>/dataset.safetensors` + JSON, so resuming never
re-encodes and is bit-exact.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from cosmos_policy_ros.data.aloha_hdf5 import EpisodeData, list_episodes, read_episode
from cosmos_policy_ros.data.stats import compute_statistics
from cosmos_policy_ros.inference.normalization import DatasetStats
from cosmos_policy_ros.model.config import ModelConfig, config_to_dict, model_config_from_dict
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel
from cosmos_policy_ros.robot.aloha import GRIPPER_CONVENTION_KEYS, AlohaRobot

from .config import TrainConfig
from .dataset import LatentSampleSet, SampleTable, plan_samples
from .latent_cache import encode_prefixes

DATASET_FILE = "dataset.safetensors"
DATASET_JSON = "dataset.json"


def with_latent_stats(cfg: ModelConfig, mean: torch.Tensor, std: torch.Tensor) -> ModelConfig:
    """Fold measured stats of currently-normalised latents into the VAE config (z' = (z - mean)/std)."""
    old_m = torch.tensor(cfg.vae.latent_mean)
    old_s = torch.tensor(cfg.vae.latent_std)
    new_m = old_m + mean * old_s
    new_s = old_s * std
    vae = dataclasses.replace(cfg.vae, latent_mean=tuple(float(x) for x in new_m),
                              latent_std=tuple(float(x) for x in new_s))
    return dataclasses.replace(cfg, vae=vae)


def episode_files(data_dirs: str | Path | Sequence[str | Path], max_episodes: int = 0) -> list[Path]:
    """Episodes of one or several directories (e.g. demos + policy rollouts), in a stable order."""
    dirs = [data_dirs] if isinstance(data_dirs, (str, Path)) else list(data_dirs)
    files = [f for d in dirs for f in list_episodes(d)]
    return files[:max_episodes] if max_episodes else files


def cached_dataset(run_dir: str | Path, data_dir: str | Path | Sequence[str | Path], model_cfg: ModelConfig,
                   train_cfg: TrainConfig, init_from: str | None = None) -> tuple[ModelConfig, dict, str] | None:
    """Reuse <run>/dataset.* if it was made from the same episodes, stride, layout and VAE (any DiT)."""
    run = Path(run_dir)
    if not (run / DATASET_JSON).is_file() or not (run / DATASET_FILE).is_file():
        return None
    meta = json.loads((run / DATASET_JSON).read_text())
    files = episode_files(data_dir, train_cfg.max_episodes)
    cached = model_config_from_dict(meta["model"], str(run / DATASET_JSON))
    same_vae = dataclasses.replace(cached.vae, latent_mean=model_cfg.vae.latent_mean,
                                   latent_std=model_cfg.vae.latent_std) == model_cfg.vae
    if (meta["episodes"] != [str(p) for p in files] or meta.get("sample_stride") != train_cfg.sample_stride
            or meta.get("gamma", train_cfg.gamma) != train_cfg.gamma or cached.layout != model_cfg.layout
            or not same_vae or meta.get("seed", train_cfg.seed) != train_cfg.seed
            or meta.get("init_from") != init_from):
        return None
    return dataclasses.replace(model_cfg, vae=cached.vae), meta["stats"], meta["instruction"]


def check_gripper_constants(episodes: Sequence[EpisodeData], robot_config: str) -> None:
    """Every episode that records its gripper constants (converted recordings do) was normalised with those of
    `robot_config`, which the exported bundle will name as its gripper convention; else one ValueError line."""
    gripper = AlohaRobot.from_yaml(robot_config).config.gripper
    for ep in episodes:
        if not ep.gripper_constants:
            continue  # in-process sim demos: written in SimAloha's own 0..1, which every robot config round-trips
        try:
            record = json.loads(ep.gripper_constants)
            same = gripper.matches(record)
        except (ValueError, TypeError, KeyError):
            same = False
            record = {}
        if not same:
            got = {k: record.get(k) for k in GRIPPER_CONVENTION_KEYS[:4]}
            raise ValueError(f"{ep.path}: recorded with gripper constants {got}, not those of train.robot_config "
                             f"{robot_config}: set train.robot_config to the robot config it was converted with")


def prepare_dataset(data_dir: str | Path | Sequence[str | Path], run_dir: str | Path, model_cfg: ModelConfig,
                    train_cfg: TrainConfig, model: CosmosPolicyModel, progress: bool = True,
                    inherited_stats: dict | None = None, init_from: str | None = None) -> tuple[ModelConfig, dict, str]:
    """Encode and cache; returns (model config with latent stats, dataset stats dict, instruction).

    inherited_stats (fine-tuning with --init-from): keep the parent's action/proprio statistics and
    its VAE latent statistics instead of measuring new ones, so the fine-tuned model reads and
    writes exactly the numbers the parent does (a planning model must share them with the policy
    whose action latents it scores).
    """
    run = Path(run_dir)
    files = episode_files(data_dir, train_cfg.max_episodes)
    lay = model.layout
    episodes = [read_episode(p, lay.cameras) for p in files]
    for ep in episodes:
        for cam, arr in ep.images.items():
            if arr.shape[1:3] != (model_cfg.layout.image_size,) * 2:
                raise ValueError(f"{ep.path}: {cam} images are {arr.shape[1]}x{arr.shape[2]}, the model needs "
                                 f"{model_cfg.layout.image_size}x{model_cfg.layout.image_size} "
                                 "(regenerate demos with --size)")
    check_gripper_constants(episodes, train_cfg.robot_config)
    instructions = sorted({ep.instruction for ep in episodes})
    if len(instructions) != 1:
        raise ValueError(f"{data_dir}: expected one instruction across episodes, found {instructions}")
    stats = inherited_stats or compute_statistics([e.actions for e in episodes], [e.qpos for e in episodes])
    table, frames = plan_samples(episodes, lay, DatasetStats.from_dict(stats), train_cfg.sample_stride, train_cfg.gamma)
    images = {c: np.stack([episodes[e].images[c][t] for e, t in frames]) for c in lay.cameras}
    cam, blank = encode_prefixes(model, images, progress=progress)
    if inherited_stats is None:
        mean = cam.mean(dim=(0, 1, 3, 4))
        std = cam.std(dim=(0, 1, 3, 4)).clamp_min(1e-3)
        cam = (cam - mean[None, None, :, None, None]) / std[None, None, :, None, None]
        blank = (blank - mean[:, None, None]) / std[:, None, None]
        new_cfg = with_latent_stats(model_cfg, mean, std)
    else:
        new_cfg = model_cfg
    tensors = {f"table.{k}": v for k, v in table.as_tensors().items()}
    tensors.update({"cam_latents": cam.contiguous(), "blank": blank.contiguous()})
    # The VAE weights that made these latents: a reused cache must bring its own encoder (a seeded
    # random VAE differs whenever the DiT config changes the generator's draw order).
    tensors.update({"vae." + k: v.detach().float().contiguous() for k, v in model.vae.state_dict().items()})
    run.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(run / DATASET_FILE))
    meta = {"data_dir": [str(d) for d in ([data_dir] if isinstance(data_dir, (str, Path)) else data_dir)],
            "episodes": [str(p) for p in files], "samples": len(table),
            "encoded_frames": len(frames), "instruction": instructions[0], "stats": stats,
            "sample_stride": train_cfg.sample_stride, "gamma": train_cfg.gamma, "seed": train_cfg.seed,
            "model": config_to_dict(new_cfg), "init_from": init_from}
    (run / DATASET_JSON).write_text(json.dumps(meta, indent=1))
    return new_cfg, stats, instructions[0]


def load_prepared(run_dir: str | Path) -> tuple[LatentSampleSet | None, dict]:
    """Read the cached dataset of a run (sample set is built once the layout is known)."""
    run = Path(run_dir)
    if not (run / DATASET_JSON).is_file():
        raise FileNotFoundError(f"{run}: no prepared dataset ({DATASET_JSON} missing)")
    return None, json.loads((run / DATASET_JSON).read_text())


def cached_vae_state(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """The VAE weights stored with the latent cache (keys without the `vae.` prefix)."""
    t = load_file(str(Path(run_dir) / DATASET_FILE))
    vae = {k[4:]: v for k, v in t.items() if k.startswith("vae.")}
    if not vae:
        raise ValueError(f"{run_dir}: latent cache has no VAE weights (made by an older version); re-prepare it")
    return vae


def sample_set(run_dir: str | Path, model_cfg_dict: dict) -> LatentSampleSet:
    from cosmos_policy_ros.model.layout import LatentLayout
    cfg = model_config_from_dict(model_cfg_dict, str(run_dir))
    t = load_file(str(Path(run_dir) / DATASET_FILE))
    table = SampleTable.from_tensors({k[len("table."):]: v for k, v in t.items() if k.startswith("table.")})
    return LatentSampleSet(LatentLayout.from_config(cfg.layout), table, t["cam_latents"], t["blank"])
