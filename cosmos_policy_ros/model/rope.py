"""3-D rotary position embedding of Cosmos-Predict2 (spec section 2.4).

Kept as a module with the upstream buffer names (`seq`, `dim_spatial_range`, `dim_temporal_range`)
so released state dicts load strictly, and so frequencies are computed from the buffers as stored
(upstream keeps them in bf16 after casting the net; reading the buffers reproduces that rounding).
"""
from __future__ import annotations

import torch
from torch import nn


class RoPE3D(nn.Module):
    """Split head_dim into t/h/w parts (44/42/42 for 128) with NTK-scaled thetas; no fps scaling."""

    def __init__(self, head_dim: int, len_h: int, len_w: int, len_t: int,
                 h_ratio: float = 1.0, w_ratio: float = 1.0, t_ratio: float = 1.0):
        super().__init__()
        dim_h = head_dim // 6 * 2
        dim_t = head_dim - 2 * dim_h
        self.dim_h, self.dim_t = dim_h, dim_t
        self.max_h, self.max_w, self.max_t = len_h, len_w, len_t
        self.register_buffer("seq", torch.arange(max(len_h, len_w, len_t), dtype=torch.float))
        self.register_buffer("dim_spatial_range", torch.arange(0, dim_h, 2)[: dim_h // 2].float() / dim_h)
        self.register_buffer("dim_temporal_range", torch.arange(0, dim_t, 2)[: dim_t // 2].float() / dim_t)
        self.h_ntk = h_ratio ** (dim_h / (dim_h - 2))
        self.w_ntk = w_ratio ** (dim_h / (dim_h - 2))
        self.t_ntk = t_ratio ** (dim_t / (dim_t - 2))

    def reset_buffers(self) -> None:
        """Recompute buffers (after building on the meta device and materialising with to_empty)."""
        dev = self.seq.device
        self.seq = torch.arange(self.seq.numel(), dtype=torch.float, device=dev).to(self.seq.dtype)
        self.dim_spatial_range = (torch.arange(0, self.dim_h, 2, device=dev)[: self.dim_h // 2].float()
                                  / self.dim_h).to(self.dim_spatial_range.dtype)
        self.dim_temporal_range = (torch.arange(0, self.dim_t, 2, device=dev)[: self.dim_t // 2].float()
                                   / self.dim_t).to(self.dim_temporal_range.dtype)

    def forward(self, T: int, H: int, W: int) -> torch.Tensor:
        """Angles (T*H*W, head_dim) float32 in (t,h,w) token order: [t,h,w,t,h,w] halves."""
        if H > self.max_h or W > self.max_w or T > self.max_t:
            raise ValueError(f"token grid {T}x{H}x{W} exceeds RoPE table {self.max_t}x{self.max_h}x{self.max_w}")
        seq = self.seq.float()
        fh = 1.0 / (10000.0 * self.h_ntk) ** self.dim_spatial_range.float()
        fw = 1.0 / (10000.0 * self.w_ntk) ** self.dim_spatial_range.float()
        ft = 1.0 / (10000.0 * self.t_ntk) ** self.dim_temporal_range.float()
        et = torch.outer(seq[:T], ft)[:, None, None, :].expand(T, H, W, -1)
        eh = torch.outer(seq[:H], fh)[None, :, None, :].expand(T, H, W, -1)
        ew = torch.outer(seq[:W], fw)[None, None, :, :].expand(T, H, W, -1)
        emb = torch.cat([et, eh, ew, et, eh, ew], dim=-1)
        return emb.reshape(T * H * W, -1)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE in fp32, returned in x's dtype. x: (B, S, heads, D); angles: (S, D)."""
    xf = x.float()
    cos = angles.cos()[None, :, None, :]
    sin = angles.sin()[None, :, None, :]
    half = xf.shape[-1] // 2
    rot = torch.cat([-xf[..., half:], xf[..., :half]], dim=-1)
    return (xf * cos + rot * sin).to(x.dtype)
