"""DiT: 2B key list/shapes equal the spec's table, param count, shapes, patch layout, RoPE."""
import math

import pytest
import torch
from model_fixtures import CONFIG_DIR

from cosmos_policy_ros.model.checkpoint import check_state_dict, normalize_keys
from cosmos_policy_ros.model.config import DiTConfig, load_model_config
from cosmos_policy_ros.model.dit import CosmosDiT, Patchify, param_count
from cosmos_policy_ros.model.rope import RoPE3D, apply_rope

RELEASED_PARAMS = 1_956_413_440  # spec section 0 / 2.10


def spec_2b_keys() -> dict[str, tuple]:
    """Key -> shape table written out from spec section 2.10 (prefix `net.`)."""
    D, L, C, F = 2048, 256, 1024, 8192
    keys = {
        "net.x_embedder.proj.1.weight": (D, 72),
        "net.t_embedder.1.linear_1.weight": (D, D),
        "net.t_embedder.1.linear_2.weight": (3 * D, D),
        "net.t_embedding_norm.weight": (D,),
        "net.final_layer.adaln_modulation.1.weight": (L, D),
        "net.final_layer.adaln_modulation.2.weight": (2 * D, L),
        "net.final_layer.linear.weight": (64, D),
        "net.pos_embedder.seq": (128,),
        "net.pos_embedder.dim_spatial_range": (21,),
        "net.pos_embedder.dim_temporal_range": (22,),
        "net.accum_video_sample_counter": (),
        "net.accum_image_sample_counter": (),
        "net.accum_iteration": (),
        "net.accum_train_in_hours": (),
    }
    for i in range(28):
        b = f"net.blocks.{i}."
        for p in ("q_proj", "k_proj", "v_proj", "output_proj"):
            keys[b + f"self_attn.{p}.weight"] = (D, D)
        for p in ("q_norm", "k_norm"):
            keys[b + f"self_attn.{p}.weight"] = (128,)
            keys[b + f"cross_attn.{p}.weight"] = (128,)
        keys[b + "cross_attn.q_proj.weight"] = (D, D)
        keys[b + "cross_attn.output_proj.weight"] = (D, D)
        keys[b + "cross_attn.k_proj.weight"] = (D, C)
        keys[b + "cross_attn.v_proj.weight"] = (D, C)
        keys[b + "mlp.layer1.weight"] = (F, D)
        keys[b + "mlp.layer2.weight"] = (D, F)
        for m in ("self_attn", "cross_attn", "mlp"):
            keys[b + f"adaln_modulation_{m}.1.weight"] = (L, D)
            keys[b + f"adaln_modulation_{m}.2.weight"] = (3 * D, L)
    return keys


@pytest.fixture(scope="module")
def meta_2b():
    cfg = load_model_config(CONFIG_DIR / "cosmos_policy_2b_aloha.yaml")
    with torch.device("meta"):
        return cfg, CosmosDiT(cfg.dit)


def test_2b_param_count_matches_released(meta_2b):
    cfg, net = meta_2b
    assert param_count(net) == RELEASED_PARAMS == cfg.released_param_count


def test_2b_keys_and_shapes_equal_spec(meta_2b):
    _, net = meta_2b
    ours = {"net." + k: tuple(v.shape) for k, v in net.state_dict().items()}
    spec = spec_2b_keys()
    assert set(ours) == set(spec), (sorted(set(ours) - set(spec))[:3], sorted(set(spec) - set(ours))[:3])
    assert ours == spec
    per_block = sum(math.prod(s) for k, s in spec.items() if k.startswith("net.blocks.0."))
    assert per_block == 69_206_528


def test_2b_spec_state_dict_loads_strictly(meta_2b):
    _, net = meta_2b
    sd = {k: torch.empty(s, device="meta") for k, s in spec_2b_keys().items()}
    sd["net.blocks.0.self_attn.q_proj._extra_state"] = torch.empty(0, device="meta")  # TE leftovers
    norm = normalize_keys(sd)
    check_state_dict(net, norm)
    net.load_state_dict(norm, strict=True, assign=True)


def test_forward_shapes_and_dtype(tiny_model, tiny_cfg):
    net = tiny_model.net
    B, T, S = 2, 11, 8
    x = torch.randn(B, 16, T, S, S)
    out = net(x, torch.rand(B, T), torch.randn(B, 8, tiny_cfg.dit.crossattn_emb_channels),
              condition_mask=torch.zeros(B, 1, T, S, S))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_patchify_is_channel_major():
    x = torch.arange(2 * 16, dtype=torch.float).reshape(1, 2, 1, 4, 4)
    p = Patchify(2, 1)(x)  # (1,1,2,2,8): feature = c*4 + m*2 + n
    assert p.shape == (1, 1, 2, 2, 8)
    assert p[0, 0, 0, 1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]


def test_unpatchify_is_channel_minor(tiny_model):
    """Final-layer feature (p1*2+p2)*C + c must land at pixel (2h+p1, 2w+p2) of channel c."""
    net = tiny_model.net
    cfg = net.cfg
    C = cfg.out_channels
    B, T, Hp, Wp = 1, 1, 2, 2
    feats = torch.arange(4 * C, dtype=torch.float).expand(B, T, Hp, Wp, 4 * C)
    p = cfg.patch_spatial
    out = feats.reshape(B, T, Hp, Wp, p, p, 1, C).permute(0, 7, 1, 6, 2, 4, 3, 5).reshape(B, C, T, Hp * p, Wp * p)
    # pixel (0,1) = p1 0, p2 1 -> feature (0*2+1)*C + c
    assert out[0, 3, 0, 0, 1].item() == 1 * C + 3
    assert out[0, 5, 0, 1, 0].item() == 2 * C + 5


def test_rope_split_and_ntk():
    r = RoPE3D(128, 120, 120, 128, 3.0, 3.0, 1.0)
    assert (r.dim_t, r.dim_h) == (44, 42)
    assert r.h_ntk == pytest.approx(3.0 ** (42 / 40)) and r.t_ntk == 1.0
    ang = r(11, 14, 14)
    assert ang.shape == (11 * 14 * 14, 128)
    # token (t=2, h=0, w=0): temporal part = 2 * 10000^-(2i/44), spatial parts 0
    tok = ang[2 * 14 * 14]
    assert tok[1].item() == pytest.approx(2 * 10000 ** (-2 / 44), rel=1e-5)
    assert torch.all(tok[22:64] == 0) and torch.equal(tok[:64], tok[64:])


def test_apply_rope_preserves_norm_and_rotates_half():
    x = torch.randn(1, 5, 2, 16)
    ang = torch.rand(5, 8).repeat(1, 2)  # halves share angles, as RoPE3D produces
    y = apply_rope(x, ang)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.allclose(apply_rope(x, torch.zeros(5, 16)), x)


def test_context_is_not_masked(tiny_model, tiny_cfg):
    """Zero-padded T5 tokens still take softmax mass (upstream has no text mask)."""
    net = tiny_model.net
    x = torch.randn(1, 16, 11, 8, 8)
    ctx = torch.randn(1, 4, tiny_cfg.dit.crossattn_emb_channels)
    padded = torch.cat([ctx, torch.zeros(1, 4, ctx.shape[-1])], dim=1)
    t = torch.rand(1, 11)
    assert not torch.allclose(net(x, t, ctx), net(x, t, padded))


def test_tiny_config_rejects_bad_heads():
    with pytest.raises(ValueError):
        DiTConfig(model_channels=30, num_heads=4).validate()
