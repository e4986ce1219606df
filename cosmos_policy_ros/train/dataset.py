"""Training samples over HDF5 demos: policy / world-model / value sequences with their masks and targets.

One sample = the full latent sequence x0 of the layout with every vector written in (current proprio,
action chunk, future proprio, value; spec 10.2): x0 is both the clean input of the conditioning
frames and the regression target. What differs between the three sample kinds is only the condition
mask (policy: blank/proprio/cameras given; world model: + action; value: all but the value frame).
Batches hold the kinds in fixed proportions (50/25/25 upstream) so every step trains all three.

Vectors are kept per step (not per sample: a 50-step chunk per sample would be 50x the episodes' size) and
camera latents come from a LatentReader (memory-mapped, train/latent_store.py) or InMemoryLatents.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from cosmos_policy_ros.data.aloha_hdf5 import EpisodeData
from cosmos_policy_ros.inference.normalization import DatasetStats
from cosmos_policy_ros.model import layout as L
from cosmos_policy_ros.model.layout import LatentLayout, Query

from .latent_store import InMemoryLatents, LatentReader
from .value_targets import episode_returns, terminal_reward

KINDS = (Query.POLICY, Query.WORLD, Query.VALUE)
SAMPLE_KEYS = ("row_t", "row_f", "step", "future", "end", "value")
STEP_KEYS = ("proprio_steps", "action_steps")


def sample_starts(T: int, stride: int) -> np.ndarray:
    return np.arange(0, T, stride)


def encoded_steps(T: int, stride: int, horizon: int) -> np.ndarray:
    """Steps whose camera latents samples read: every start and its future step min(t + horizon, T - 1)."""
    t = sample_starts(T, stride)
    return np.unique(np.concatenate([t, np.minimum(t + horizon, T - 1)]))


@dataclass
class SampleTable:
    """Per-sample indices into the camera-latent rows and into the per-step (normalised) vectors."""

    row_t: np.ndarray           # (N,) latent row of the current cameras
    row_f: np.ndarray           # (N,) latent row of the future cameras
    step: np.ndarray            # (N,) global step of the sample's start (into *_steps)
    future: np.ndarray          # (N,) global step of its future state
    end: np.ndarray             # (N,) one past its episode's last global step
    value: np.ndarray           # (N,) float32 in [-1, 1]
    proprio_steps: np.ndarray   # (S, P) float32, normalised
    action_steps: np.ndarray    # (S, A) float32, normalised
    chunk_len: int

    def __len__(self) -> int:
        return len(self.row_t)

    @property
    def proprio(self) -> np.ndarray:
        return self.proprio_steps[self.step]

    @property
    def future_proprio(self) -> np.ndarray:
        return self.proprio_steps[self.future]

    def action_chunks(self, index) -> np.ndarray:
        """(B, chunk, A): actions from each start, padded past the episode's end by its last action (upstream)."""
        index = np.asarray(index)
        at = self.step[index][:, None] + np.arange(self.chunk_len)[None]
        return self.action_steps[np.minimum(at, self.end[index][:, None] - 1)]

    def step_in_episode(self) -> np.ndarray:
        """(N,) each sample's start step counted from its episode's first step (episodes are contiguous)."""
        _, group = np.unique(self.end, return_inverse=True)
        first = np.full(group.max() + 1 if len(group) else 0, np.iinfo(np.int64).max)
        np.minimum.at(first, group, self.step)
        return self.step - first[group]

    def draw_probabilities(self, early_steps: int, early_weight: float) -> np.ndarray | None:
        """Per-sample draw probabilities that favour starts before `early_steps` by `early_weight`; None: uniform.

        Why: only the approach (before the grasp) needs the cameras to place the gripper; later the proprio
        carries where the cube is, so uniform draws spend most of the image-reading signal elsewhere.
        """
        if early_steps <= 0 or early_weight == 1.0 or not len(self):
            return None
        w = np.where(self.step_in_episode() < early_steps, early_weight, 1.0)
        return w / w.sum()

    def as_tensors(self) -> dict[str, torch.Tensor]:
        d = {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in SAMPLE_KEYS + STEP_KEYS}
        d["chunk_len"] = torch.tensor(self.chunk_len)
        return d

    @classmethod
    def from_tensors(cls, d: dict[str, torch.Tensor]) -> "SampleTable":
        return cls(**{k: d[k].numpy() for k in SAMPLE_KEYS + STEP_KEYS}, chunk_len=int(d["chunk_len"]))


def plan_samples(episodes: Sequence[EpisodeData], layout: LatentLayout, stats: DatasetStats, stride: int,
                 gamma: float, rows: Callable[[int, np.ndarray], np.ndarray]) -> SampleTable:
    """Sample starts every `stride` steps; rows(e, steps) gives the latent rows of episode e's steps."""
    H = layout.chunk_len
    cols: dict[str, list] = {k: [] for k in SAMPLE_KEYS + STEP_KEYS}
    base = 0
    for e, ep in enumerate(episodes):
        T = len(ep)
        if ep.actions.shape[1] != layout.action_dim or ep.qpos.shape[1] != layout.proprio_dim:
            raise ValueError(f"{ep.path}: action/qpos dims {ep.actions.shape[1]}/{ep.qpos.shape[1]} "
                             f"!= layout {layout.action_dim}/{layout.proprio_dim}")
        t = sample_starts(T, stride)
        f = np.minimum(t + H, T - 1)
        returns = episode_returns(T, terminal_reward(ep.success, ep.success_score), gamma)
        cols["row_t"].append(rows(e, t))
        cols["row_f"].append(rows(e, f))
        cols["step"].append(base + t)
        cols["future"].append(base + f)
        cols["end"].append(np.full(len(t), base + T))
        cols["value"].append(returns[f])
        cols["proprio_steps"].append(stats.normalize_proprio(ep.qpos))
        cols["action_steps"].append(stats.normalize_actions(ep.actions))
        base += T
    out = {k: np.concatenate(v) for k, v in cols.items()}
    for k in ("row_t", "row_f", "step", "future", "end"):
        out[k] = out[k].astype(np.int64)
    for k in ("value",) + STEP_KEYS:
        out[k] = out[k].astype(np.float32)
    return SampleTable(**out, chunk_len=H)


class LatentSampleSet:
    """Assembles batches of latent sequences from cached camera latents + the sample table.

    Picklable for DataLoader workers: the table is a few small arrays and a LatentReader maps its files
    lazily in each process. Latents are stored raw; `shift`/`scale` (per channel) bring them to the
    dataset-normalised scale the model config's VAE statistics describe, and `camera_norm` ((mean, std) per
    camera and position, model/camera_norm.py; None: off) to the scale the model's encode_video gives.
    """

    def __init__(self, layout: LatentLayout, table: SampleTable, latents: LatentReader | InMemoryLatents,
                 shift: torch.Tensor | None = None, scale: torch.Tensor | None = None,
                 camera_norm: tuple[torch.Tensor, torch.Tensor] | None = None):
        C = latents.blank.shape[0]
        self.layout = layout
        self.table = table
        self.latents = latents
        self.shift = torch.zeros(C) if shift is None else torch.as_tensor(shift, dtype=torch.float32)
        self.scale = torch.ones(C) if scale is None else torch.as_tensor(scale, dtype=torch.float32)
        self.blank = (latents.blank - self.shift[:, None, None]) / self.scale[:, None, None]
        self.camera_norm = camera_norm

    def __len__(self) -> int:
        return len(self.table)

    @property
    def num_aug_copies(self) -> int:
        """Augmented copies per frame in the cache (1: augmentation off); pass `aug_copy` to pick them."""
        return self.latents.num_copies

    def camera_latents(self, rows: np.ndarray, aug_copy: np.ndarray | None = None) -> torch.Tensor:
        """(n, cameras, C, h, w) normalised latents of latent rows (copy 0 unless given)."""
        rows = np.asarray(rows, np.int64)
        copies = np.zeros(len(rows), np.int64) if aug_copy is None else np.asarray(aug_copy, np.int64)
        if len(copies) and (copies.min() < 0 or copies.max() >= self.num_aug_copies):
            raise ValueError(f"aug_copy must be in [0, {self.num_aug_copies}), got {copies.min()}..{copies.max()}")
        z = self.latents.read(rows, copies)
        z = (z - self.shift[None, None, :, None, None]) / self.scale[None, None, :, None, None]
        if self.camera_norm is not None:
            mean, std = self.camera_norm
            z = (z - mean) / std
        return z

    def kinds_for(self, batch: int, mix: Sequence[float]) -> torch.Tensor:
        n_pol = int(round(batch * mix[0]))
        n_world = int(round(batch * mix[1]))
        n_val = batch - n_pol - n_world
        return torch.tensor([0] * n_pol + [1] * n_world + [2] * n_val)

    def batch(self, index: np.ndarray, kinds: torch.Tensor, value_query: str = "v_sas",
              aug_copy: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (x0 (B,C,T,h,w), condition mask (B,T)) for sample indices and kinds (0 policy, 1 world, 2 value).

        aug_copy: per sample, which augmented copy its current and future frames come from (same copy for
        both, so they share the augmentation); None = copy 0. value_query "v_sprime" (planning model): value
        samples see only the blank frame and the future state, V(s'); the current state and action frames
        are noised like generated ones.
        """
        lay, tab = self.layout, self.table
        index = np.asarray(index, np.int64)
        B = len(index)
        C, h, w = self.blank.shape
        cams = self.camera_latents(np.concatenate([tab.row_t[index], tab.row_f[index]]),
                                   None if aug_copy is None else np.concatenate([aug_copy, aug_copy]))
        cur, fut = cams[:B], cams[B:]
        x0 = torch.zeros(B, C, lay.num_frames, h, w)
        x0[:, :, lay.blank] = self.blank
        for k, cam in enumerate(lay.cameras):
            x0[:, :, lay.camera(cam)] = cur[:, k]
            x0[:, :, lay.future_camera(cam)] = fut[:, k]
        x0 = L.inject_state(x0, lay, proprio=torch.from_numpy(tab.proprio_steps[tab.step[index]]),
                            actions=torch.from_numpy(tab.action_chunks(index)),
                            future_proprio=torch.from_numpy(tab.proprio_steps[tab.future[index]]),
                            value=torch.from_numpy(tab.value[index]))
        kinds_q = KINDS if value_query == "v_sas" else (Query.POLICY, Query.WORLD, Query.VALUE_SPRIME)
        masks = torch.stack([L.condition_mask(lay, q)[0] for q in kinds_q])
        return x0, masks[kinds]

    def loss_mask(self, kinds: torch.Tensor, value_query: str = "v_sas") -> torch.Tensor | None:
        """(B,T) frames that carry loss, or None (all). V(s') samples learn only the value frame (upstream
        planning run): their noised current-state/action frames are inputs, not targets."""
        if value_query == "v_sas" or not bool((kinds == 2).any()):
            return None
        m = torch.ones(len(kinds), self.layout.num_frames)
        m[kinds == 2] = 0.0
        m[kinds == 2, self.layout.value] = 1.0
        return m
