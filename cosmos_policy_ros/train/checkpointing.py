"""Training checkpoints: weights + optimizer + EMA + RNG states + step, for bit-exact resume.

<run>/checkpoints/step_<n>/
  model.safetensors        net.* (raw), net_ema.* (EMA), vae.*  - loadable by the inference engine
  train_state.safetensors  optimizer moments, torch RNG state
  checkpoint.json          step, elapsed time, numpy RNG state, optimizer scalars, model + train config,
                           dataset statistics, instruction, loss history
<run>/latest               name of the newest complete checkpoint (written last: a crash mid-save
                           leaves the previous one in charge)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"
META_FILE = "checkpoint.json"
EMBED_FILE = "instruction_embeddings.pt"


def model_tensors(net, vae, ema_state: dict | None) -> dict[str, torch.Tensor]:
    sd = {"net." + k: v.detach().float().contiguous() if v.is_floating_point() else v.detach().contiguous()
          for k, v in net.state_dict().items()}
    if ema_state is not None:
        sd.update({"net_ema." + k: v.detach().contiguous() for k, v in ema_state.items()})
    sd.update({"vae." + k: v.detach().float().contiguous() for k, v in vae.state_dict().items()})
    return {k: v.cpu() for k, v in sd.items()}


def optimizer_tensors(opt: torch.optim.Optimizer, names: dict[int, str]) -> tuple[dict, dict]:
    """AdamW state -> ({key: tensor}, {json scalars}) keyed by parameter name (robust to ordering)."""
    tensors, scalars = {}, {}
    for group in opt.param_groups:
        for p in group["params"]:
            st = opt.state.get(p, {})
            name = names[id(p)]
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"opt.{name}.{k}"] = v.detach().cpu().contiguous()
                else:
                    scalars[f"{name}.{k}"] = v
    return tensors, scalars


def load_optimizer(opt: torch.optim.Optimizer, named_params: dict[str, torch.nn.Parameter],
                   tensors: dict, scalars: dict) -> None:
    for name, p in named_params.items():
        st = {}
        prefix = f"opt.{name}."
        for k, v in tensors.items():
            if k.startswith(prefix):
                st[k[len(prefix):]] = v.to(p.device)
        for k, v in scalars.items():
            if k.startswith(name + "."):
                st[k[len(name) + 1:]] = v
        if st:
            opt.state[p] = st


def write_checkpoint(ckpt_dir: Path, model_sd: dict, state_sd: dict, meta: dict, run_dir: Path) -> Path:
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    save_file(model_sd, str(ckpt_dir / MODEL_FILE), metadata={"config": json.dumps(meta["model"])})
    save_file(state_sd, str(ckpt_dir / STATE_FILE))
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


def read_checkpoint(ckpt_dir: str | Path) -> tuple[dict, dict, dict]:
    d = Path(ckpt_dir)
    if not (d / META_FILE).is_file():
        raise FileNotFoundError(f"{d}: not a training checkpoint ({META_FILE} missing)")
    return load_file(str(d / MODEL_FILE)), load_file(str(d / STATE_FILE)), json.loads((d / META_FILE).read_text())
