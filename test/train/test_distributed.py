"""Training under torchrun (gloo, 2 CPU processes): DDP and FSDP steps equal the single-process step of the same
global batch, a killed run resumes bit-exact from its sharded checkpoint, and a 2-rank checkpoint resumes and
exports in one process.

Tolerances (fp32, tiny_test model, lr 3e-3, global batch 8): loss relative 1e-6, grad norm relative 1e-5,
every weight within 1e-7 of the single-process step (measured: loss equal, weights within 9e-9).
Runs are real `torchrun --nproc-per-node 2 -m cosmos_policy_ros.train.cli` subprocesses.
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cosmos_policy_ros.data.aloha_hdf5 import write_episode
from cosmos_policy_ros.model.config import ConfigError
from cosmos_policy_ros.train import cli
from cosmos_policy_ros.train.config import train_config_from_dict
from cosmos_policy_ros.train.step_batches import StepBatches, micro_layout

ROOT = Path(__file__).resolve().parents[2]
CAMS = ("cam_left_wrist", "cam_right_wrist", "cam_high")
TORCHRUN = Path(sys.executable).parent / "torchrun"
LOSS_RTOL, GRAD_NORM_RTOL, WEIGHT_ATOL = 1e-6, 1e-5, 1e-7


def make_episodes(d: Path, n: int = 2, T: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for e in range(n):
        qpos = np.sin(np.linspace(0, 1, T)[:, None] * np.arange(1, 15) + e).astype(np.float32)
        imgs = {c: (rng.random((T, 64, 64, 3)) * 255).astype(np.uint8) for c in CAMS}
        write_episode(d / f"episode_{e}.hdf5", qpos, qpos * 0, np.roll(qpos, -1, axis=0), imgs, success=True,
                      task="toy", instruction="do the toy task", seed=e)
    return d


def make_recipe(d: Path, name: str, **train) -> Path:
    body = {"steps": 4, "batch_size": 8, "lr": 0.003, "warmup_steps": 0, "sample_stride": 20,
            "checkpoint_every_s": 1e9, "log_every": 1, "threads": 1, "ema_decay": 0.9}
    body.update(train)
    lines = [f"model: {ROOT / 'config/model/tiny_test.yaml'}", "train:"]
    lines += [f"  {k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in body.items()]
    p = d / f"{name}.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_cmd(*args: str) -> list[str]:
    # --run-dir: torchrun's own parser would take --run for its --run-path
    return [str(TORCHRUN), "--nproc-per-node", "2", "--master-port", str(_free_port()), "-m",
            "cosmos_policy_ros.train.cli", *args, "--no-progress"]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, timeout: float = 180) -> str:
    r = subprocess.run(_torchrun_cmd(*args), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def latest(run: Path) -> tuple[dict, dict]:
    """(model.safetensors tensors, checkpoint.json) of a run's latest checkpoint."""
    d = run / "checkpoints" / (run / "latest").read_text().strip()
    return load_file(d / "model.safetensors"), json.loads((d / "checkpoint.json").read_text())


@pytest.fixture(scope="module")
def episodes(tmp_path_factory) -> Path:
    return make_episodes(tmp_path_factory.mktemp("eps"))


@pytest.fixture(scope="module")
def one_process_step(tmp_path_factory, episodes) -> tuple[dict, dict]:
    """The reference: one step of the global batch in this process."""
    d = tmp_path_factory.mktemp("ref")
    tr = cli.start(make_recipe(d, "ref"), episodes, d / "run", progress=False)
    tr.fit(until_step=1, progress=False)
    return latest(d / "run")


@pytest.mark.parametrize("parallel, micro_batch", [("ddp", 0), ("fsdp", 0), ("ddp", 2), ("fsdp", 2)],
                         ids=["ddp", "fsdp", "ddp-accumulated", "fsdp-accumulated"])
def test_one_step_on_two_ranks_equals_the_one_process_step(tmp_path, episodes, one_process_step, parallel,
                                                           micro_batch):
    """micro_batch 2 of a per-rank share of 4: two accumulated micro steps per rank."""
    recipe = make_recipe(tmp_path, parallel, parallel=parallel, micro_batch=micro_batch)
    torchrun("--config", str(recipe), "--data", str(episodes), "--run-dir", str(tmp_path / "run"), "--stop-at", "1")
    ref, ref_meta = one_process_step
    got, meta = latest(tmp_path / "run")
    assert meta["step"] == 1 and meta["world_size"] == 2
    h, h_ref = meta["history"][0], ref_meta["history"][0]
    assert h["loss"] == pytest.approx(h_ref["loss"], rel=LOSS_RTOL)
    assert h["grad_norm"] == pytest.approx(h_ref["grad_norm"], rel=GRAD_NORM_RTOL)
    for k in ("loss_policy", "loss_world", "loss_value", "action_l1"):
        assert h[k] == pytest.approx(h_ref[k], rel=1e-5), k
    assert got.keys() == ref.keys()
    for k, v in ref.items():
        assert torch.allclose(got[k], v, rtol=0, atol=WEIGHT_ATOL), (k, (got[k] - v).abs().max())


@pytest.fixture(scope="module")
def bf16_fsdp_run(tmp_path_factory, episodes) -> Path:
    """2 ranks, FSDP, bf16 compute, activation checkpointing, no consolidated weights: 2 steps, a checkpoint each."""
    d = tmp_path_factory.mktemp("bf16")
    recipe = make_recipe(d, "bf16", parallel="fsdp", precision="bf16", activation_checkpointing=True,
                         consolidate_checkpoints=False, checkpoint_every_steps=1)
    torchrun("--config", str(recipe), "--data", str(episodes), "--run-dir", str(d / "run"), "--stop-at", "2")
    return d / "run"


def test_bf16_fsdp_with_activation_checkpointing_trains_with_finite_loss(bf16_fsdp_run):
    ckpt = bf16_fsdp_run / "checkpoints" / "step_000002"
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert [h["step"] for h in meta["history"]] == [1, 2]
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["grad_norm"]) for h in meta["history"])
    assert not (ckpt / "model.safetensors").exists()  # consolidate_checkpoints: false


def test_two_rank_checkpoint_resumes_and_exports_in_one_process(tmp_path, bf16_fsdp_run):
    """DCP reshards the FSDP shards into a plain one-process net; --export gathers the weights from them."""
    tr = cli.resume(bf16_fsdp_run, overrides={"precision": "fp32"})
    assert tr.step == 2 and tr.ranks.world == 1 and tr.ema.num_updates == 2
    out = cli.export(bf16_fsdp_run, tmp_path / "bundle")
    w = load_file(out / "model.safetensors")
    for k, v in tr.model.net.state_dict().items():
        assert torch.equal(w[f"net.{k}"].to(v.dtype), v), k
    for k, v in tr.ema.shadow.items():
        assert torch.equal(w[f"net_ema.{k}"], v), k
    assert any(k.startswith("vae.") for k in w)
    tr.fit(until_step=3, progress=False, checkpoint=False)
    assert tr.step == 3 and math.isfinite(tr.history[-1]["loss"])


def test_activation_checkpointing_gives_the_same_gradients_in_fp32(tmp_path, episodes):
    grads = []
    for ckpt in (False, True):
        recipe = make_recipe(tmp_path, f"ac_{ckpt}", activation_checkpointing=ckpt, precision="fp32")
        tr = cli.start(recipe, episodes, tmp_path / f"run_{ckpt}", progress=False)
        tr.train_step()
        grads.append({n: p.grad.clone() for n, p in tr.model.net.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for n, g in grads[0].items():
        assert torch.allclose(g, grads[1][n], rtol=1e-6, atol=1e-9), n


def test_dataloader_workers_train_the_same_steps(tmp_path, episodes):
    """Steps prepared ahead in worker processes are the steps the training process would have drawn."""
    nets = []
    for workers in (0, 2):
        tr = cli.start(make_recipe(tmp_path, f"w{workers}", num_workers=workers), episodes,
                       tmp_path / f"run_{workers}", progress=False)
        tr.fit(until_step=2, progress=False, checkpoint=False)
        nets.append(tr.model.net.state_dict())
    assert all(torch.equal(v, nets[1][k]) for k, v in nets[0].items())


@pytest.mark.slow
def test_killed_run_resumes_bit_exact_from_its_sharded_checkpoint(tmp_path, episodes):
    recipe = make_recipe(tmp_path, "kill", parallel="fsdp", steps=10, checkpoint_every_steps=2)
    fresh = ("--config", str(recipe), "--data", str(episodes))
    torchrun(*fresh, "--run-dir", str(tmp_path / "whole"))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_torchrun_cmd(*fresh, "--run-dir", str(killed)), env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (killed / "latest").is_file() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks: they share its new session
        proc.wait()
    step_at_kill = int((killed / "latest").read_text().strip().split("_")[1])
    assert step_at_kill < 10, "the run finished before it was killed"
    torchrun("--resume", "--run-dir", str(killed))
    want, want_meta = latest(tmp_path / "whole")
    got, got_meta = latest(killed)
    assert got_meta["step"] == want_meta["step"] == 10
    for k, v in want.items():
        assert torch.equal(got[k], v), k
    strip = lambda hs: [{k: v for k, v in h.items() if k != "elapsed_s"} for h in hs]  # noqa: E731
    assert strip(got_meta["history"]) == strip(want_meta["history"])


class CountingSampleSet:
    """A stand-in sample set: x0 encodes each sample's index, augmentation copy and kind, so slices can be matched."""

    num_aug_copies = 3

    def __len__(self) -> int:
        return 50

    def kinds_for(self, batch: int, mix) -> torch.Tensor:
        n_pol, n_world = round(batch * mix[0]), round(batch * mix[1])
        return torch.tensor([0] * n_pol + [1] * n_world + [2] * (batch - n_pol - n_world))

    def batch(self, index, kinds, value_query="v_sas", aug_copy=None):
        x0 = torch.stack([torch.as_tensor(index, dtype=torch.float32), torch.as_tensor(aug_copy).float(),
                          kinds.float()], 1)[:, :, None, None, None]
        return x0.expand(-1, -1, 7, 1, 1).clone(), torch.zeros(len(index), 7)

    def loss_mask(self, kinds, value_query="v_sas"):
        return None


def test_rank_slices_of_every_step_make_up_the_one_process_batch():
    cfg = train_config_from_dict({"batch_size": 8, "micro_batch": 2, "steps": 5})
    data = CountingSampleSet()
    whole = StepBatches(data, train_config_from_dict({"batch_size": 8, "steps": 5}), 7, rank=0, world=1)
    for step in (0, 3):
        (one,) = whole[step]
        parts = [mb for rank in (0, 1) for mb in StepBatches(data, cfg, 7, rank=rank, world=2)[step]]
        assert len(parts) == 4 and all(len(mb.x0) == 2 for mb in parts)
        for name in ("x0", "noise", "sigma", "kinds", "position"):
            assert torch.equal(torch.cat([getattr(mb, name) for mb in parts]), getattr(one, name)), name
        assert torch.bincount(one.kinds).tolist() == [4, 2, 2]          # 50/25/25 of the global batch
        assert set(one.x0[:, 1, 0, 0, 0].tolist()) <= {0.0, 1.0, 2.0}   # an augmentation copy per sample
    assert not torch.equal(whole[0][0].noise, whole[1][0].noise)


def test_batch_that_does_not_split_into_micro_steps_fails_in_one_line():
    with pytest.raises(ConfigError, match=r"^train.batch_size 8 / \(2 ranks x micro_batch 3\) is not a whole"):
        micro_layout(8, 3, 2)
    with pytest.raises(ConfigError, match="does not split over 3 ranks"):
        micro_layout(8, 0, 3)
    with pytest.raises(ConfigError, match=r"train: parallel must be none \| ddp \| fsdp, got 'zero'"):
        train_config_from_dict({"parallel": "zero"}, "x.yaml")
    with pytest.raises(ConfigError, match="activation_checkpointing: expected true or false"):
        train_config_from_dict({"activation_checkpointing": 1}, "x.yaml")
