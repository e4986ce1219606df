"""Training-time image augmentation as upstream applies it, with parameters fixed per (seed, episode, copy).

Upstream (spec 10.5; cosmos_policy/datasets/dataset_utils.py apply_image_aug, "stronger" aug) draws one set of
parameters per sample and applies it to every frame of that sample, in this order:

    random resized crop, scale (0.9, 0.9), ratio 1 (213 px at 224) -> back to size, bilinear antialias
    rotation U[-5, 5] deg (nearest, no expand, black fill)
    brightness U[0.7, 1.3] -> contrast U[0.6, 1.4] -> saturation U[0.5, 1.5] -> hue U[-0.05, 0.05]

Each colour op rounds back to uint8 by truncation, as torchvision's uint8 tensor ops do. Why seeded per
(seed, episode, copy) instead of per sample: latents are encoded once, so the cache holds K augmented copies
of every frame; all frames of one episode copy share its parameters, hence the current and the future frames
of a sample that read the same copy index share them, as upstream's per-sample draw does. A black frame
(the blank and proprio slots) stays black through every op. Written with torch only (no torchvision here).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

CROP_SCALE = 0.9                         # area fraction of the random square crop (upstream)
ANGLE_DEG = (-5.0, 5.0)
BRIGHTNESS = (0.7, 1.3)
CONTRAST = (0.6, 1.4)
SATURATION = (0.5, 1.5)
HUE = (-0.05, 0.05)


def ranges() -> dict:
    """The sampling ranges, as recorded in the latent cache's manifest (a change re-makes the cache)."""
    return {"crop_scale": CROP_SCALE, "angle_deg": ANGLE_DEG, "brightness": BRIGHTNESS, "contrast": CONTRAST,
            "saturation": SATURATION, "hue": HUE}


@dataclass(frozen=True)
class AugmentParams:
    top: int            # crop window, pixels
    left: int
    crop: int
    angle: float        # degrees, counter-clockwise
    brightness: float
    contrast: float
    saturation: float
    hue: float

    def as_dict(self) -> dict:
        return asdict(self)


def episode_seed(key: str) -> int:
    """A stable 63-bit integer for an episode's key (its path), independent of Python's hash seed."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def draw_params(size: int, seed: int, episode: str, copy: int) -> AugmentParams:
    """The parameters of augmented copy `copy` of episode `episode` (deterministic)."""
    rng = np.random.default_rng([int(seed), episode_seed(episode), int(copy)])
    crop = int(round(math.sqrt(size * size * CROP_SCALE)))   # RandomResizedCrop.get_params with ratio 1
    top, left = (int(v) for v in rng.integers(0, size - crop + 1, 2))
    u = rng.uniform
    return AugmentParams(top=top, left=left, crop=crop, angle=float(u(*ANGLE_DEG)),
                         brightness=float(u(*BRIGHTNESS)), contrast=float(u(*CONTRAST)),
                         saturation=float(u(*SATURATION)), hue=float(u(*HUE)))


def augment(images: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """uint8 (N,H,W,3) square frames -> the same, augmented with `p` (on the frames' device)."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != images.shape[2]:
        raise ValueError(f"expected uint8 (N,S,S,3) frames, got {tuple(images.shape)} {images.dtype}")
    size = images.shape[1]
    x = images.permute(0, 3, 1, 2).float()
    x = x[:, :, p.top:p.top + p.crop, p.left:p.left + p.crop]
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.round().clamp(0, 255)
    x = _rotate(x, p.angle)
    x = _blend(x, torch.zeros_like(x), p.brightness)
    x = _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), p.contrast)
    x = _blend(x, _gray(x).floor(), p.saturation)
    x = _adjust_hue(x, p.hue)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: float) -> torch.Tensor:
    """torchvision's _blend on uint8 values: clamp, then truncate."""
    return (ratio * a + (1.0 - ratio) * b).clamp(0, 255).floor()


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) -> (N,1,H,W) luma (ITU-R 601-2 weights, as torchvision)."""
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def _rotate(x: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate about the centre, counter-clockwise for angle > 0, nearest, black outside (torchvision rotate)."""
    if angle == 0.0:
        return x
    t = math.radians(-angle)   # torchvision builds the inverse map from -angle
    theta = torch.tensor([[math.cos(t), math.sin(t), 0.0], [-math.sin(t), math.cos(t), 0.0]],
                         dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _adjust_hue(x: torch.Tensor, hue: float) -> torch.Tensor:
    """Shift hue by `hue` turns in HSV space; back to uint8 values by truncation."""
    if hue == 0.0:
        return x
    h, s, v = _rgb_to_hsv(x / 255.0)
    return (_hsv_to_rgb((h + hue) % 1.0, s, v) * 255.0).floor()


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    s = delta / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    d = torch.where(delta == 0, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta == 0, torch.zeros_like(h), (h / 6.0) % 1.0)
    return h, s, maxc


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = torch.stack([torch.stack(c, dim=1) for c in
                         ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])  # (6,N,3,H,W)
    idx = i[None, :, None].expand(1, *i.shape[:1], 3, *i.shape[1:])
    return table.gather(0, idx)[0]
