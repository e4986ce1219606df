"""A lab's whole fine-tuning path with the commands the docs give, on a tiny model in the released layout:

recorded 480x640 three-camera episodes with a new instruction -> `cosmos-aloha t5-embed` (tiny random T5) ->
`train --encode-only` (augmented copies) -> `torchrun --nproc-per-node 2` FSDP, bf16, activation checkpointing,
accumulated micro-batches, sharded checkpoints only -> `--export` (gathers the shards) -> the engine runs the
bundle with the test-time centre crop the augmentation asks for. gloo on CPU: about a minute.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from released_fixture import write_released_folder, write_tiny_episodes
from tiny_t5 import write_tiny_t5

from cosmos_policy_ros.deploy.bundle import build_engine, resolve_bundle

ROOT = Path(__file__).resolve().parents[2]
CAMS = ("cam_left_wrist", "cam_right_wrist", "cam_high")
BIN = Path(sys.executable).parent
INSTRUCTION = "stack cups on plate"


def _run(cmd: list[str], timeout: float = 300) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
    return r.stdout


@pytest.mark.slow
def test_released_parent_to_deployable_bundle_through_torchrun_fsdp(tmp_path):
    released = write_released_folder(tmp_path / "released")
    data = write_tiny_episodes(tmp_path / "recordings", INSTRUCTION, T=30, height=480, width=640, seed=1)
    t5 = tmp_path / "lab_t5.pkl"
    _run([str(BIN / "cosmos-aloha"), "t5-embed", "--model", str(write_tiny_t5(tmp_path / "t5")), "--max-length", "8",
          "--device", "cpu", "--out", str(t5), "--from-episodes", str(data), "--no-progress"])
    recipe = tmp_path / "finetune.yaml"
    recipe.write_text("\n".join([
        f"model: {ROOT / 'config/model/tiny_test.yaml'}", "train:", "  steps: 3", "  batch_size: 4",
        "  micro_batch: 1", "  lr: 0.0002", "  warmup_steps: 1", "  sample_stride: 10", "  log_every: 1",
        "  threads: 1", "  checkpoint_every_s: 1000000000", "  checkpoint_every_steps: 2", "  augment_copies: 2",
        "  image_resize: pil_256_224", "  parallel: fsdp", "  precision: bf16", "  activation_checkpointing: true",
        "  consolidate_checkpoints: false", f"  t5_embeddings: {t5}", ""]))
    run = tmp_path / "run"
    common = ["--config", str(recipe), "--init-from", str(released), "--data", str(data), "--run-dir", str(run),
              "--no-progress"]
    out = _run([str(BIN / "cosmos-aloha"), "train", *common, "--encode-only"])
    assert "encoded the latent cache" in out
    out = _run([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "cosmos_policy_ros.train.cli",
                *common])
    assert "step 3" in out
    ckpt = run / "checkpoints" / (run / "latest").read_text().strip()
    assert not (ckpt / "model.safetensors").exists()            # sharded state only
    bundle = tmp_path / "bundle"
    _run([str(BIN / "cosmos-aloha"), "train", "--run-dir", str(run), "--export", str(bundle)])
    policy = json.loads((bundle / "policy.json").read_text())
    assert policy["preprocess"]["center_crop"] is True          # trained on augmented crops
    assert policy["preprocess"]["resize"] == "pil_256_224"
    engine = build_engine(resolve_bundle(bundle), device="cpu")
    obs = {"images": {c: np.full((480, 640, 3), 90, np.uint8) for c in CAMS},
           "proprio": np.array(engine.stats.proprio_mean), "instruction": INSTRUCTION}
    res = engine.act(obs, seed=0)
    assert res.actions.shape == (50, 14) and np.isfinite(res.actions).all()
