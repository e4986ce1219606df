"""Wan2.1 VAE: released key layout, shapes, causality, normalisation, CPU conv path."""
import pytest
import torch

from cosmos_policy_ros.model.config import WAN21_LATENT_MEAN, VAEConfig
from cosmos_policy_ros.model.vae import CausalConv3d, WanVAE


def test_released_key_layout_on_meta():
    with torch.device("meta"):
        vae = WanVAE(VAEConfig())
    sd = vae.state_dict()
    assert len(sd) == 194
    assert sum(p.numel() for p in vae.parameters()) == 126_892_531
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["encoder.conv1.weight"] == (96, 3, 3, 3, 3)
    assert shapes["encoder.downsamples.5.time_conv.weight"] == (192, 192, 3, 1, 1)
    assert shapes["encoder.middle.1.to_qkv.weight"] == (1152, 384, 1, 1)
    assert shapes["encoder.middle.1.norm.gamma"] == (384, 1, 1)
    assert shapes["encoder.head.2.weight"] == (32, 384, 3, 3, 3)
    assert shapes["conv1.weight"] == (32, 32, 1, 1, 1) and shapes["conv2.weight"] == (16, 16, 1, 1, 1)
    assert shapes["decoder.upsamples.3.time_conv.weight"] == (768, 384, 3, 1, 1)
    assert shapes["decoder.upsamples.4.residual.2.weight"] == (384, 192, 3, 3, 3)
    assert shapes["decoder.head.2.weight"] == (3, 96, 3, 3, 3)
    assert "latent_mean" not in sd  # constants, not checkpoint entries


def test_released_constants():
    cfg = VAEConfig()
    assert cfg.latent_mean == WAN21_LATENT_MEAN and cfg.latent_std[0] == 2.8184 and len(cfg.latent_std) == 16
    assert cfg.spatial_factor == 8 and cfg.temporal_factor == 4


@pytest.mark.parametrize("kw", [
    dict(cin=8, cout=6, kernel=3, padding=1),
    dict(cin=8, cout=16, kernel=(3, 1, 1), padding=(1, 0, 0)),
    dict(cin=8, cout=8, kernel=(3, 1, 1), stride=(2, 1, 1)),
    dict(cin=8, cout=4, kernel=1),
])
def test_cpu_conv_path_equals_conv3d(kw):
    torch.manual_seed(0)
    c = CausalConv3d(**kw)
    x = torch.randn(2, 8, 9, 10, 12)
    with torch.no_grad():
        y = c(x)
        xp = torch.nn.functional.pad(x, (*c.spad, c.tpad, 0))
        ref = torch.nn.Conv3d.forward(c, xp)
    assert torch.allclose(y, ref, atol=1e-5)


def test_encode_decode_shapes(tiny_model):
    vae = tiny_model.vae
    video = torch.rand(2, 3, 41, 64, 64) * 2 - 1
    z = vae.encode(video)
    assert z.shape == (2, 16, 11, 8, 8) and z.dtype == torch.float32
    rec = vae.decode(z)
    assert rec.shape == (2, 3, 41, 64, 64)
    with pytest.raises(ValueError):
        vae.encode(video[:, :, :40])


def test_encoder_and_decoder_are_causal(tiny_model):
    """Later pixel frames never change earlier latents (and vice versa for decoding)."""
    vae = tiny_model.vae
    g = torch.Generator().manual_seed(1)
    video = torch.rand(1, 3, 41, 64, 64, generator=g) * 2 - 1
    z = vae.encode(video)
    video2 = video.clone()
    video2[:, :, 21:] = 0.0  # pixel frames of latent frames 6..10
    z2 = vae.encode(video2)
    assert torch.allclose(z[:, :, :6], z2[:, :, :6], atol=1e-6)
    assert not torch.allclose(z[:, :, 6:], z2[:, :, 6:])
    x = vae.decode(z)
    z3 = z.clone()
    z3[:, :, 8:] += 1.0
    x3 = vae.decode(z3)
    assert torch.allclose(x[:, :, :29], x3[:, :, :29], atol=1e-6)  # latent 8 -> pixel frames 29..32


def test_latent_normalisation_applied(tiny_model):
    vae = tiny_model.vae
    video = torch.zeros(1, 3, 5, 64, 64)
    z = vae.encode(video)
    mean, std = vae.latent_mean.clone(), vae.latent_std.clone()
    try:
        vae.latent_mean.zero_()
        vae.latent_std.fill_(1.0)
        raw = vae.encode(video)
    finally:
        vae.latent_mean.copy_(mean)
        vae.latent_std.copy_(std)
    assert torch.allclose(z, (raw - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1), atol=1e-5)


def test_encoding_independent_of_chunk_window(tiny_model):
    """Causal caches carried across chunks: windows 4, 8 and 16 (upstream) give the same latents."""
    g = torch.Generator().manual_seed(2)
    video = torch.rand(1, 3, 41, 64, 64, generator=g) * 2 - 1
    z4 = tiny_model.vae.encode(video, 4)
    for w in (8, 16, 40):
        assert torch.allclose(tiny_model.vae.encode(video, w), z4, atol=1e-5), w
