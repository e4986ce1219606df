"""Training samples over HDF5 demos: policy / world-model / value sequences with their masks and targets.

One sample = the full latent sequence x0 of the layout with every vector written in (current proprio,
action chunk, future proprio, value; spec 10.2): x0 is both the clean input of the conditioning
frames and the regression target. What differs between the three sample kinds is only the condition
mask (policy: blank/proprio/cameras given; world model: + action; value: all but the value frame).
Batches hold the kinds in fixed proportions (50/25/25 upstream) so every step trains all three.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from cosmos_policy_ros.data.aloha_hdf5 import EpisodeData
from cosmos_policy_ros.inference.normalization import DatasetStats
from cosmos_policy_ros.model import layout as L
from cosmos_policy_ros.model.layout import LatentLayout, Query

from .value_targets import episode_returns, terminal_reward

KINDS = (Query.POLICY, Query.WORLD, Query.VALUE)


@dataclass
class SampleTable:
    """Per-sample vectors (normalised) and rows into the camera-latent table."""

    row_t: np.ndarray        # (N,) row of the current camera latents
    row_f: np.ndarray        # (N,) row of the future camera latents
    proprio: np.ndarray      # (N, P)
    future_proprio: np.ndarray  # (N, P)
    actions: np.ndarray      # (N, chunk, A)
    value: np.ndarray        # (N,) in [-1, 1]

    def __len__(self) -> int:
        return len(self.row_t)

    def as_tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in
                ("row_t", "row_f", "proprio", "future_proprio", "actions", "value")}

    @classmethod
    def from_tensors(cls, d: dict[str, torch.Tensor]) -> "SampleTable":
        return cls(**{k: d[k].numpy() for k in ("row_t", "row_f", "proprio", "future_proprio", "actions", "value")})


def plan_samples(episodes: Sequence[EpisodeData], layout: LatentLayout, stats: DatasetStats, stride: int,
                 gamma: float) -> tuple[SampleTable, list[tuple[int, int]]]:
    """Sample starts every `stride` steps; returns the table and the (episode, step) frames to encode."""
    frames: dict[tuple[int, int], int] = {}

    def row(e: int, t: int) -> int:
        return frames.setdefault((e, t), len(frames))

    rt, rf, pr, fp, ac, va = [], [], [], [], [], []
    H = layout.chunk_len
    for e, ep in enumerate(episodes):
        T = len(ep)
        if ep.actions.shape[1] != layout.action_dim or ep.qpos.shape[1] != layout.proprio_dim:
            raise ValueError(f"{ep.path}: action/qpos dims {ep.actions.shape[1]}/{ep.qpos.shape[1]} "
                             f"!= layout {layout.action_dim}/{layout.proprio_dim}")
        returns = episode_returns(T, terminal_reward(ep.success, ep.success_score), gamma)
        for t in range(0, T, stride):
            f = min(t + H, T - 1)
            chunk = ep.actions[t:t + H]
            if len(chunk) < H:  # pad by repeating the last action (upstream)
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], H - len(chunk), axis=0)])
            rt.append(row(e, t))
            rf.append(row(e, f))
            pr.append(stats.normalize_proprio(ep.qpos[t]))
            fp.append(stats.normalize_proprio(ep.qpos[f]))
            ac.append(stats.normalize_actions(chunk))
            va.append(returns[f])
    table = SampleTable(np.array(rt), np.array(rf), np.stack(pr), np.stack(fp), np.stack(ac).astype(np.float32),
                        np.array(va, np.float32))
    order = sorted(frames, key=frames.get)
    return table, order


class LatentSampleSet:
    """Assembles batches of latent sequences from cached camera latents + the sample table."""

    def __init__(self, layout: LatentLayout, table: SampleTable, cam_latents: torch.Tensor, blank: torch.Tensor):
        if cam_latents.shape[1] != layout.num_cameras:
            raise ValueError(f"camera latents hold {cam_latents.shape[1]} cameras, layout needs {layout.num_cameras}")
        self.layout = layout
        self.table = table
        self.t = table.as_tensors()
        self.cam = cam_latents
        self.blank = blank

    def __len__(self) -> int:
        return len(self.table)

    def kinds_for(self, batch: int, mix: Sequence[float]) -> torch.Tensor:
        n_pol = int(round(batch * mix[0]))
        n_world = int(round(batch * mix[1]))
        n_val = batch - n_pol - n_world
        return torch.tensor([0] * n_pol + [1] * n_world + [2] * n_val)

    def batch(self, index: np.ndarray, kinds: torch.Tensor, value_query: str = "v_sas"
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (x0 (B,C,T,h,w), condition mask (B,T)) for sample indices and kinds (0 policy, 1 world, 2 value).

        value_query "v_sprime" (planning model): value samples see only the blank frame and the future
        state, V(s'); the current state and action frames are noised like generated ones.
        """
        lay = self.layout
        idx = torch.as_tensor(index, dtype=torch.long)
        B = len(idx)
        C, h, w = self.blank.shape
        x0 = torch.zeros(B, C, lay.num_frames, h, w)
        x0[:, :, lay.blank] = self.blank
        cur = self.cam[self.t["row_t"][idx]]
        fut = self.cam[self.t["row_f"][idx]]
        for k, cam in enumerate(lay.cameras):
            x0[:, :, lay.camera(cam)] = cur[:, k]
            x0[:, :, lay.future_camera(cam)] = fut[:, k]
        x0 = L.inject_state(x0, lay, proprio=self.t["proprio"][idx], actions=self.t["actions"][idx],
                            future_proprio=self.t["future_proprio"][idx], value=self.t["value"][idx])
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
