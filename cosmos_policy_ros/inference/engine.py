"""PolicyEngine: observation -> action chunk, predicted future (proprio, images) and value.

Thin, stateless orchestration over `CosmosPolicyModel`: preprocess images, normalise proprio,
encode the latent sequence once, then run policy / world-model / value queries as batched sampler
calls. The planner (inference/planning.py) calls the same query methods with many seeds at once.

Observation format: {"images": {camera: HxWx3 uint8}, "proprio": (14,) floats, "instruction": str}.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..model import layout as L
from ..model.config import ModelConfig
from ..model.layout import Query
from ..model.policy_model import CosmosPolicyModel
from ..model.text import T5EmbeddingStore
from .chunk_smoothing import smooth_chunk
from .images import preprocess_image
from .normalization import DatasetStats
from .preprocessing import UPSTREAM, Preprocessing


@dataclass
class PreparedState:
    """Encoded current observation(s): reused by every query of one control step."""

    given: torch.Tensor        # (B,C,T,h,w) latents with current proprio written into its frame
    clean: torch.Tensor        # (B,C,T,h,w) latents as encoded (for image decoding)
    context: torch.Tensor      # (B,L,D) T5 embeddings
    proprio_norm: torch.Tensor  # (B, proprio_dim)

    def select(self, index: Sequence[int]) -> "PreparedState":
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return PreparedState(self.given[idx], self.clean[idx], self.context[idx], self.proprio_norm[idx])


@dataclass
class PolicyOutput:
    actions: np.ndarray                 # (chunk_len, action_dim), robot units
    actions_norm: np.ndarray            # same in [-1, 1]
    future_proprio: np.ndarray          # (proprio_dim,), robot units (predicted state at chunk end)
    value: float                        # V(s, a, s') in [0, 1] from the same sample
    seed: int
    future_images: dict[str, np.ndarray] | None = None
    latent: torch.Tensor | None = None  # (1,C,T,h,w) generated sequence
    timings: dict[str, float] = field(default_factory=dict)


class PolicyEngine:
    def __init__(self, model: CosmosPolicyModel, stats: DatasetStats, text: T5EmbeddingStore,
                 planning_model: CosmosPolicyModel | None = None, max_batch: int | None = None,
                 preprocessing: Preprocessing = UPSTREAM):
        self.model = model
        self.planning_model = planning_model or model
        self.stats = stats
        self.text = text
        self.max_batch = max_batch
        self.preprocessing = preprocessing
        self.cfg: ModelConfig = model.cfg
        self.layout = model.layout
        if self.planning_model.layout != self.layout:
            raise ValueError("policy and planning models must share the latent layout")
        # instruction -> (L, D) embedding on the model's device in its dtype: moved once, not every chunk
        self._contexts: dict[str, torch.Tensor] = {}

    @classmethod
    def from_files(cls, config: ModelConfig, checkpoint: Path, stats: Mapping, t5_embeddings: Path, *,
                   vae_checkpoint: Path | None = None, planning_checkpoint: Path | None = None,
                   device: str | None = None, dtype: torch.dtype | None = None, ema: bool = False,
                   max_batch: int | None = None, preprocessing: Preprocessing = UPSTREAM,
                   stats_method: str = "min_max", stats_source: str = "<dict>") -> "PolicyEngine":
        """Build from a loaded config and statistics plus the weight files (DiT [+ VAE], T5 embeddings).

        The config and statistics arrive already parsed (deploy.bundle.resolve_bundle reads them once,
        wherever they came from); only the large files are read here. stats_source names where the
        statistics came from in errors. vae_checkpoint: the Wan2.1 tokenizer file when the DiT file has
        no vae.* keys (the released checkpoint); the planning model shares it.
        """
        model = CosmosPolicyModel.build(config, device, dtype, seed=None)
        model.load_checkpoints(checkpoint, vae_checkpoint, ema=ema)
        planner = None
        if planning_checkpoint is not None:
            planner = CosmosPolicyModel.build(config, device, dtype, seed=None)
            planner.load_checkpoints(planning_checkpoint, vae_checkpoint or checkpoint, ema=ema)
        st = DatasetStats.from_dict(stats, stats_method, config.layout.action_dim, stats_source)
        return cls(model, st, T5EmbeddingStore.load(t5_embeddings), planner, max_batch, preprocessing)

    def synchronize(self) -> None:
        """Wait for the model's device (CUDA runs asynchronously): stage timings then measure the stage."""
        if self.model.device.type == "cuda":
            torch.cuda.synchronize(self.model.device)

    def context(self, instructions: Sequence[str]) -> torch.Tensor:
        """(B, L, D) T5 context on the model's device and in its dtype, from a per-instruction cache."""
        for s in instructions:
            if s not in self._contexts:
                self._contexts[s] = self.text.get(s).to(self.model.device, self.model.dtype)
        return torch.stack([self._contexts[s] for s in instructions])

    def _proprio_in_model_dtype(self, p_norm: torch.Tensor) -> torch.Tensor:
        """Normalised proprio as injected: rounded to the model's dtype first (upstream: bf16) unless the
        checkpoint was trained with float32 vectors."""
        if self.preprocessing.proprio_dtype == "model":
            return p_norm.to(self.model.dtype).float()
        return p_norm

    # ------------------------------------------------------------------ observation -> latents

    def prepare(self, obs: Mapping | Sequence[Mapping]) -> PreparedState:
        """Preprocess, normalise and VAE-encode one observation or a list of them."""
        obs_list = [obs] if isinstance(obs, Mapping) else list(obs)
        lay, size = self.layout, self.cfg.layout.image_size
        images = {}
        for cam in lay.cameras:
            try:
                images[cam] = torch.stack([preprocess_image(o["images"][cam], size, self.preprocessing,
                                                            camera=cam)
                                           for o in obs_list])
            except KeyError:
                raise KeyError(f"observation lacks image {cam!r} (model cameras: {list(lay.cameras)})") from None
        proprio = np.stack([np.asarray(o["proprio"], dtype=np.float64).reshape(-1) for o in obs_list])
        if proprio.shape[1] != lay.proprio_dim:
            raise ValueError(f"proprio has {proprio.shape[1]} entries, model expects {lay.proprio_dim}")
        p_norm = self._proprio_in_model_dtype(torch.from_numpy(self.stats.normalize_proprio(proprio)))
        context = self.context([o["instruction"] for o in obs_list])
        frame_dtype = self.model.vae.dtype if self.preprocessing.frame_dtype == "model" else torch.float32
        clean = self.model.encode_video(L.build_pixel_sequence(images, lay), frame_dtype)
        given = L.inject(clean, lay.proprio, p_norm.to(clean.device))
        return PreparedState(given, clean, context, p_norm)

    # ------------------------------------------------------------------ queries

    def _expand(self, t: torch.Tensor, n: int) -> torch.Tensor:
        return t.expand(n, *t.shape[1:]) if t.shape[0] == 1 else t

    def sample_actions(self, state: PreparedState, seeds: Sequence[int], steps: int | Sequence[int] | None = None,
                       query: Query = Query.POLICY) -> torch.Tensor:
        """Policy query: one generated latent sequence per seed (state of batch 1 is shared)."""
        n = len(seeds)
        steps = self.cfg.sampler.action_steps if steps is None else steps
        mask = L.condition_mask(self.layout, query, n)
        return self.model.generate(self._expand(state.given, n), mask, self._expand(state.context, n),
                                   seeds, steps, self.max_batch)

    def predict_future(self, state: PreparedState, seeds: Sequence[int], steps: int | Sequence[int] | None = None,
                       action_latents: torch.Tensor | None = None, actions_norm: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """World-model query: frames up to the action frame given, future state and value generated.

        Give either `action_latents` (B,C,T,h,w) from a policy sample (upstream planning feeds the
        generated action latent) or normalised `actions_norm` (B, chunk, dim) written into the frame.
        """
        n = len(seeds)
        steps = self.cfg.sampler.world_steps if steps is None else steps
        lay = self.layout
        given = self._expand(state.given, n).clone()
        if action_latents is not None:
            given[:, :, : lay.action + 1] = self._expand(action_latents, n)[:, :, : lay.action + 1].to(given.device)
            given = L.inject(given, lay.proprio, self._expand(state.proprio_norm, n).to(given.device))
        elif actions_norm is not None:
            a = torch.as_tensor(actions_norm, dtype=torch.float32).to(given.device)
            given = L.inject(given, lay.action, self._expand(a.reshape(a.shape[0], -1), n))
        else:
            raise ValueError("predict_future needs action_latents or actions_norm")
        mask = L.condition_mask(lay, Query.WORLD, n)
        return self.planning_model.generate(given, mask, self._expand(state.context, n), seeds, steps, self.max_batch)

    def predict_value(self, latents: torch.Tensor, context: torch.Tensor, seeds: Sequence[int],
                      steps: int | Sequence[int] | None = None, mode: str = "v_sprime") -> np.ndarray:
        """Value query on given sequences -> values in [0, 1], shape (B,).

        mode "v_sprime": V(s') - only blank + predicted future state given (planning model).
             "v_sas":    V(s,a,s') - every frame but the value given.
             "q":        Q(s,a) - current state and action given, future state masked.
        """
        query = {"v_sprime": Query.VALUE_SPRIME, "v_sas": Query.VALUE, "q": Query.Q_VALUE}[mode]
        n = len(seeds)
        steps = self.cfg.sampler.value_steps if steps is None else steps
        mask = L.condition_mask(self.layout, query, n)
        out = self.planning_model.generate(self._expand(latents, n), mask, self._expand(context, n),
                                           seeds, steps, self.max_batch)
        return L.read_value(out, self.layout).cpu().numpy()

    # ------------------------------------------------------------------ read-outs

    def actions_from(self, latents: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(B,chunk,dim) robot-unit actions and their normalised values (smoothed over time when the sampler's
        action_smoothing window is > 1)."""
        a_norm = smooth_chunk(L.read_actions(latents, self.layout).cpu().numpy(), self.cfg.sampler.action_smoothing)
        return self.stats.unnormalize_actions(a_norm), a_norm

    def future_proprio_from(self, latents: torch.Tensor) -> np.ndarray:
        return self.stats.unnormalize_proprio(L.read_proprio(latents, self.layout).cpu().numpy())

    def decode_future_images(self, latents: torch.Tensor, clean: torch.Tensor) -> dict[str, np.ndarray]:
        """uint8 (B,H,W,3) per camera; vector frames are swapped back to encoded latents first."""
        lay = self.layout
        z = latents.clone()
        for f in lay.vector_frames:
            z[:, :, f] = self._expand(clean, z.shape[0])[:, :, f].to(z.device)
        frames = self.model.decode_frames(z, lay.future_camera_frames)
        return {cam: frames[lay.future_camera(cam)].cpu().numpy() for cam in lay.cameras}

    # ------------------------------------------------------------------ one-call policy

    def act(self, obs: Mapping, seed: int = 0, steps: int | None = None,
            decode_images: bool = False) -> PolicyOutput:
        """Observation -> action chunk (+ predicted future proprio, value and optionally images)."""
        t0 = time.perf_counter()
        state = self.prepare(obs)
        self.synchronize()
        t1 = time.perf_counter()
        latent = self.sample_actions(state, [seed], steps)
        self.synchronize()
        t2 = time.perf_counter()
        actions, a_norm = self.actions_from(latent)
        out = PolicyOutput(actions=actions[0], actions_norm=a_norm[0],
                           future_proprio=self.future_proprio_from(latent)[0],
                           value=float(L.read_value(latent, self.layout)[0]), seed=seed, latent=latent,
                           timings={"encode_s": t1 - t0, "sample_s": t2 - t1})
        if decode_images:
            imgs = self.decode_future_images(latent, state.clean)
            out.future_images = {k: v[0] for k, v in imgs.items()}
            out.timings["decode_s"] = time.perf_counter() - t2
        return out
