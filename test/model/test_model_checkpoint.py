"""Checkpoints: save -> load round trip, prefixes/EMA, one-line errors naming the first bad key, CLI."""
import pickle

import pytest
import torch
from model_fixtures import CONFIG_DIR

from cosmos_policy_ros.model import checkpoint as ckpt
from cosmos_policy_ros.model.checkpoint_cli import main as cli_main
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel


def _fresh(cfg):
    return CosmosPolicyModel.build(cfg, "cpu", seed=123)


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_load_round_trip(tmp_path, tiny_model, tiny_cfg, suffix):
    path = tmp_path / f"m{suffix}"
    tiny_model.save(path)
    other = _fresh(tiny_cfg)
    assert not _equal(other.net, tiny_model.net)
    other.load_checkpoints(path)
    assert _equal(other.net, tiny_model.net) and _equal(other.vae, tiny_model.vae)


def test_upstream_style_dump_with_ema_and_extras(tmp_path, tiny_model, tiny_cfg):
    """{'model': {net.*, net_ema.*, logvar.*, *._extra_state}} without recomputable buffers."""
    sd = {}
    for k, v in tiny_model.net.state_dict().items():
        if k.startswith(("pos_embedder.", "accum_")):
            continue
        sd["net." + k.replace("blocks.0.", "blocks.0._checkpoint_wrapped_module.")] = v.clone()
        sd["net_ema." + k] = v.clone() + 1.0
    sd["net.blocks.0.self_attn.q_proj._extra_state"] = torch.zeros(3)
    sd["logvar.0.freqs"] = torch.zeros(4)
    path = tmp_path / "up.pt"
    torch.save({"model": sd}, path)
    net = _fresh(tiny_cfg).net
    ckpt.load_into(net, path)
    assert _equal(net, tiny_model.net)
    ckpt.load_into(net, path, ema=True)
    w = "blocks.1.mlp.layer1.weight"
    assert torch.equal(net.state_dict()[w], tiny_model.net.state_dict()[w] + 1.0)


def _err(tmp_path, tiny_cfg, sd=None, raw: bytes | None = None, name="bad.pt"):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        torch.save(sd, path)
    net = _fresh(tiny_cfg).net
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_into(net, path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_wrong_shape_names_first_bad_key(tmp_path, tiny_model, tiny_cfg):
    sd = {"net." + k: v for k, v in tiny_model.net.state_dict().items()}
    sd["net.blocks.1.mlp.layer2.weight"] = torch.zeros(3, 3)
    msg = _err(tmp_path, tiny_cfg, sd)
    assert "'blocks.1.mlp.layer2.weight'" in msg and "shape (3, 3)" in msg


def test_missing_key_named(tmp_path, tiny_model, tiny_cfg):
    sd = {"net." + k: v for k, v in tiny_model.net.state_dict().items() if "final_layer.linear" not in k}
    assert "'final_layer.linear.weight'" in _err(tmp_path, tiny_cfg, sd)


def test_foreign_state_dict_named(tmp_path, tiny_cfg):
    msg = _err(tmp_path, tiny_cfg, {"conv.weight": torch.zeros(2), "fc.bias": torch.zeros(2)})
    assert "'conv.weight'" in msg and "unexpected" in msg


def test_truncated_file(tmp_path, tiny_model, tiny_cfg):
    good = tmp_path / "good.pt"
    tiny_model.save(good)
    data = good.read_bytes()
    assert "cannot read checkpoint" in _err(tmp_path, tiny_cfg, raw=data[: len(data) // 2])
    st = tmp_path / "good.safetensors"
    tiny_model.save(st)
    d2 = st.read_bytes()
    assert "cannot read checkpoint" in _err(tmp_path, tiny_cfg, raw=d2[: len(d2) // 2], name="t.safetensors")


def test_arbitrary_pickle_is_refused(tmp_path, tiny_cfg):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))
    msg = _err(tmp_path, tiny_cfg, raw=pickle.dumps({"x": Evil()}))
    assert "cannot read checkpoint" in msg


def test_non_tensor_value_named(tmp_path, tiny_cfg):
    assert "'step'" in _err(tmp_path, tiny_cfg, {"net.x_embedder.proj.1.weight": torch.zeros(1), "step": 5})


def test_cli_summary_and_error(tmp_path, tiny_model, capsys):
    path = tmp_path / "m.safetensors"
    tiny_model.save(path)
    assert cli_main([str(path), "--config", str(CONFIG_DIR / "tiny_test.yaml")]) == 0
    out = capsys.readouterr().out
    assert "keys:" in out and "params:" in out and "float32" in out and "model_channels=32" in out
    assert "fits" in out
    assert cli_main([str(path), "--config", str(CONFIG_DIR / "small.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "first bad key" in err and err.count("\n") == 1


def test_dit_only_file_needs_vae_path(tmp_path, tiny_model, tiny_cfg):
    dit = tmp_path / "dit.pt"
    ckpt.save_checkpoint(tiny_model.net, dit)
    vae = tmp_path / "tokenizer.pth"
    torch.save(tiny_model.vae.state_dict(), vae)  # bare Wan2.1 keys, as the released tokenizer.pth
    m = _fresh(tiny_cfg)
    with pytest.raises(ckpt.CheckpointError, match="no VAE weights"):
        m.load_checkpoints(dit)
    m.load_checkpoints(dit, vae)
    assert _equal(m.net, tiny_model.net) and _equal(m.vae, tiny_model.vae)
