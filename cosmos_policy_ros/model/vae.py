"""Wan2.1 causal video VAE (encoder + decoder), key layout of the released `tokenizer.pth`.

Runs causally in chunks like upstream: the encoder sees frame 0 alone then 4-frame chunks, the
decoder one latent frame at a time, with a per-conv cache of the previous frames carried across
chunks. This keeps memory flat in the number of frames and matches upstream numerics. Latents are
normalised per channel with the released mean/std: z = (mu - mean) / std.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VAEConfig


class _Cache:
    """Per-module streaming state for one encode/decode call."""

    def __init__(self):
        self.state: dict[int, object] = {}

    def get(self, m: nn.Module):
        return self.state.get(id(m))

    def put(self, m: nn.Module, v) -> None:
        self.state[id(m)] = v


class CausalConv3d(nn.Conv3d):
    """Conv3d padded only towards the past in time; the cache supplies the previous chunk's frames."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__(cin, cout, kernel, stride=stride, padding=0)
        k = self.kernel_size
        pad = (padding, padding, padding) if isinstance(padding, int) else tuple(padding)
        self.tpad = 2 * pad[0]
        self.spad = (pad[2], pad[2], pad[1], pad[1])
        assert k[0] == 1 or self.tpad == k[0] - 1 or self.tpad == 0

    def forward(self, x: torch.Tensor, cache: _Cache | None = None) -> torch.Tensor:
        if self.tpad:
            prev = cache.get(self) if cache is not None else None
            if prev is None:
                prev = x.new_zeros(x.shape[0], x.shape[1], self.tpad, *x.shape[3:])
            x = torch.cat([prev, x], dim=2)
            if cache is not None:
                cache.put(self, x[:, :, -self.tpad:].detach().clone())
        if any(self.spad):
            x = F.pad(x, self.spad)
        if x.device.type == "cpu":
            return self._conv_as_2d(x)
        return super().forward(x)

    def _conv_as_2d(self, x: torch.Tensor) -> torch.Tensor:
        """Same result via one conv2d with the temporal taps stacked into channels.

        PyTorch's CPU conv3d falls back to a slow unfolded kernel; conv2d uses oneDNN (~3x faster).
        """
        B, C, T, H, W = x.shape
        kt, st = self.kernel_size[0], self.stride[0]
        To = (T - kt) // st + 1
        taps = [x[:, :, i: i + st * (To - 1) + 1: st] for i in range(kt)]
        xs = torch.stack(taps, dim=2).permute(0, 3, 1, 2, 4, 5).reshape(B * To, C * kt, H, W)
        w = self.weight.reshape(self.out_channels, C * kt, *self.kernel_size[1:])
        y = F.conv2d(xs, w, self.bias, stride=self.stride[1:])
        return y.reshape(B, To, *y.shape[1:]).permute(0, 2, 1, 3, 4)


class RMSNormC(nn.Module):
    """Channel-first L2 normalisation * sqrt(C) * gamma (key `gamma`, shape (C,1,1[,1]))."""

    def __init__(self, dim: int, images: bool):
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim, *((1, 1) if images else (1, 1, 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) * self.scale * self.gamma


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-D op to every frame of (B,C,T,H,W)."""
    B, C, T, H, W = x.shape
    y = fn(x.permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W))
    return y.reshape(B, T, *y.shape[1:]).permute(0, 2, 1, 3, 4)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.residual = nn.Sequential(
            RMSNormC(cin, images=False), nn.SiLU(), CausalConv3d(cin, cout, 3, padding=1),
            RMSNormC(cout, images=False), nn.SiLU(), nn.Dropout(0.0), CausalConv3d(cout, cout, 3, padding=1))
        self.shortcut = CausalConv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cache: _Cache | None) -> torch.Tensor:
        h = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, cache) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head spatial self-attention within each frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNormC(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor, cache: _Cache | None = None) -> torch.Tensor:
        def attn(f: torch.Tensor) -> torch.Tensor:
            n, c, h, w = f.shape
            q, k, v = self.to_qkv(self.norm(f)).reshape(n, 3 * c, h * w).transpose(1, 2).chunk(3, dim=-1)
            o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
            return self.proj(o.transpose(1, 2).reshape(n, c, h, w))
        return x + _per_frame(attn, x)


class Resample(nn.Module):
    """Spatial x2 down/up-sampling, optionally with a causal temporal x2 (key layout of upstream)."""

    def __init__(self, dim: int, mode: str):
        super().__init__()
        self.mode = mode
        if mode.startswith("up"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest"),
                                          nn.Conv2d(dim, dim // 2, 3, padding=1))
            if mode == "upsample3d":
                self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
            if mode == "downsample3d":
                self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: torch.Tensor, cache: _Cache) -> torch.Tensor:
        if self.mode == "upsample3d":
            if cache.get(self) is None:      # the first latent frame is not doubled in time
                cache.put(self, True)
            else:
                B, C, T, H, W = x.shape
                y = self.time_conv(x, cache).reshape(B, 2, C, T, H, W)
                x = torch.stack((y[:, 0], y[:, 1]), dim=3).reshape(B, C, 2 * T, H, W)
        x = _per_frame(self.resample, x)
        if self.mode == "downsample3d":
            last = cache.get(self)
            cache.put(self, x[:, :, -1:].detach().clone())
            if last is not None:             # the first frame passes through; then stride-2 pairs
                x = self.time_conv(torch.cat([last, x], dim=2))
        return x


def _run(seq: nn.Sequential, x: torch.Tensor, cache: _Cache) -> torch.Tensor:
    for layer in seq:
        if isinstance(layer, (ResidualBlock, Resample, CausalConv3d, AttentionBlock)):
            x = layer(x, cache)
        else:
            x = layer(x)
    return x


class Encoder3d(nn.Module):
    def __init__(self, dim: int, z_dim: int, dim_mult, num_res_blocks: int, attn_scales, tdown):
        super().__init__()
        dims = [dim * u for u in [1, *dim_mult]]
        scale = 1.0
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(num_res_blocks):
                layers.append(ResidualBlock(cin, cout))
                if scale in attn_scales:
                    layers.append(AttentionBlock(cout))
                cin = cout
            if i != len(dim_mult) - 1:
                layers.append(Resample(cout, "downsample3d" if tdown[i] else "downsample2d"))
                scale /= 2.0
        self.downsamples = nn.Sequential(*layers)
        self.middle = nn.Sequential(ResidualBlock(cout, cout), AttentionBlock(cout), ResidualBlock(cout, cout))
        self.head = nn.Sequential(RMSNormC(cout, images=False), nn.SiLU(), CausalConv3d(cout, z_dim, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: _Cache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for seq in (self.downsamples, self.middle, self.head):
            x = _run(seq, x, cache)
        return x


class Decoder3d(nn.Module):
    def __init__(self, dim: int, z_dim: int, dim_mult, num_res_blocks: int, attn_scales, tup):
        super().__init__()
        dims = [dim * u for u in [dim_mult[-1], *dim_mult[::-1]]]
        scale = 1.0 / 2 ** (len(dim_mult) - 2)
        self.conv1 = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            if i > 0:
                cin //= 2  # the previous upsample halved the channels
            for _ in range(num_res_blocks + 1):
                layers.append(ResidualBlock(cin, cout))
                if scale in attn_scales:
                    layers.append(AttentionBlock(cout))
                cin = cout
            if i != len(dim_mult) - 1:
                layers.append(Resample(cout, "upsample3d" if tup[i] else "upsample2d"))
                scale *= 2.0
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(RMSNormC(cout, images=False), nn.SiLU(), CausalConv3d(cout, 3, 3, padding=1))

    def forward(self, x: torch.Tensor, cache: _Cache) -> torch.Tensor:
        x = self.conv1(x, cache)
        for seq in (self.middle, self.upsamples, self.head):
            x = _run(seq, x, cache)
        return x


class WanVAE(nn.Module):
    """Keys: encoder.*, conv1.*, conv2.*, decoder.* (plus non-persistent latent mean/std)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        tdown = tuple(cfg.temporal_downsample)
        self.encoder = Encoder3d(cfg.dim, cfg.z_dim * 2, cfg.dim_mult, cfg.num_res_blocks, cfg.attn_scales, tdown)
        self.conv1 = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(cfg.dim, cfg.z_dim, cfg.dim_mult, cfg.num_res_blocks, cfg.attn_scales, tdown[::-1])
        self.register_buffer("latent_mean", torch.tensor(cfg.latent_mean), persistent=False)
        self.register_buffer("latent_std", torch.tensor(cfg.latent_std), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    def _stats(self, dtype):
        shape = (1, -1, 1, 1, 1)
        return self.latent_mean.to(dtype).view(shape), self.latent_std.to(dtype).view(shape)

    def encode(self, video: torch.Tensor, temporal_window: int | None = None) -> torch.Tensor:
        """video (B,3,1+4k,H,W) in [-1,1] -> normalised latents (B,z,1+k,H/8,W/8) float32.

        Frame 0 alone, then chunks of `temporal_window` frames (a multiple of 4; None: the config's). The
        result does not depend on it up to float rounding; the number of encoder calls and peak memory do:
        16 (upstream's) puts the proprio frame and all three ALOHA cameras into one call.
        """
        temporal_window = temporal_window or self.cfg.temporal_window
        if (video.shape[2] - 1) % 4:
            raise ValueError(f"need 1+4k pixel frames, got {video.shape[2]}")
        if temporal_window < 4 or temporal_window % 4:
            raise ValueError("temporal_window must be a positive multiple of 4")
        x = video.to(self.dtype)
        cache = _Cache()
        w = temporal_window
        chunks = [x[:, :, :1]] + [x[:, :, i:i + w] for i in range(1, x.shape[2], w)]
        out = torch.cat([self.encoder(c, cache) for c in chunks], dim=2)
        mu = self.conv1(out).chunk(2, dim=1)[0]
        mean, std = self._stats(mu.dtype)
        return ((mu - mean) * (1.0 / std)).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B,z,T,h,w) -> video (B,3,1+4(T-1),8h,8w) in about [-1,1], float32."""
        mean, std = self._stats(self.dtype)
        x = self.conv2(z.to(self.dtype) * std + mean)
        cache = _Cache()
        return torch.cat([self.decoder(x[:, :, i:i + 1], cache) for i in range(x.shape[2])], dim=2).float()

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Random init for tests / from-scratch configs (kaiming-like, zero biases)."""
        for name, p in self.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) * (1.0 / fan_in) ** 0.5)
