"""The training loop: balanced policy/world/value batches, AdamW + warm-up/linear-decay LR, EMA,
time-based checkpoints, tqdm progress, loss history and plot; resumes bit-exact.

Bit-exact resume: every random draw comes from a numpy Generator (sample indices, sigmas) or a
torch Generator (noise) whose states are checkpointed with the weights, optimizer moments, EMA
and step; LR is a pure function of the step. Same machine and thread count -> same numbers.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cosmos_policy_ros.model.config import ModelConfig, config_to_dict, model_config_from_dict
from cosmos_policy_ros.model.policy_model import CosmosPolicyModel
from cosmos_policy_ros.model.text import T5EmbeddingStore
from cosmos_policy_ros.robot.aloha import AlohaRobot

from . import checkpointing as ck
from .config import TrainConfig, train_config_to_dict
from .dataset import LatentSampleSet
from .ema import EMA
from .noise import draw_sigma
from .objective import diagnostics, diffusion_loss


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from 1e-6 to 1, then linear decay to final_lr_factor at cfg.steps (upstream LambdaLinear)."""
    if step < cfg.warmup_steps:
        return 1e-6 + (1 - 1e-6) * step / max(1, cfg.warmup_steps)
    span = max(1, cfg.steps - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    return 1.0 + (cfg.final_lr_factor - 1.0) * frac


class Trainer:
    def __init__(self, model: CosmosPolicyModel, data: LatentSampleSet, context: torch.Tensor, cfg: TrainConfig,
                 run_dir: str | Path, stats: dict, instruction: str, device: str | None = None):
        self.model = model
        self.cfg = cfg
        self.data = data
        self.run = Path(run_dir)
        self.stats = stats
        self.instruction = instruction
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.amp = self.device.type == "cuda"
        model.net.to(self.device).float().train()
        model.vae.to(self.device).eval()
        self.context = context.to(self.device)  # (L, D)
        self.named = dict(model.net.named_parameters())
        self.names = {id(p): n for n, p in self.named.items()}
        self.opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                                     weight_decay=cfg.weight_decay, eps=1e-8)
        self.ema = EMA(model.net, cfg.ema_decay)
        self.rng = np.random.Generator(np.random.PCG64(cfg.seed))
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict] = []
        self.init_from: str | None = None   # parent bundle of a fine-tuning run

    # ------------------------------------------------------------------ one step

    def train_step(self) -> dict[str, float]:
        cfg, lay = self.cfg, self.model.layout
        B = cfg.batch_size
        index = self.rng.integers(0, len(self.data), B)
        kinds = self.data.kinds_for(B, cfg.mix)
        x0, mask = self.data.batch(index, kinds, cfg.value_query)
        loss_mask = self.data.loss_mask(kinds, cfg.value_query)
        sigma = draw_sigma(B, self.rng, cfg, lay.num_frames)
        noise = torch.randn(x0.shape, generator=self.gen)
        x0, mask, sigma, noise = (t.to(self.device) for t in (x0, mask, sigma, noise))
        loss_mask = None if loss_mask is None else loss_mask.to(self.device)
        ctx = self.context[None].expand(B, *self.context.shape)
        for g in self.opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(self.step, cfg)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss, per_sample, pred = diffusion_loss(self.model.net, x0, mask, ctx, sigma, noise,
                                                    cfg.loss_scale, self.model.cfg.sigma_data, loss_mask)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.net.parameters(), cfg.grad_clip)
        self.opt.step()
        self.ema.update(self.model.net)
        self.step += 1
        out = {"loss": float(loss.detach()), "grad_norm": float(gnorm), "lr": self.opt.param_groups[0]["lr"]}
        out.update(diagnostics(pred.float(), x0.float(), kinds.to(self.device), per_sample, lay))
        return out

    # ------------------------------------------------------------------ loop

    def fit(self, until_step: int | None = None, time_budget_s: float | None = None, progress: bool = True,
            checkpoint: bool = True) -> None:
        cfg = self.cfg
        until = min(until_step or cfg.steps, cfg.steps)
        last_ckpt = time.time()
        bar = tqdm(total=until, initial=self.step, desc="train", disable=not progress, dynamic_ncols=True)
        t_start, e_start = time.time(), self.elapsed
        window: list[dict] = []
        while self.step < until:
            m = self.train_step()
            self.elapsed = e_start + (time.time() - t_start)
            window.append(m)
            if self.step % cfg.log_every == 0 or self.step == until:
                avg = {k: float(np.mean([w[k] for w in window if k in w])) for k in window[-1]}
                avg.update(step=self.step, elapsed_s=round(self.elapsed, 2))
                self.history.append(avg)
                window = []
                bar.set_postfix(loss=f"{avg['loss']:.3f}", act_l1=f"{avg.get('action_l1', float('nan')):.3f}")
            bar.update(1)
            out_of_time = time_budget_s is not None and self.elapsed - e_start >= time_budget_s
            if checkpoint and (time.time() - last_ckpt >= cfg.checkpoint_every_s or self.step == until or out_of_time):
                self.save()
                last_ckpt = time.time()
            if out_of_time:
                break
        bar.close()

    # ------------------------------------------------------------------ checkpoints

    def meta(self) -> dict:
        return {"step": self.step, "elapsed_s": self.elapsed, "ema_updates": self.ema.num_updates,
                "numpy_rng": self.rng.bit_generator.state, "model": config_to_dict(self.model.cfg),
                "train": train_config_to_dict(self.cfg), "stats": self.stats, "instruction": self.instruction,
                "history": self.history, "init_from": self.init_from,
                # the gripper constants that normalised the episodes (deploy/bundle.py checks them at load)
                "gripper_convention": AlohaRobot.from_yaml(self.cfg.robot_config).config.gripper.convention_record()}

    def save(self, ckpt_dir: Path | None = None) -> Path:
        d = ckpt_dir or (self.run / "checkpoints" / f"step_{self.step:06d}")
        model_sd = ck.model_tensors(self.model.net, self.model.vae, self.ema.state_dict())
        opt_t, opt_s = ck.optimizer_tensors(self.opt, self.names)
        state = dict(opt_t)
        state["torch_rng"] = self.gen.get_state()
        meta = self.meta()
        meta["optimizer_scalars"] = opt_s
        ck.write_checkpoint(d, model_sd, state, meta, self.run)
        emb = d / ck.EMBED_FILE
        T5EmbeddingStore({self.instruction: self.context.cpu()}).save(emb)
        plot_history(self.history, self.run / "loss.png")
        return d

    def load_state(self, ckpt_dir: str | Path) -> None:
        model_sd, state, meta = ck.read_checkpoint(ckpt_dir)
        net_sd = {k[4:]: v for k, v in model_sd.items() if k.startswith("net.")}
        self.model.net.load_state_dict(net_sd)
        self.model.vae.load_state_dict({k[4:]: v for k, v in model_sd.items() if k.startswith("vae.")})
        self.ema.load_state_dict({k[8:]: v for k, v in model_sd.items() if k.startswith("net_ema.")},
                                 meta["ema_updates"])
        ck.load_optimizer(self.opt, self.named, {k: v for k, v in state.items() if k.startswith("opt.")},
                          meta.get("optimizer_scalars", {}))
        self.gen.set_state(state["torch_rng"])
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.step = int(meta["step"])
        self.elapsed = float(meta["elapsed_s"])
        self.history = list(meta["history"])

def _log_axis(ax, title: str) -> None:
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    ax.set_title(title)


def plot_history(history: list[dict], path: Path) -> None:
    """Loss (total and per kind) and action L1 vs step, as PNG."""
    if not history:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for k in ("loss", "loss_policy", "loss_world", "loss_value"):
        if k in history[-1]:
            ax[0].plot(steps, [h.get(k, math.nan) for h in history], label=k)
    _log_axis(ax[0], "diffusion loss")
    for k in ("action_l1", "future_proprio_l1", "value_l1"):
        if k in history[-1]:
            ax[1].plot(steps, [h.get(k, math.nan) for h in history], label=k)
    _log_axis(ax[1], "x0 read-back L1 (normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def build_for_run(model_cfg: ModelConfig | dict, seed: int, device=None) -> CosmosPolicyModel:
    if isinstance(model_cfg, dict):
        model_cfg = model_config_from_dict(model_cfg)
    model = CosmosPolicyModel.build(model_cfg, device=device or "cpu", dtype=torch.float32, seed=seed)
    from .init import init_for_training
    init_for_training(model.net, torch.Generator().manual_seed(seed))
    return model
