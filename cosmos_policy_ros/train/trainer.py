"""The training loop: balanced policy/world/value batches, AdamW + warm-up/linear-decay LR, EMA, checkpoints
(time- and step-based), tqdm progress, loss history and plot; one process or torchrun's ranks; resumes bit-exact.

  one process            the net as is, micro batches of train.micro_batch (default: the whole batch)
  torchrun, N ranks      DDP or FSDP2 (train.parallel, parallel.py); train.batch_size is the global batch,
                         each rank takes its slice of every step's plan (step_batches.py)

Bit-exact resume: every random draw of step s is a function of (seed, s) (step_batches.py), LR is a pure
function of the step, and the checkpoint holds weights, AdamW state, EMA and step (dist_checkpoint.py).
Same machine, world size and thread count -> same numbers.
"""
from __future__ import annotations

import dataclasses
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
from . import dist_checkpoint as dck
from . import distributed, parallel
from .batch_metrics import sample_rows, summarize
from .config import TrainConfig, train_config_to_dict
from .dataset import LatentSampleSet
from .ema import EMA
from .objective import diffusion_loss
from .prepare import inference_preprocessing
from .step_batches import MicroBatch, StepBatches, step_generator, step_loader


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
        """Builds no collective (rank 0 may still be preparing the dataset while the others build theirs)."""
        self.model = model
        self.cfg = cfg
        self.data = data
        self.run = Path(run_dir)
        self.stats = stats
        self.instruction = instruction
        self.ranks = distributed.current()
        if self.ranks.world > 1 and cfg.parallel == "none":
            raise ValueError(f"train.parallel none under torchrun with {self.ranks.world} ranks would train "
                             f"{self.ranks.world} separate models: set train.parallel to ddp or fsdp")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model.net.to(self.device).float().train()
        model.vae.to(self.device).eval()
        self.context = context.to(self.device)  # (L, D)
        self.engine = parallel.build(model.net, cfg, self.ranks, self.device)
        self.opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas),
                                     weight_decay=cfg.weight_decay, eps=1e-8)
        self.ema = EMA(model.net, cfg.ema_decay)
        self.batches = StepBatches(data, cfg, model.layout.num_frames, self.ranks.rank, self.ranks.world)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict] = []
        self.init_from: str | None = None   # parent bundle of a fine-tuning run

    @property
    def rng(self) -> np.random.Generator:
        """The numpy generator of the next step's draws: a function of (seed, step), never stored."""
        return step_generator(self.cfg.seed, self.step)

    # ------------------------------------------------------------------ one step

    def train_step(self, micro_batches: list[MicroBatch] | None = None) -> dict[str, float]:
        """One optimizer step over this rank's micro batches of the current step (planned here if not given)."""
        cfg = self.cfg
        micro = micro_batches if micro_batches is not None else self.batches[self.step]
        for g in self.opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(self.step, cfg)
        self.opt.zero_grad(set_to_none=True)
        rows = []
        for j, mb in enumerate(micro):
            with self.engine.gradient_sync(last_micro_step=j == len(micro) - 1):
                rows.append(self._forward_backward(mb))
        gnorm = parallel.clip_grad_norm(self.model.net.parameters(), cfg.grad_clip)
        self.opt.step()
        self.ema.update(self.model.net)
        self.step += 1
        out = summarize(distributed.gather_rows(torch.cat(rows)))
        out.update(grad_norm=gnorm, lr=self.opt.param_groups[0]["lr"])
        return out

    def _forward_backward(self, mb: MicroBatch) -> torch.Tensor:
        """Backward of this micro batch's share of the global mean loss; -> its per-sample metric rows."""
        x0, mask, sigma, noise = (t.to(self.device) for t in (mb.x0, mb.cond_mask, mb.sigma, mb.noise))
        loss_mask = None if mb.loss_mask is None else mb.loss_mask.to(self.device)
        n = len(x0)
        ctx = self.context[None].expand(n, *self.context.shape)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.engine.autocast):
            loss, per_sample, pred = diffusion_loss(self.engine.module, x0, mask, ctx, sigma, noise,
                                                    self.cfg.loss_scale, self.model.cfg.sigma_data, loss_mask)
        # mean over n -> sum over the global batch / B; DDP and FSDP average over the ranks (x world back)
        (loss * (n * self.ranks.world / self.cfg.batch_size)).backward()
        return sample_rows(pred.float(), x0.float(), mb.kinds, per_sample, mb.position, self.model.layout)

    # ------------------------------------------------------------------ loop

    def fit(self, until_step: int | None = None, time_budget_s: float | None = None, progress: bool = True,
            checkpoint: bool = True) -> None:
        cfg = self.cfg
        until = min(until_step or cfg.steps, cfg.steps)
        last_ckpt = time.time()
        bar = tqdm(total=until, initial=self.step, desc="train", disable=not (progress and self.ranks.main),
                   dynamic_ncols=True)
        t_start, e_start = time.time(), self.elapsed
        window: list[dict] = []
        for micro in step_loader(self.batches, self.step, until, cfg.num_workers):
            m = self.train_step(micro)
            self.elapsed = e_start + (time.time() - t_start)
            window.append(m)
            if self.step % cfg.log_every == 0 or self.step == until:
                avg = {k: float(np.mean([w[k] for w in window if k in w])) for k in window[-1]}
                avg.update(step=self.step, elapsed_s=round(self.elapsed, 2))
                self.history.append(avg)
                window = []
                bar.set_postfix(loss=f"{avg['loss']:.3f}", act_l1=f"{avg.get('action_l1', float('nan')):.3f}")
            bar.update(1)
            # clock-based decisions are taken together, or one rank would wait in a save the others skip
            due, out_of_time = distributed.any_rank(
                [time.time() - last_ckpt >= cfg.checkpoint_every_s,
                 time_budget_s is not None and self.elapsed - e_start >= time_budget_s], self.device)
            due = due or (cfg.checkpoint_every_steps > 0 and self.step % cfg.checkpoint_every_steps == 0)
            if checkpoint and (due or self.step == until or out_of_time):
                self.save()
                last_ckpt = time.time()
            if out_of_time:
                break
        bar.close()

    # ------------------------------------------------------------------ checkpoints

    def meta(self) -> dict:
        return {"step": self.step, "elapsed_s": self.elapsed, "ema_updates": self.ema.num_updates,
                "world_size": self.ranks.world, "model": config_to_dict(self.model.cfg),
                "train": train_config_to_dict(self.cfg), "stats": self.stats, "instruction": self.instruction,
                "history": self.history, "init_from": self.init_from,
                # how frames must reach this checkpoint's model when it is deployed as it is (resize, crop, the
                # test-time centre crop after augmented training): deploy.bundle reads it as for an export
                "preprocess": dataclasses.asdict(inference_preprocessing(self.cfg)),
                # the gripper constants that normalised the episodes (deploy/bundle.py checks them at load)
                "gripper_convention": AlohaRobot.from_yaml(self.cfg.robot_config).config.gripper.convention_record()}

    def save(self, ckpt_dir: Path | None = None) -> Path:
        """Every rank: its shards of the state; rank 0: the full weights (if consolidated), JSON, plot, latest."""
        d = ckpt_dir or (self.run / "checkpoints" / f"step_{self.step:06d}")
        d.mkdir(parents=True, exist_ok=True)
        net, vae = self.model.net, self.model.vae
        dck.save(d, net, self.opt, self.ema.state_dict(), vae)
        if self.cfg.consolidate_checkpoints:
            net_sd, ema_sd = dck.full_weights(net, self.ema.state_dict())
            if self.ranks.main:
                ck.write_model(d / ck.MODEL_FILE, ck.model_tensors(net_sd, vae.state_dict(), ema_sd),
                               config_to_dict(self.model.cfg))
        if self.ranks.main:
            T5EmbeddingStore({self.instruction: self.context.cpu()}).save(d / ck.EMBED_FILE)
            plot_history(self.history, self.run / "loss.png")
            ck.publish(d, self.meta(), self.run)
        distributed.barrier()  # nobody runs ahead of a checkpoint rank 0 has not yet published
        return d

    def load_state(self, ckpt_dir: str | Path) -> None:
        d = Path(ckpt_dir)
        if not dck.has_state(d):
            raise ValueError(f"{d}: no sharded training state ({dck.STATE_DIR}/; written before torchrun support?):"
                             " it cannot be resumed, but --export still bundles it")
        meta = ck.read_meta(d)
        dck.load(d, self.model.net, self.opt, self.ema.state_dict(), self.model.vae)
        self.ema.num_updates = int(meta["ema_updates"])
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


def consolidated_weights(ckpt_dir: Path, meta: dict) -> dict[str, torch.Tensor]:
    """The model.safetensors tensors (net, net_ema, vae) of a checkpoint, read from its sharded state alone."""
    model = build_for_run(meta["model"], 0, "cpu")
    ema = EMA(model.net, 0.0)
    dck.load_weights(Path(ckpt_dir), model.net, ema.state_dict(), model.vae)
    return ck.model_tensors(model.net.state_dict(), model.vae.state_dict(), ema.state_dict())
