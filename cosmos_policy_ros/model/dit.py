"""Cosmos-Predict2 video DiT as used by Cosmos Policy (MinimalV1LVGDiT), in plain PyTorch.

Module names and parameter shapes mirror upstream `MiniTrainDIT` exactly (spec section 2.10) so the
released checkpoints load with strict=True. Transformer-Engine pieces are replaced by fp32 RMSNorm
and rotate-half RoPE; attention is torch's scaled_dot_product_attention.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import DiTConfig
from .rope import RoPE3D, apply_rope


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * w computed in fp32 (as TE's RMSNorm), returned in x's dtype."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        return y.to(x.dtype)


class Patchify(nn.Module):
    """b c (t r) (h m) (w n) -> b t h w (c r m n): channel-major patch features (no parameters)."""

    def __init__(self, p: int, pt: int):
        super().__init__()
        self.p, self.pt = p, pt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T, H, W = x.shape
        p, pt = self.p, self.pt
        x = x.reshape(B, C, T // pt, pt, H // p, p, W // p, p)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
        return x.reshape(B, T // pt, H // p, W // p, C * pt * p * p)


class PatchEmbed(nn.Module):
    """Keys `x_embedder.proj.1.weight`: index 0 is the parameter-free patchify."""

    def __init__(self, in_channels: int, out_channels: int, p: int, pt: int):
        super().__init__()
        self.proj = nn.Sequential(Patchify(p, pt), nn.Linear(in_channels * p * p * pt, out_channels, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Timesteps(nn.Module):
    """Sinusoidal features, cos first, computed in fp32: (B, T) -> (B, T, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        arg = t.float()[..., None] * freqs
        return torch.cat([arg.cos(), arg.sin()], dim=-1).to(t.dtype)


class TimestepEmbedding(nn.Module):
    """With AdaLN-LoRA returns (raw sinusoid, shared 3*D LoRA term); keys linear_1, linear_2."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(dim, dim, bias=False)
        self.activation = nn.SiLU()
        self.linear_2 = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return sample, self.linear_2(self.activation(self.linear_1(sample)))


class Attention(nn.Module):
    """Multi-head attention with per-head RMS q/k norm; RoPE only for self-attention; no mask."""

    def __init__(self, dim: int, context_dim: int | None, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        kv_dim = dim if context_dim is None else context_dim
        self.is_self = context_dim is None
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_proj = nn.Linear(kv_dim, dim, bias=False)
        self.k_norm = RMSNorm(self.head_dim)
        self.v_proj = nn.Linear(kv_dim, dim, bias=False)
        self.v_norm = nn.Identity()
        self.output_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                rope: torch.Tensor | None = None) -> torch.Tensor:
        B, S, _ = x.shape
        ctx = x if context is None else context
        q = self.q_norm(self.q_proj(x).view(B, S, self.heads, self.head_dim))
        k = self.k_norm(self.k_proj(ctx).view(B, ctx.shape[1], self.heads, self.head_dim))
        v = self.v_proj(ctx).view(B, ctx.shape[1], self.heads, self.head_dim)
        if self.is_self and rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.output_proj(out.transpose(1, 2).reshape(B, S, -1))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.layer1 = nn.Linear(dim, hidden, bias=False)
        self.activation = nn.GELU()
        self.layer2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.activation(self.layer1(x)))


def _adaln(dim: int, lora: int, n: int) -> nn.Sequential:
    return nn.Sequential(nn.SiLU(), nn.Linear(dim, lora, bias=False), nn.Linear(lora, n * dim, bias=False))


class Block(nn.Module):
    """Self-attn, cross-attn, MLP; each pre-LN modulated per latent frame (shift, scale, gate)."""

    def __init__(self, dim: int, context_dim: int, heads: int, mlp_ratio: float, lora: int):
        super().__init__()
        self.layer_norm_self_attn = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(dim, None, heads)
        self.layer_norm_cross_attn = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross_attn = Attention(dim, context_dim, heads)
        self.layer_norm_mlp = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.adaln_modulation_self_attn = _adaln(dim, lora, 3)
        self.adaln_modulation_cross_attn = _adaln(dim, lora, 3)
        self.adaln_modulation_mlp = _adaln(dim, lora, 3)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, lora: torch.Tensor,
                context: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        B, T, H, W, D = x.shape

        def mod(head: nn.Module):
            return [c[:, :, None, None, :] for c in (head(emb) + lora).chunk(3, dim=-1)]

        def run(norm, shift, scale, fn):
            h = norm(x) * (1 + scale) + shift
            return fn(h.reshape(B, T * H * W, D)).reshape(B, T, H, W, D)

        shift, scale, gate = mod(self.adaln_modulation_self_attn)
        x = x + gate * run(self.layer_norm_self_attn, shift, scale, lambda h: self.self_attn(h, rope=rope))
        shift, scale, gate = mod(self.adaln_modulation_cross_attn)
        x = x + gate * run(self.layer_norm_cross_attn, shift, scale, lambda h: self.cross_attn(h, context))
        shift, scale, gate = mod(self.adaln_modulation_mlp)
        x = x + gate * run(self.layer_norm_mlp, shift, scale, self.mlp)
        return x


class FinalLayer(nn.Module):
    def __init__(self, dim: int, lora: int, p: int, pt: int, out_channels: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, p * p * pt * out_channels, bias=False)
        self.adaln_modulation = _adaln(dim, lora, 2)
        self.dim = dim

    def forward(self, x: torch.Tensor, emb: torch.Tensor, lora: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.adaln_modulation(emb) + lora[..., : 2 * self.dim]).chunk(2, dim=-1)
        x = self.layer_norm(x) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        return self.linear(x)


class CosmosDiT(nn.Module):
    """Video DiT: (B,C,T,H,W) latents + per-frame timesteps + T5 context -> (B,C,T,H,W) output.

    The input gets [condition mask, padding mask] channels appended (16 + 1 + 1 = 18 for the
    released model). Timesteps are per latent frame (conditioning frames use 0).
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        D = cfg.model_channels
        in_ch = cfg.in_channels + int(cfg.condition_mask_channel) + int(cfg.concat_padding_mask)
        self.x_embedder = PatchEmbed(in_ch, D, cfg.patch_spatial, cfg.patch_temporal)
        self.pos_embedder = RoPE3D(
            D // cfg.num_heads, cfg.max_img_h // cfg.patch_spatial, cfg.max_img_w // cfg.patch_spatial,
            cfg.max_frames // cfg.patch_temporal, cfg.rope_h_extrapolation_ratio,
            cfg.rope_w_extrapolation_ratio, cfg.rope_t_extrapolation_ratio)
        self.t_embedder = nn.Sequential(Timesteps(D), TimestepEmbedding(D))
        self.blocks = nn.ModuleList(
            Block(D, cfg.crossattn_emb_channels, cfg.num_heads, cfg.mlp_ratio, cfg.adaln_lora_dim)
            for _ in range(cfg.num_blocks))
        self.final_layer = FinalLayer(D, cfg.adaln_lora_dim, cfg.patch_spatial, cfg.patch_temporal,
                                      cfg.out_channels)
        self.t_embedding_norm = RMSNorm(D)
        # Training bookkeeping buffers present in released checkpoints (unused here).
        self.register_buffer("accum_video_sample_counter", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("accum_image_sample_counter", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("accum_iteration", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("accum_train_in_hours", torch.tensor(0.0, dtype=torch.float32))

    @property
    def dtype(self) -> torch.dtype:
        return self.t_embedding_norm.weight.dtype

    @torch.no_grad()
    def init_weights(self, std_scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        """Random init (truncated normal, std 1/sqrt(fan_in)); used for tests and training from scratch."""
        for name, p in self.named_parameters():
            if p.ndim == 2:
                std = std_scale / math.sqrt(p.shape[1])
                p.copy_((torch.randn(p.shape, generator=generator) * std).clamp(-3 * std, 3 * std).to(p))
            else:
                p.fill_(1.0)
        self.pos_embedder.reset_buffers()

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                condition_mask: torch.Tensor | None = None,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B,C,T,H,W); timesteps (B,T) or (B,); context (B,L,Dc); condition_mask (B,1,T,H,W)."""
        cfg = self.cfg
        B, _, T, H, W = x.shape
        dt = self.dtype
        parts = [x]
        if cfg.condition_mask_channel:
            parts.append(condition_mask if condition_mask is not None else x.new_zeros(B, 1, T, H, W))
        if cfg.concat_padding_mask:
            if padding_mask is None:
                parts.append(x.new_zeros(B, 1, T, H, W))
            else:  # (B,1,h,w) at pixel resolution -> nearest to latent size, broadcast over T
                pm = F.interpolate(padding_mask.float(), size=(H, W), mode="nearest")
                parts.append(pm[:, :, None].expand(B, 1, T, H, W))
        h = torch.cat([p.to(dt) for p in parts], dim=1)
        h = self.x_embedder(h)  # (B, T', H', W', D)
        _, Tp, Hp, Wp, _ = h.shape
        rope = self.pos_embedder(Tp, Hp, Wp)
        if timesteps.ndim == 1:
            timesteps = timesteps[:, None]
        timesteps = timesteps * cfg.timestep_scale
        emb, lora = self.t_embedder(timesteps.to(dt))
        emb = self.t_embedding_norm(emb.to(dt))
        context = context.to(dt)
        for block in self.blocks:
            h = block(h, emb, lora, context, rope)
        out = self.final_layer(h, emb, lora)  # (B, T', H', W', p*p*pt*C)
        p, pt, C = cfg.patch_spatial, cfg.patch_temporal, cfg.out_channels
        out = out.reshape(B, Tp, Hp, Wp, p, p, pt, C).permute(0, 7, 1, 6, 2, 4, 3, 5)
        return out.reshape(B, C, Tp * pt, Hp * p, Wp * p)


def param_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
