"""Dataset preparation: HDF5 episodes -> statistics, sample table and the latent cache the run trains on.

Episodes stream through the latent cache (train/latent_store.py) one by one; only their low-dimensional
arrays (qpos, actions: kilobytes per episode) are held together, for the statistics and the sample table.
Also measures the per-channel mean/std of the (frozen) VAE's latents on these images (accumulated while
encoding) and folds them into the model config, so the diffusion sees unit-scale latents, as Wan2.1's released
statistics do for its own VAE. The run keeps `<run>/dataset.json` (statistics, model config, where the latents
are) and `<run>/dataset.safetensors` (the sample table), so resuming never re-encodes and is bit-exact.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save

from cosmos_policy_ros.data.aloha_hdf5 import EpisodeData, camera_frames, list_episodes, open_episode, read_episode
from cosmos_policy_ros.data.stats import compute_statistics
from cosmos_policy_ros.inference.normalization import DatasetStats
from cosmos_policy_ros.inference.preprocessing import TRAINER, Preprocessing
from cosmos_policy_ros.model.camera_norm import camera_norm_maps
from cosmos_policy_ros.model.config import ModelConfig, config_to_dict, model_config_from_dict
from cosmos_policy_ros.model.layout import LatentLayout
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel
from cosmos_policy_ros.robot.aloha import GRIPPER_CONVENTION_KEYS, AlohaRobot

from . import augment
from .config import TrainConfig
from .dataset import LatentSampleSet, SampleTable, encoded_steps, plan_samples
from .latent_store import BLANK, EncodeSettings, EpisodeSource, FrameEncoder, LatentReader, LatentStore, vae_fingerprint

DATASET_FILE = "dataset.safetensors"
DATASET_JSON = "dataset.json"
LATENT_DIR = "latents"


def with_latent_stats(cfg: ModelConfig, mean: torch.Tensor, std: torch.Tensor) -> ModelConfig:
    """Fold measured stats of currently-normalised latents into the VAE config (z' = (z - mean)/std)."""
    old_m = torch.tensor(cfg.vae.latent_mean)
    old_s = torch.tensor(cfg.vae.latent_std)
    new_m = old_m + mean * old_s
    new_s = old_s * std
    vae = dataclasses.replace(cfg.vae, latent_mean=tuple(float(x) for x in new_m),
                              latent_std=tuple(float(x) for x in new_s))
    return dataclasses.replace(cfg, vae=vae)


def with_camera_norm(cfg: ModelConfig, reader: LatentReader, shift: torch.Tensor, scale: torch.Tensor,
                     floor: float, rows_per_read: int = 4096) -> ModelConfig:
    """Measure per-position camera statistics (model/camera_norm.py) over every cached frame (copy 0), in the
    per-channel normalised scale, and put them into the model config."""
    n, s1, s2 = 0, 0.0, 0.0
    for start in range(0, len(reader), rows_per_read):
        rows = np.arange(start, min(start + rows_per_read, len(reader)))
        z = reader.read(rows, np.zeros(len(rows), np.int64)).double()
        z = (z - shift.double()[None, None, :, None, None]) / scale.double()[None, None, :, None, None]
        n, s1, s2 = n + len(rows), s1 + z.sum(0), s2 + (z * z).sum(0)
    m = s1 / n
    sd = ((s2 - n * m * m).clamp_min(0) / max(n - 1, 1)).sqrt().clamp_min(floor)
    return dataclasses.replace(cfg, camera_latent_mean=tuple(m.flatten().tolist()),
                               camera_latent_std=tuple(sd.flatten().tolist()))


def episode_files(data_dirs: str | Path | Sequence[str | Path], max_episodes: int = 0) -> list[Path]:
    """Episodes of one or several directories (e.g. demos + policy rollouts), in a stable order."""
    dirs = [data_dirs] if isinstance(data_dirs, (str, Path)) else list(data_dirs)
    files = [f for d in dirs for f in list_episodes(d)]
    return files[:max_episodes] if max_episodes else files


def training_preprocessing(train_cfg: TrainConfig) -> Preprocessing:
    """How the cache turns a camera frame into the model's input (before augmentation): the recipe's per-camera
    crop, its resize, no test-time centre crop."""
    return dataclasses.replace(TRAINER, resize=train_cfg.image_resize, center_crop=False, crop=dict(train_cfg.crop))


def inference_preprocessing(train_cfg: TrainConfig) -> Preprocessing:
    """What a bundle of this run must be deployed with: the training resize, and upstream's test-time
    centre crop when the run trained on random-crop augmented frames (export writes it as `preprocess`)."""
    return dataclasses.replace(training_preprocessing(train_cfg), center_crop=train_cfg.augment_copies > 0)


def encode_settings(model: CosmosPolicyModel, train_cfg: TrainConfig) -> EncodeSettings:
    unknown = sorted(set(train_cfg.crop) - set(model.layout.cameras))
    if unknown:
        raise ValueError(f"train.crop: camera(s) {unknown} not among the model cameras {list(model.layout.cameras)}")
    copies = train_cfg.augment_copies
    return EncodeSettings(vae=vae_fingerprint(model.vae), image_size=model.cfg.layout.image_size,
                          cameras=tuple(model.layout.cameras),
                          preprocess=dataclasses.asdict(training_preprocessing(train_cfg)), copies=copies,
                          augment_seed=train_cfg.seed if copies else None,
                          augment_ranges=augment.ranges() if copies else {}, dtype=train_cfg.latent_dtype)


def latent_dir(run_dir: str | Path, train_cfg: TrainConfig) -> Path:
    return Path(train_cfg.latent_cache) if train_cfg.latent_cache else Path(run_dir) / LATENT_DIR


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


def check_cameras(ep: EpisodeData, cameras: Sequence[str]) -> None:
    """Every camera the layout needs is there as (T, H, W, 3) uint8, checked before any frame is encoded."""
    with open_episode(ep.path) as f:
        for cam in cameras:
            camera_frames(f, cam, len(ep), ep.path)


def encode_latents(files: Sequence[Path], episodes: Sequence[EpisodeData], run_dir: str | Path,
                   train_cfg: TrainConfig, model: CosmosPolicyModel, device: str | None = None,
                   progress: bool = True) -> tuple[LatentStore, list[EpisodeSource], list[str]]:
    """Bring the latent cache up to date for these episodes; returns (store, sources, keys re-encoded).

    device: where the VAE runs (default: cuda when available); it is moved back afterwards.
    """
    lay = model.layout
    sources = [EpisodeSource(Path(p), encoded_steps(len(ep), train_cfg.sample_stride, lay.chunk_len))
               for p, ep in zip(files, episodes)]
    store = LatentStore(latent_dir(run_dir, train_cfg), encode_settings(model, train_cfg))
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    home = next(model.vae.parameters()).device

    def encoder() -> FrameEncoder:
        return FrameEncoder(model.vae.to(dev), lay, store.settings, dev, train_cfg.encode_batch)

    try:
        done = store.update(sources, encoder, progress=progress)
    finally:
        model.vae.to(home)
    return store, sources, done


def prepare_dataset(data_dir: str | Path | Sequence[str | Path], run_dir: str | Path, model_cfg: ModelConfig,
                    train_cfg: TrainConfig, model: CosmosPolicyModel, progress: bool = True,
                    inherited_stats: dict | None = None, init_from: str | None = None,
                    device: str | None = None) -> tuple[ModelConfig, dict, str]:
    """Encode (what the cache lacks) and plan samples; returns (model config with latent stats, stats, instruction).

    inherited_stats (fine-tuning with --init-from): keep the parent's action/proprio statistics and
    its VAE latent statistics instead of measuring new ones, so the fine-tuned model reads and
    writes exactly the numbers the parent does (a planning model must share them with the policy
    whose action latents it scores).
    """
    run = Path(run_dir)
    files = episode_files(data_dir, train_cfg.max_episodes)
    lay = model.layout
    episodes = [read_episode(p) for p in files]          # qpos, actions, labels: no frames
    for ep in episodes:
        check_cameras(ep, lay.cameras)
    check_gripper_constants(episodes, train_cfg.robot_config)
    instructions = sorted({ep.instruction for ep in episodes})
    if len(instructions) != 1:
        raise ValueError(f"{data_dir}: expected one instruction across episodes, found {instructions}")
    stats = inherited_stats or compute_statistics([e.actions for e in episodes], [e.qpos for e in episodes])
    store, sources, _ = encode_latents(files, episodes, run, train_cfg, model, device, progress)
    table = plan_samples(episodes, lay, DatasetStats.from_dict(stats), train_cfg.sample_stride, train_cfg.gamma,
                         store.rows(sources))
    if inherited_stats is None:
        mean, std = (torch.tensor(v, dtype=torch.float32) for v in store.latent_moments(sources))
        std = std.clamp_min(1e-3)
        new_cfg = with_latent_stats(model_cfg, mean, std)
    else:
        C = model_cfg.vae.z_dim
        mean, std, new_cfg = torch.zeros(C), torch.ones(C), model_cfg
    reader = store.reader(sources)
    if train_cfg.camera_latent_norm > 0 and inherited_stats is None:
        new_cfg = with_camera_norm(new_cfg, reader, mean, std, train_cfg.camera_latent_norm)
    meta = {"data_dir": [str(d) for d in ([data_dir] if isinstance(data_dir, (str, Path)) else data_dir)],
            "episodes": [str(p) for p in files], "samples": len(table), "encoded_frames": len(reader),
            "instruction": instructions[0], "stats": stats, "sample_stride": train_cfg.sample_stride,
            "gamma": train_cfg.gamma, "seed": train_cfg.seed, "model": config_to_dict(new_cfg),
            "init_from": init_from,
            "latents": {"dir": str(store.dir.resolve()), "files": reader.files,
                        "frames": np.diff(reader.offsets).tolist(), "copies": reader.num_copies,
                        "settings": store.settings.as_dict()},
            "latent_norm": {"shift": mean.tolist(), "scale": std.tolist()}}
    run.mkdir(parents=True, exist_ok=True)
    _write_if_changed(run / DATASET_JSON, json.dumps(meta, indent=1).encode())
    _write_if_changed(run / DATASET_FILE, save({f"table.{k}": v for k, v in table.as_tensors().items()}))
    return new_cfg, stats, instructions[0]


def _write_if_changed(path: Path, data: bytes) -> None:
    """Atomic write that leaves an identical file alone (several ranks may prepare the same run)."""
    if path.is_file() and path.read_bytes() == data:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def sample_set(run_dir: str | Path, model_cfg_dict: dict) -> LatentSampleSet:
    """The prepared run's sample set: its table in memory, its latents memory-mapped (lazily, per process)."""
    run = Path(run_dir)
    cfg = model_config_from_dict(model_cfg_dict, str(run))
    if not (run / DATASET_JSON).is_file():
        raise FileNotFoundError(f"{run}: no prepared dataset ({DATASET_JSON} missing)")
    meta = json.loads((run / DATASET_JSON).read_text())
    lat = meta.get("latents")
    if lat is None:
        raise ValueError(f"{run}: dataset made by an older version (latents inside {DATASET_FILE}); re-prepare it "
                         "with a fresh --run")
    t = load_file(str(run / DATASET_FILE))
    table = SampleTable.from_tensors({k[len("table."):]: v for k, v in t.items() if k.startswith("table.")})
    d = Path(lat["dir"])
    reader = LatentReader(d, lat["files"], lat["frames"], np.load(d / BLANK), lat["copies"])
    norm = meta["latent_norm"]
    return LatentSampleSet(LatentLayout.from_config(cfg.layout), table, reader, torch.tensor(norm["shift"]),
                           torch.tensor(norm["scale"]), camera_norm=camera_norm_maps(cfg))
