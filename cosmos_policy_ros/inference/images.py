"""Camera image preprocessing to the model's square input (spec section 5, step 3; section 9.2).

Upstream: raw -> 256 (PIL bicubic) -> 224 (PIL bicubic) -> centre crop int(224*sqrt(0.9)) = 212 -> 224
(bilinear, antialias) for models trained with crop augmentation. `Preprocessing.resize` picks that PIL path
(``pil_256_224``, the released checkpoint) or one antialiased torch bicubic resize (``torch``, what our
trainer's bundles saw); the crop is the same in both. A camera's configured workspace crop
(`Preprocessing.crop`) is cut from the raw frame first, so the resize sees only the workspace.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .preprocessing import UPSTREAM, Crop, Preprocessing, crop_pixels

# Upstream's ALOHA data and client store frames at this size before the model's (aloha_utils.py:53-80).
ALOHA_STORE_SIZE = 256


def pil_resize_256(img: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 -> 256x256 -> size x size, each step PIL bicubic, as upstream's ALOHA client.

    PIL returns a copy for a resize to the image's own size, so a 256 or a `size` frame skips that step,
    as it does upstream.
    """
    out = Image.fromarray(img).resize((ALOHA_STORE_SIZE, ALOHA_STORE_SIZE), resample=Image.BICUBIC)
    return np.array(out.resize((size, size), resample=Image.BICUBIC))


def crop_frame(arr: np.ndarray, crop: Crop | None) -> np.ndarray:
    """HxWx3 -> the crop's pixel box (inference/preprocessing.py crop_pixels), a view; the frame when None."""
    if crop is None:
        return arr
    left, top, right, bottom = crop_pixels(crop, arr.shape[1], arr.shape[0])
    return arr[top:bottom, left:right]


def preprocess_image(img, size: int, prep: Preprocessing = UPSTREAM, crop_scale: float = 0.9,
                     camera: str | None = None) -> torch.Tensor:
    """HxWx3 uint8 (numpy or tensor) of `camera` -> size x size x 3 uint8 tensor (its crop first, if any)."""
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    arr = crop_frame(arr, prep.crop_of(camera))
    if prep.resize == "pil_256_224":
        arr = pil_resize_256(np.ascontiguousarray(arr), size)
    arr = np.ascontiguousarray(arr)
    x = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(2, 0, 1)[None].float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        x = x.clamp(0, 255).round()
    if prep.center_crop:
        c = int(size * math.sqrt(crop_scale))
        top = int(round((size - c) / 2.0))
        x = x[:, :, top:top + c, top:top + c]
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = x.clamp(0, 255).round()
    return x[0].permute(1, 2, 0).to(torch.uint8)
