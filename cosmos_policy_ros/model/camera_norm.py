"""Per-position normalisation of camera latents: what changes between images, at unit scale.

The VAE's per-channel statistics (`vae.latent_mean/std`, upstream's) bring latents to unit scale over all
positions. A camera that looks at a fixed scene then yields latents dominated by the scene's fixed spatial
pattern: with the sim's frozen random VAE the values that move with the arms and the cube vary by ~0.02 of
that unit scale (median over positions; the cube's effect on the first frame at most ~0.09), and the DiT
learns to ignore them (docs/training.md "The policy ignored its cameras"). Subtracting each camera's mean
latent per (channel, row, column) and dividing by its per-position standard deviation over the training
frames (floored, so that static background is not blown up to noise) gives the DiT those changes at unit
scale. The same map applies to a camera's current and future latent frames (a world model predicts in the
same space) and is undone before decoding. Statistics come from the training latents (`train.prepare`) and
travel in the model config (`camera_latent_mean` / `camera_latent_std`, cameras x C x h x w, flattened);
empty tuples: off, latents as the VAE gives them.
"""
from __future__ import annotations

import torch

from .config import ModelConfig
from .layout import LatentLayout


def camera_norm_maps(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, std), each (cameras, C, h, w) float32, or None when the config has no camera normalisation."""
    if not cfg.camera_latent_mean:
        return None
    s = cfg.latent_side
    shape = (len(cfg.layout.cameras), cfg.vae.z_dim, s, s)
    # on the CPU even inside a torch.device("meta") block (model construction); _apply moves them to the latents
    return (torch.tensor(cfg.camera_latent_mean, dtype=torch.float32, device="cpu").reshape(shape),
            torch.tensor(cfg.camera_latent_std, dtype=torch.float32, device="cpu").reshape(shape))


def _frames(layout: LatentLayout) -> list[tuple[int, int]]:
    """(latent frame, camera index) for every current and future camera frame."""
    return ([(f, k) for k, f in enumerate(layout.camera_frames)]
            + [(f, k) for k, f in enumerate(layout.future_camera_frames)])


def _apply(z: torch.Tensor, layout: LatentLayout, maps, fn) -> torch.Tensor:
    """A copy of z with fn(frame, mean, std) applied to every camera frame it holds; maps None: z itself."""
    if maps is None:
        return z
    mean, std = (m.to(z.device, z.dtype) for m in maps)
    out = z.clone()
    for f, k in _frames(layout):
        if f < z.shape[2]:
            out[:, :, f] = fn(z[:, :, f], mean[k], std[k])
    return out


def normalize_cameras(z: torch.Tensor, layout: LatentLayout, maps) -> torch.Tensor:
    """Latent sequence (B,C,T,h,w) -> the same with camera frames position-normalised (a copy; maps None: z)."""
    return _apply(z, layout, maps, lambda x, m, s: (x - m) / s)


def denormalize_cameras(z: torch.Tensor, layout: LatentLayout, maps) -> torch.Tensor:
    """Inverse of normalize_cameras (before the VAE decodes)."""
    return _apply(z, layout, maps, lambda x, m, s: x * s + m)

