"""T5 embedding store formats/errors and YAML config validation."""
import pickle

import pytest
import torch
from model_fixtures import CONFIG_DIR

from cosmos_policy_ros.model.config import ConfigError, load_model_config
from cosmos_policy_ros.model.text import T5EmbeddingStore, UnknownInstructionError


def _table():
    return {"fold shirt": torch.randn(1, 8, 16).bfloat16(), "put candy in bag": torch.randn(1, 8, 16).bfloat16()}


def test_reads_upstream_pickle(tmp_path):
    table = _table()
    path = tmp_path / "t5.pkl"
    with open(path, "wb") as f:
        pickle.dump(table, f)
    store = T5EmbeddingStore.load(path)
    assert store.instructions == ["fold shirt", "put candy in bag"]
    e = store.get("fold shirt")
    assert e.shape == (8, 16) and e.dtype == torch.float32
    assert torch.equal(e, table["fold shirt"][0].float())
    assert store.batch("fold shirt", 3).shape == (3, 8, 16)


def test_torch_and_safetensors_round_trip(tmp_path):
    store = T5EmbeddingStore(_table())
    store.save(tmp_path / "t5.pt")
    assert torch.equal(T5EmbeddingStore.load(tmp_path / "t5.pt").get("fold shirt"), store.get("fold shirt"))
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in _table().items()}, str(tmp_path / "t5.safetensors"))
    assert "put candy in bag" in T5EmbeddingStore.load(tmp_path / "t5.safetensors")


def test_unknown_instruction_is_clear():
    store = T5EmbeddingStore(_table(), "aloha_t5.pkl")
    with pytest.raises(UnknownInstructionError) as info:
        store.get("fold pants")
    msg = str(info.value)
    assert "'fold pants'" in msg and "aloha_t5.pkl" in msg and "'fold shirt'" in msg


def test_malicious_pickle_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    path = tmp_path / "t5.pkl"
    path.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ValueError, match="refusing to load builtins.print"):
        T5EmbeddingStore.load(path)


def test_released_configs_load():
    cfg = load_model_config(CONFIG_DIR / "cosmos_policy_2b_aloha.yaml")
    assert cfg.dit.model_channels == 2048 and cfg.sampler.sigma_min == 4.0 and cfg.layout.chunk_len == 50
    assert cfg.vae.dim_mult == (1, 2, 4, 4) and cfg.layout.cameras[2] == "cam_high"
    small = load_model_config(CONFIG_DIR / "small.yaml")
    assert len(small.layout.cameras) == 4


@pytest.mark.parametrize("text,needle", [
    ("model:\n  dit:\n    num_blokcs: 3\n", "model.dit.num_blokcs: unknown key"),
    ("model:\n  dit:\n    num_blocks: three\n", "model.dit.num_blocks: expected an integer"),
    ("model:\n  sampler:\n    value_ensemble_steps: 5\n", "model.sampler.value_ensemble_steps: expected a list"),
    ("model:\n  sampler:\n    sigma_min: 100\n", "sigma_min < sigma_max"),
    ("model:\n  layout:\n    image_size: 16\n", "fewer than one action chunk"),
    ("dit: {}\n", "missing top-level key 'model'"),
    ("model: [1, 2\n", "not valid YAML"),
])
def test_config_errors_name_file_and_key(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_model_config(path)
    assert str(path) in str(info.value) and needle in str(info.value)
