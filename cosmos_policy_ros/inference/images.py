"""Camera image preprocessing to the model's square input (spec section 5, step 3).

Upstream: raw -> 256 (bicubic) -> 224 (bicubic) -> centre crop int(224*sqrt(0.9)) = 212 -> 224
(bilinear, antialias) for models trained with crop augmentation. We resize once with torch's
antialiased bicubic (no PIL dependency) and then apply the same crop-and-resize; the small
resampling difference is documented in docs/model.md.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def preprocess_image(img, size: int, center_crop: bool = True, crop_scale: float = 0.9) -> torch.Tensor:
    """HxWx3 uint8 (numpy or tensor) -> size x size x 3 uint8 tensor."""
    x = torch.as_tensor(np.asarray(img))
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 image, got {x.dtype}")
    x = x.permute(2, 0, 1)[None].float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        x = x.clamp(0, 255).round()
    if center_crop:
        c = int(size * math.sqrt(crop_scale))
        top = int(round((size - c) / 2.0))
        x = x[:, :, top:top + c, top:top + c]
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp(0, 255).round()
    return x[0].permute(1, 2, 0).to(torch.uint8)
