"""The training planner: sizes counted on the meta device, setups that fit, the table `train --plan` prints."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cosmos_policy_ros.model.config import load_model_config
from cosmos_policy_ros.model.dit import CosmosDiT
from cosmos_policy_ros.train import memory_plan as mp

ROOT = Path(__file__).resolve().parents[2]
TWO_B = ROOT / "config/model/cosmos_policy_2b_aloha.yaml"


@pytest.fixture(scope="module")
def sizes_2b() -> mp.ModelSizes:
    return mp.measure(load_model_config(TWO_B))


def test_the_2b_parameter_count_is_the_released_one(sizes_2b):
    assert sizes_2b.dit_params == 1_956_413_440
    assert sizes_2b.tokens == 11 * 14 * 14
    # forward FLOPs are at least the matmuls of every parameter on every token
    assert sizes_2b.fwd_flops >= 2 * sizes_2b.num_blocks * sizes_2b.block_params * sizes_2b.tokens


def test_meta_counting_equals_a_real_forward_on_the_cpu():
    """The meta-device count of saved bytes is what real tensors save (same probe for attention)."""
    cfg = load_model_config(ROOT / "config/model/tiny_test.yaml")
    sizes = mp.measure(cfg, dtype=torch.float32)
    net = CosmosDiT(cfg.dit)
    net.init_weights(generator=torch.Generator().manual_seed(0))
    side = cfg.layout.image_size // cfg.vae.spatial_factor
    T = 11
    x = torch.randn(1, cfg.dit.in_channels, T, side, side)
    real = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = mp._FusedAttentionProbe.apply
    try:
        saved, _ = mp._saved_bytes(lambda: net(x, torch.zeros(1, T), torch.randn(1, cfg.text_len, 16)))
    finally:
        torch.nn.functional.scaled_dot_product_attention = real
    assert saved == sizes.act_bytes
    assert sizes.dit_params == sum(p.numel() for p in net.parameters())


def test_checkpointing_keeps_a_fraction_of_the_activations(sizes_2b):
    assert sizes_2b.act_checkpointed_bytes() < sizes_2b.act_bytes / 5
    assert sizes_2b.act_outside_bytes >= 0


def test_fsdp_is_chosen_where_the_full_optimizer_state_does_not_fit_on_one_card(sizes_2b):
    gpus, assume = mp.load_gpus()
    setups = mp.plan(sizes_2b, gpus["a100_40"], 8, assume)
    ddp = [s for s in setups if s.strategy == "ddp"]
    assert not any(s.fits for s in ddp)                  # 22 bytes per parameter > 40 GB
    chosen = mp.best(setups)
    assert chosen is not None and chosen.strategy == "fsdp"
    for s in setups:
        if s.fits:
            assert s.micro_batch * s.accumulation * 8 == assume.global_batch
            assert s.peak_bytes <= assume.usable_bytes(gpus["a100_40"])
            assert s.micro_batch <= s.max_micro_batch


def test_more_memory_or_more_gpus_never_fit_less(sizes_2b):
    gpus, assume = mp.load_gpus()
    for strategy in ("ddp", "fsdp"):
        small = mp.plan_setup(sizes_2b, gpus["h100_80"], 8, strategy, True, assume)
        big = mp.plan_setup(sizes_2b, gpus["h200_141"], 8, strategy, True, assume)
        assert big.max_micro_batch >= small.max_micro_batch
    one = mp.plan_setup(sizes_2b, gpus["h100_80"], 1, "fsdp", True, assume)
    eight = mp.plan_setup(sizes_2b, gpus["h100_80"], 8, "fsdp", True, assume)
    assert eight.fixed_bytes < one.fixed_bytes


def test_nothing_fits_on_a_tiny_card_and_the_table_says_so(sizes_2b):
    gpus, assume = mp.load_gpus()
    gpu = mp.Gpu("8 GB", 8, 100)
    setups = mp.plan(sizes_2b, gpu, 1, assume)
    assert mp.best(setups) is None
    assert "nothing fits" in mp.format_table(sizes_2b, gpu, 1, assume, setups, 200)


def test_train_plan_prints_the_table_and_refuses_an_unknown_gpu_in_one_line():
    cli = [sys.executable, "-m", "cosmos_policy_ros.train.cli", "--plan"]
    ok = subprocess.run([*cli, "--gpus", "8", "--gpu", "h200_141"], capture_output=True, text=True, cwd=ROOT,
                        timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "1.956 B parameters" in ok.stdout and "<- chosen" in ok.stdout and "fsdp" in ok.stdout
    bad = subprocess.run([*cli, "--gpu", "tpu_v9"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "unknown GPU 'tpu_v9'" in bad.stderr


def test_run_plan_takes_a_training_recipe_too():
    ns = argparse.Namespace(gpus=2, gpu="h100_80", gpu_memory_gb=None, global_batch=24, ema=True)
    out = mp.run_plan(ROOT / "config/train/sim_small.yaml", ns)
    assert out.startswith("sim_small:") and "global batch 24" in out


def test_the_shipped_2b_fine_tune_recipe_fits_one_and_eight_80_gb_cards(sizes_2b):
    from cosmos_policy_ros.train.config import load_recipe
    model, train = load_recipe(ROOT / "config/train/cosmos_policy_2b_aloha_finetune.yaml", model_optional=True)
    assert model is None  # the architecture comes with --init-from
    gpus, assume = mp.load_gpus()
    for n in (1, 8):
        s = mp.plan_setup(sizes_2b, gpus["h100_80"], n, train.parallel, train.activation_checkpointing, assume,
                          global_batch=train.batch_size)
        assert train.micro_batch <= s.max_micro_batch
        assert train.batch_size % (n * train.micro_batch) == 0
