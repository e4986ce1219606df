"""`cosmos-aloha train`: prepare (encode) the demos, train the DiT, checkpoint, resume, export a bundle.

    cosmos-aloha train --config config/train/sim_small.yaml --data DEMO_DIR --run RUN_DIR [--minutes M]
    cosmos-aloha train --config config/train/sim_small_planning.yaml --init-from BUNDLE \
        --data DEMO_DIR ROLLOUT_DIR --run RUN_DIR     fine-tune world model + value on rollouts
    cosmos-aloha train --run RUN_DIR --resume [--minutes M]       continue from RUN_DIR/latest
    cosmos-aloha train --run RUN_DIR --export OUT_DIR             bundle the latest checkpoint for inference
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import torch

from cosmos_policy_ros.deploy.bundle import resolve_bundle
from cosmos_policy_ros.errors import EXPECTED_ERRORS, one_line, run_main
from cosmos_policy_ros.model import checkpoint as model_ckpt
from cosmos_policy_ros.model.config import ModelConfig, config_to_dict, model_config_from_dict
from cosmos_policy_ros.robot.aloha import AlohaRobot

from . import checkpointing as ck
from .config import load_recipe, train_config_from_dict
from .instruction_embeddings import stand_in_embedding
from .prepare import prepare_dataset, sample_set
from .trainer import Trainer, build_for_run


def _context(cfg, instruction: str) -> torch.Tensor:
    return stand_in_embedding(instruction, cfg.text_len, cfg.dit.crossattn_emb_channels)


def start(config: str | Path, data, run: str | Path, overrides: dict | None = None,
          device: str | None = None, progress: bool = True, init_from: str | Path | None = None,
          encode_only: bool = False) -> Trainer | None:
    """Fresh run: build (seeded), encode the episodes into the run dir, return a ready Trainer.

    data: one episode directory or several (demos + rollouts). init_from: a bundle or checkpoint
    whose model config, weights (EMA), VAE and statistics the run starts from (fine-tuning, e.g.
    the planning model's world/value objectives on policy rollouts).
    """
    parent = None
    if init_from:
        parent = Parent.load(init_from)
        mcfg, tcfg = parent.model_cfg, load_recipe(config, model_optional=True)[1]
    else:
        mcfg, tcfg = load_recipe(config)
    if overrides:
        tcfg = dataclasses.replace(tcfg, **overrides)
        tcfg.validate()
    torch.set_num_threads(tcfg.threads)
    model = build_for_run(mcfg, tcfg.seed, "cpu")
    if parent:
        parent.load_into(model)
    origin = str(parent.path) if parent else None
    # the latent cache (RUN/latents) re-encodes only what changed; encode_only: stop once it is complete
    new_cfg, stats, instruction = prepare_dataset(
        data, run, mcfg, tcfg, model, progress=progress, inherited_stats=parent.stats if parent else None,
        init_from=origin, device=device)
    if parent and instruction != parent.instruction:
        raise ValueError(f"episodes say {instruction!r} but {parent.path} was trained on {parent.instruction!r}")
    if encode_only:
        return None
    model.cfg = new_cfg
    model.vae.latent_mean.copy_(torch.tensor(new_cfg.vae.latent_mean))
    model.vae.latent_std.copy_(torch.tensor(new_cfg.vae.latent_std))
    data_set = sample_set(run, config_to_dict(new_cfg))
    tr = Trainer(model, data_set, _context(new_cfg, instruction), tcfg, run, stats, instruction, device)
    tr.init_from = origin  # the EMA starts from the loaded weights (Trainer builds it from the net)
    return tr


class Parent:
    """A bundle or training checkpoint a fine-tuning run starts from (resolved like the nodes do)."""

    def __init__(self, path: Path, model_cfg: ModelConfig, stats: dict, instruction: str,
                 weights: dict[str, torch.Tensor], weights_file: Path | None = None):
        self.path, self.model_cfg, self.stats, self.instruction, self.weights = (
            path, model_cfg, stats, instruction, weights)
        self.weights_file = weights_file or path

    @classmethod
    def load(cls, path: str | Path) -> "Parent":
        # run folder -> latest; policy.json or checkpoint.json; stats inline or beside; a bare weights
        # file is refused there in one line (it carries no model config or statistics). A truncated or
        # foreign weights file: CheckpointError naming it.
        b = resolve_bundle(path)
        return cls(b.weights.parent, b.model_config, b.stats, b.instruction, model_ckpt.read_state_dict(b.weights),
                   b.weights)

    def load_into(self, model) -> None:
        """Net <- the parent's EMA weights (its deployed ones; raw weights if it has no EMA), VAE <- its VAE.

        Weights that do not fit the parent's own model config: CheckpointError naming the first bad key.
        """
        sd = {k[4:]: v for k, v in self.weights.items() if k.startswith("net.")}
        sd.update({k[8:]: v for k, v in self.weights.items() if k.startswith("net_ema.")})  # floats only
        vae = {k[4:]: v for k, v in self.weights.items() if k.startswith("vae.")}
        for module, part in ((model.net, sd), (model.vae, vae)):
            model_ckpt.check_state_dict(module, part, str(self.weights_file), optional=())
        model.net.load_state_dict(sd)
        model.vae.load_state_dict(vae)


def resume(run: str | Path, device: str | None = None, overrides: dict | None = None) -> Trainer:
    """Rebuild a Trainer from RUN/latest (weights, optimizer, EMA, RNG states, step, history)."""
    d = ck.latest_checkpoint(run)
    if d is None:
        raise FileNotFoundError(f"{run}: no checkpoint to resume (RUN/latest missing)")
    _, _, meta = ck.read_checkpoint(d)
    mcfg = model_config_from_dict(meta["model"], str(d))
    tdict = dict(meta["train"])
    tdict.update(overrides or {})
    tcfg = train_config_from_dict(tdict, str(d))
    torch.set_num_threads(tcfg.threads)
    model = build_for_run(mcfg, tcfg.seed, "cpu")
    tr = Trainer(model, sample_set(run, meta["model"]), _context(mcfg, meta["instruction"]), tcfg, run,
                 meta["stats"], meta["instruction"], device)
    tr.load_state(d)
    tr.init_from = meta.get("init_from")
    return tr


def export(run: str | Path, out: str | Path, ckpt: str | Path | None = None) -> Path:
    """Inference bundle: model.safetensors (net, net_ema, vae), policy.json, statistics, embeddings, loss plot."""
    d = Path(ckpt) if ckpt else ck.latest_checkpoint(run)
    if d is None:
        raise FileNotFoundError(f"{run}: no checkpoint to export")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((d / ck.META_FILE).read_text())
    shutil.copy2(d / ck.MODEL_FILE, out / ck.MODEL_FILE)
    shutil.copy2(d / ck.EMBED_FILE, out / ck.EMBED_FILE)
    (out / "dataset_statistics.json").write_text(json.dumps(meta["stats"], indent=1))
    policy = {k: meta[k] for k in ("model", "train", "instruction", "step", "elapsed_s")}
    policy["init_from"] = meta.get("init_from")
    policy["files"] = {"checkpoint": ck.MODEL_FILE, "stats": "dataset_statistics.json",
                       "t5_embeddings": ck.EMBED_FILE, "ema": True}
    # one action per control step of the episodes (ALOHA HDF5: 50 Hz); deployment plays them at this period
    policy["action_period_s"] = meta.get("action_period_s", AlohaRobot.from_yaml().dt)
    policy["center_crop"] = False  # training resized whole frames
    # the gripper constants that normalised the episodes: nodes refuse a robot config with other ones
    policy["gripper_convention"] = meta.get("gripper_convention") or AlohaRobot.from_yaml(
        train_config_from_dict(meta["train"], str(d)).robot_config).config.gripper.convention_record()
    (out / "policy.json").write_text(json.dumps(policy, indent=1))
    (out / "history.json").write_text(json.dumps(meta["history"]))
    if (Path(run) / "loss.png").is_file():
        shutil.copy2(Path(run) / "loss.png", out / "loss.png")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cosmos-aloha train", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="config/train/<recipe>.yaml (fresh run)")
    p.add_argument("--data", nargs="+", help="directories of ALOHA HDF5 episodes (fresh run), e.g. demos and rollouts")
    p.add_argument("--init-from", metavar="BUNDLE",
                   help="start from this bundle/checkpoint's weights, VAE and statistics")
    p.add_argument("--run", required=True, help="run directory (dataset cache, checkpoints, loss.png)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this much training time")
    p.add_argument("--stop-at", type=int,
                   help="stop (with a checkpoint) at this step; the LR schedule still spans train.steps")
    p.add_argument("--max-episodes", type=int)
    p.add_argument("--device")
    p.add_argument("--export", metavar="OUT_DIR", help="export the latest checkpoint as an inference bundle")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--encode-only", action="store_true",
                   help="fill the run's latent cache (on --device) and stop; a later run with --run reuses it")
    ns = p.parse_args(argv)
    try:
        if ns.export:
            print(f"exported {export(ns.run, ns.export)}")
            return 0
        over = {k: v for k, v in (("steps", ns.steps), ("max_episodes", ns.max_episodes)) if v is not None}
        if ns.resume:
            tr = resume(ns.run, ns.device, over)
        else:
            if not ns.config or not ns.data:
                p.error("a fresh run needs --config and --data (or --resume)")
            tr = start(ns.config, ns.data, ns.run, over, ns.device, progress=not ns.no_progress,
                       init_from=ns.init_from, encode_only=ns.encode_only)
            if tr is None:
                print(f"encoded the latent cache of {ns.run}")
                return 0
        tr.fit(until_step=ns.stop_at, time_budget_s=ns.minutes * 60 if ns.minutes else None,
               progress=not ns.no_progress)
        last = tr.history[-1] if tr.history else {}
        print(f"step {tr.step}, {tr.elapsed:.0f} s, loss {last.get('loss', float('nan')):.4f}, "
              f"checkpoint {ck.latest_checkpoint(ns.run)}")
        return 0
    except (ValueError, *EXPECTED_ERRORS) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(run_main(main, prog="cosmos-aloha train", code=2))
