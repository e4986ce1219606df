"""Training checkpoint folders: the sharded training state, the weights the evaluation loads, and `latest`.

<run>/checkpoints/step_<n>/
  state/                      DCP: weights, AdamW state, EMA, VAE - every rank's shards (dist_checkpoint.py)
  model.safetensors           net.* (raw), net_ema.* (EMA), vae.* as full tensors: what the evaluation and
                              deploy.bundle load (written by rank 0 unless train.consolidate_checkpoints is
                              false; `cosmos-aloha train --export` builds it from state/ if missing)
  checkpoint.json             step, elapsed time, EMA update count, world size, model + train config,
                              dataset statistics, instruction, loss history
  instruction_embeddings.pt   the instruction's text embedding
<run>/latest                  name of the newest complete checkpoint (written last, atomically: a crash
                              mid-save leaves the previous one in charge)

No RNG state is stored: every random draw of step s is a function of (seed, s) (step_batches.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

MODEL_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
EMBED_FILE = "instruction_embeddings.pt"


def model_tensors(net_sd: dict, vae_sd: dict, ema_sd: dict | None) -> dict[str, torch.Tensor]:
    """Full state dicts -> the flat net.* / net_ema.* / vae.* tensors of model.safetensors (floats as fp32)."""
    sd = {"net." + k: v.detach().float().contiguous() if v.is_floating_point() else v.detach().contiguous()
          for k, v in net_sd.items()}
    if ema_sd is not None:
        sd.update({"net_ema." + k: v.detach().contiguous() for k, v in ema_sd.items()})
    sd.update({"vae." + k: v.detach().float().contiguous() for k, v in vae_sd.items()})
    return {k: v.cpu() for k, v in sd.items()}


def write_model(path: Path, model_sd: dict, model_cfg: dict) -> None:
    save_file(model_sd, str(path), metadata={"config": json.dumps(model_cfg)})


def publish(ckpt_dir: Path, meta: dict, run_dir: Path) -> Path:
    """checkpoint.json, then <run>/latest -> ckpt_dir: call after everything else of the checkpoint is on disk."""
    (ckpt_dir / META_FILE).write_text(json.dumps(meta, indent=1))
    tmp = run_dir / "latest.tmp"
    tmp.write_text(ckpt_dir.name)
    os.replace(tmp, run_dir / "latest")
    return ckpt_dir


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    run = Path(run_dir)
    f = run / "latest"
    if not f.is_file():
        return None
    d = run / "checkpoints" / f.read_text().strip()
    return d if (d / META_FILE).is_file() else None


def read_meta(ckpt_dir: str | Path) -> dict:
    d = Path(ckpt_dir)
    if not (d / META_FILE).is_file():
        raise FileNotFoundError(f"{d}: not a training checkpoint ({META_FILE} missing)")
    return json.loads((d / META_FILE).read_text())
