"""Cosmos Policy model = Wan2.1 VAE + DiT + latent layout + sampler, no robot specifics.

Works on latents and uint8 video; normalised vectors go in and out through `layout`. The inference
engine and a training loop both build on this class.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from . import checkpoint as ckpt
from .camera_norm import camera_norm_maps, denormalize_cameras, normalize_cameras
from .config import ModelConfig, load_model_config
from .dit import CosmosDiT
from .layout import LatentLayout
from .precondition import denoise
from .sampler import initial_noise, sample
from .vae import WanVAE


def default_device_dtype(device: str | torch.device | None = None) -> tuple[torch.device, torch.dtype]:
    """fp32 on CPU, bf16 on CUDA (as upstream runs the released model)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return device, (torch.bfloat16 if device.type == "cuda" else torch.float32)


def normalize_frames(video: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels -> [-1, 1] as `x.to(dtype) / 127.5 - 1`, each step rounded to `dtype`.

    Upstream computes this in bf16 on the GPU (text2world_model.py:770): pixel 128 becomes 0.0078125 there,
    0.0039216 in float32.
    """
    return video.to(dtype) / 127.5 - 1.0


class CosmosPolicyModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.net = CosmosDiT(cfg.dit)
        self.vae = WanVAE(cfg.vae)
        self.layout = LatentLayout.from_config(cfg.layout)
        # None: run in the weights' dtype (bf16 weights on CUDA, as upstream). torch.bfloat16 with float32
        # weights: torch.autocast (matmuls and attention in bf16, norms and softmax kept in float32).
        self.autocast_dtype: torch.dtype | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, cfg: ModelConfig | str | Path, device=None, dtype: torch.dtype | None = None,
              seed: int | None = 0) -> "CosmosPolicyModel":
        """Build on the meta device, materialise on `device`, random-init (seed) or leave empty (None)."""
        if not isinstance(cfg, ModelConfig):
            cfg = load_model_config(cfg)
        dev, dt = default_device_dtype(device)
        dtype = dtype or dt
        with torch.device("meta"):
            model = cls(cfg)
        model = model.to_empty(device=dev)
        model.vae.latent_mean.copy_(torch.tensor(cfg.vae.latent_mean))
        model.vae.latent_std.copy_(torch.tensor(cfg.vae.latent_std))
        model.net.pos_embedder.reset_buffers()
        for name in ("accum_video_sample_counter", "accum_image_sample_counter", "accum_iteration",
                     "accum_train_in_hours"):
            getattr(model.net, name).zero_()
        if seed is not None:
            g = torch.Generator().manual_seed(seed)
            model.net.init_weights(generator=g)
            model.vae.init_weights(generator=g)
        return model.to(dtype).eval()

    def load_checkpoints(self, dit_path: str | Path, vae_path: str | Path | None = None,
                         ema: bool = False) -> None:
        """DiT weights from `dit_path` (`net.` keys); VAE from `vae_path` or `vae.`/`tokenizer.` keys of dit_path."""
        ckpt.load_into(self.net, dit_path, ema=ema, prefixes=("net.",))
        if vae_path is None:
            keys = ckpt.read_state_dict(dit_path).keys()
            if not any(k.startswith(("vae.", "tokenizer.")) for k in keys):
                raise ckpt.CheckpointError(
                    f"{dit_path}: no VAE weights (vae.*/tokenizer.* keys); pass the Wan2.1 tokenizer.pth as vae_path")
        ckpt.load_into(self.vae, vae_path or dit_path, prefixes=("vae.", "tokenizer."))

    def save(self, path: str | Path) -> None:
        """One file with `net.*` and `vae.*` keys (+ config as metadata for .safetensors)."""
        from .config import config_to_dict
        sd = {"net." + k: v for k, v in self.net.state_dict().items()}
        sd.update({"vae." + k: v for k, v in self.vae.state_dict().items()})
        path = Path(path)
        sd = {k: v.detach().contiguous() for k, v in sd.items()}
        if path.suffix == ".safetensors":
            import json

            from safetensors.torch import save_file
            save_file(sd, str(path), metadata={"config": json.dumps(config_to_dict(self.cfg))})
        else:
            torch.save(sd, str(path))

    @property
    def camera_norm(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The config's per-position camera statistics (None: off); derived from cfg, which a trainer may replace."""
        return camera_norm_maps(self.cfg)

    @property
    def device(self) -> torch.device:
        return self.net.t_embedding_norm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the DiT computes in: the autocast dtype if set, else its weights'."""
        return self.autocast_dtype or self.net.dtype

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                              enabled=self.autocast_dtype is not None)

    def compile_net(self, mode: str | None = None) -> None:
        """torch.compile the DiT forward in place (state-dict keys unchanged); the first calls of each new
        batch size pay the compile time."""
        self.net.compile(mode=mode, dynamic=False)

    # ------------------------------------------------------------------ pixels <-> latents

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor, frame_dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """uint8 (B,3,F,H,W) -> normalised latents (B,C,T,h,w) float32 (camera frames position-normalised when
        the config says so, model/camera_norm.py).

        `frame_dtype`: the dtype of `uint8 / 127.5 - 1` (upstream computes it in bf16 on the GPU,
        text2world_model.py:770: each step rounds to bf16). The VAE then runs in its weights' dtype.
        """
        x = normalize_frames(video.to(self.device), frame_dtype)
        with self._autocast():
            z = self.vae.encode(x)
        return normalize_cameras(z, self.layout, self.camera_norm)

    @torch.no_grad()
    def decode_frames(self, latent: torch.Tensor, frames: Sequence[int]) -> dict[int, torch.Tensor]:
        """Decode the latent sequence and return uint8 (B,H,W,3) images of the given latent frames."""
        last = max(frames)
        z = denormalize_cameras(latent[:, :, : last + 1].to(self.device).float(), self.layout, self.camera_norm)
        with self._autocast():
            video = self.vae.decode(z)
        out = {}
        for f in frames:
            pix = 0 if f == 0 else (f - 1) * 4 + 1
            img = ((video[:, :, pix] + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)
            out[f] = img.permute(0, 2, 3, 1).contiguous()
        return out

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def generate(self, given: torch.Tensor, cond_mask: torch.Tensor, context: torch.Tensor,
                 seeds: Sequence[int], steps: Sequence[int] | int, max_batch: int | None = None) -> torch.Tensor:
        """Sample latents (B,C,T,h,w) given clean frames `given` where cond_mask (B,T) is 1.

        One seed per sample; steps per sample or shared. `max_batch` caps DiT batch size.
        """
        sc = self.cfg.sampler
        B = given.shape[0]
        if len(seeds) != B:
            raise ValueError(f"{len(seeds)} seeds for a batch of {B}")
        dev = self.device
        given = given.to(dev).float()
        cond_mask = cond_mask.to(dev).float()
        context = context.to(dev)
        x_T = initial_noise(seeds, tuple(given.shape[1:]), sc.sigma_max).to(dev)
        cap = max_batch or B

        w = sc.camera_guidance
        if w > 0:  # the given frames with the current cameras at the training mean scene
            mean_scene = given.clone()
            mean_scene[:, :, [self.layout.camera(c) for c in self.layout.cameras]] = 0.0

        def x0_fn(x: torch.Tensor, sigma: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            idx = idx.to(dev)
            parts = []
            for s in range(0, len(idx), cap):
                j = idx[s:s + cap]
                xs, ss = x[s:s + cap], sigma[s:s + cap].to(dev)
                x0 = denoise(self.net, xs, ss, given[j], cond_mask[j], context[j], self.cfg.sigma_data)
                if w > 0:
                    x0_mean = denoise(self.net, xs, ss, mean_scene[j], cond_mask[j], context[j], self.cfg.sigma_data)
                    m = cond_mask[j][:, None, :, None, None]
                    x0 = m * given[j] + (1 - m) * (x0 + w * (x0 - x0_mean))
                parts.append(x0)
            return torch.cat(parts)

        with self._autocast():
            return sample(x0_fn, x_T, steps, sc.sigma_max, sc.sigma_min, sc.rho)
