"""VAE latents of the current-observation prefix, the unit the training cache stores per (episode, step).

The VAE is frozen during DiT training, and Wan2.1's encoder is causal in time, so the latents of
the prefix [blank, proprio slot, camera 1..K] are exactly what the inference engine computes for
those frames. Encoding once (instead of every batch) is what makes training affordable; the cache itself
lives in latent_store.py. Future-camera targets reuse the prefix latents of step f: a self-consistent
target, slightly different from encoding the full 1+4(T'-1)-frame sequence (the causal context of the
future slot differs); the policy's conditioning frames are exact.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from cosmos_policy_ros.model.layout import LatentLayout
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel


def prefix_video(images: dict[str, np.ndarray | torch.Tensor], layout: LatentLayout) -> torch.Tensor:
    """uint8 (N,H,W,3) per camera -> uint8 (N,3,1+4(1+K),H,W): blank, blank proprio slot, cameras x4.

    Tensors stay on their device (the encoder's, when it augments there).
    """
    cams = layout.cameras
    imgs = [torch.as_tensor(np.ascontiguousarray(images[c]) if isinstance(images[c], np.ndarray) else images[c])
            for c in cams]
    N, H, W, _ = imgs[0].shape
    video = torch.zeros(N, 3, 1 + 4 * (1 + len(cams)), H, W, dtype=torch.uint8, device=imgs[0].device)
    for k, (cam, img) in enumerate(zip(cams, imgs)):
        if img.shape[1:3] != (H, W):
            raise ValueError(f"camera {cam!r} images are {tuple(img.shape[1:3])}, expected {(H, W)}")
        start = 1 + 4 * (1 + k)
        video[:, :, start:start + 4] = img.permute(0, 3, 1, 2)[:, :, None]
    return video


@torch.no_grad()
def encode_prefixes(model: CosmosPolicyModel, images: dict[str, np.ndarray], batch: int = 32,
                    progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """In memory, frames already at the model size -> (camera latents (N, K, C, h, w) float32, blank (C, h, w))."""
    lay = model.layout
    N = len(images[lay.cameras[0]])
    out, blank = [], None
    for s in tqdm(range(0, N, batch), desc="encode", disable=not progress, leave=False):
        sub = {c: images[c][s:s + batch] for c in lay.cameras}
        z = model.encode_video(prefix_video(sub, lay)).cpu()  # (n, C, 2+K, h, w)
        out.append(z[:, :, 2:].permute(0, 2, 1, 3, 4).contiguous())
        if blank is None:
            blank = z[0, :, 0].clone()
    return torch.cat(out), blank
