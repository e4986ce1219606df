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
from cosmos_policy_ros.robot.scheduler import actions_per_chunk_error

from . import checkpointing as ck
from . import distributed, memory_plan
from .config import load_recipe, train_config_from_dict
from .instruction_embeddings import check_instructions, context_file, instructions_of, training_context
from .prepare import episode_files, inference_preprocessing, prepare_dataset, sample_set
from .trainer import Trainer, build_for_run, consolidated_weights


def _context(cfg: ModelConfig, instruction: str, t5_file: Path | None = None) -> torch.Tensor:
    """(L, D) context the run trains with: the instruction's entry of `t5_file` (a T5 file; a checkpoint's
    instruction_embeddings.pt on resume), or the stand-in embedding when None (small sim models)."""
    return training_context(instruction, cfg.text_len, cfg.dit.crossattn_emb_channels, t5_file)


def start(config: str | Path, data, run: str | Path, overrides: dict | None = None,
          device: str | None = None, progress: bool = True, init_from: str | Path | None = None,
          encode_only: bool = False) -> Trainer | None:
    """Fresh run: build (seeded), encode the episodes into the run dir, return a ready Trainer.

    data: one episode directory or several (demos + rollouts). init_from: a bundle, checkpoint or upstream's
    released folder whose model config, weights (EMA), VAE and statistics the run starts from (fine-tuning the
    released 2B model on a lab's recordings; the planning model's world/value objectives on policy rollouts).
    The context is the T5 embedding of the episodes' instruction (train.t5_embeddings, else the parent's T5
    file); without either, the stand-in embedding (from-scratch sim models).
    """
    rcfg, tcfg = load_recipe(config, model_optional=bool(init_from))
    parent = Parent.load(init_from, rcfg) if init_from else None
    mcfg = parent.model_cfg if parent else rcfg
    if overrides:
        tcfg = dataclasses.replace(tcfg, **overrides)
        tcfg.validate()
    t5_file = context_file(tcfg.t5_embeddings, Path(config), parent.t5_embeddings if parent else None)
    if t5_file is not None:  # before the encoding: a missing instruction is one line naming it and the fix
        check_instructions(instructions_of(episode_files(data, tcfg.max_episodes)), t5_file)
    torch.set_num_threads(tcfg.threads)
    model = build_for_run(mcfg, tcfg.seed, "cpu")
    if parent:
        parent.load_into(model)
    origin = str(parent.path) if parent else None
    # the latent cache (RUN/latents) re-encodes only what changed; encode_only: stop once it is complete
    new_cfg, stats, instruction = prepare_dataset(
        data, run, mcfg, tcfg, model, progress=progress, inherited_stats=parent.stats if parent else None,
        init_from=origin, device=device)
    if encode_only:
        return None
    model.cfg = new_cfg
    model.vae.latent_mean.copy_(torch.tensor(new_cfg.vae.latent_mean))
    model.vae.latent_std.copy_(torch.tensor(new_cfg.vae.latent_std))
    data_set = sample_set(run, config_to_dict(new_cfg))
    tr = Trainer(model, data_set, _context(new_cfg, instruction, t5_file), tcfg, run, stats, instruction, device)
    tr.init_from = origin  # the EMA starts from the loaded weights (Trainer builds it from the net)
    return tr


class Parent:
    """What a fine-tuning run starts from, resolved as the nodes resolve it (deploy.bundle.resolve_bundle).

    Our bundle / training checkpoint / run folder: model config, statistics, instruction and weights (net, EMA,
    VAE) from its files. Upstream's released folder (model/released.py): the DiT .pt (bf16, TE extra state),
    the Wan2.1 tokenizer.pth as the VAE, aloha_dataset_statistics.json and aloha_t5_embeddings.pkl; it holds
    no model config, so the recipe's `model:` (if any) or config/model/cosmos_policy_2b_aloha.yaml describes it,
    with Wan2.1's published latent statistics, which the run keeps (statistics are inherited, not measured).
    """

    def __init__(self, *, path: Path, model_cfg: ModelConfig, stats: dict, instruction: str, t5_embeddings: Path,
                 weights_file: Path, tokenizer: Path | None, released: bool):
        self.path, self.model_cfg, self.stats, self.instruction = path, model_cfg, stats, instruction
        self.t5_embeddings, self.weights_file, self.tokenizer, self.released = (
            t5_embeddings, weights_file, tokenizer, released)

    @classmethod
    def load(cls, path: str | Path, model_cfg: ModelConfig | None = None) -> "Parent":
        """Resolve `path`; `model_cfg` (the recipe's model) describes a released folder, which carries none.

        Run folder -> latest; policy.json or checkpoint.json; stats inline or beside; a released folder's
        missing file: one line naming it and where to download it; a bare weights file of ours is refused
        (it carries no model config or statistics).
        """
        b = resolve_bundle(path)
        released = b.meta_file is None
        cfg = model_cfg if released and model_cfg is not None else b.model_config
        return cls(path=b.weights.parent, model_cfg=cfg, stats=b.stats, instruction=b.instruction,
                   t5_embeddings=b.t5_embeddings, weights_file=b.weights, tokenizer=b.tokenizer, released=released)

    def load_into(self, model) -> None:
        """Net <- the parent's EMA weights (its deployed ones; raw weights if it has no EMA), VAE <- its VAE.

        Released: the bf16 DiT weights are cast into the float32 net (the master copy the optimizer updates),
        TE _extra_state dropped; the VAE is the Wan2.1 tokenizer (frozen by the trainer). Weights that do not
        fit the model config: CheckpointError naming the file and the first bad key.
        """
        if self.released:
            model.load_checkpoints(self.weights_file, self.tokenizer)
            return
        weights = model_ckpt.read_state_dict(self.weights_file)
        sd = {k[4:]: v for k, v in weights.items() if k.startswith("net.")}
        sd.update({k[8:]: v for k, v in weights.items() if k.startswith("net_ema.")})  # floats only
        vae = {k[4:]: v for k, v in weights.items() if k.startswith("vae.")}
        for module, part in ((model.net, sd), (model.vae, vae)):
            model_ckpt.check_state_dict(module, part, str(self.weights_file), optional=())
        model.net.load_state_dict(sd)
        model.vae.load_state_dict(vae)


def resume(run: str | Path, device: str | None = None, overrides: dict | None = None) -> Trainer:
    """Rebuild a Trainer from RUN/latest (weights, optimizer, EMA, step, history), on this process's ranks.

    The sharded state is resharded to the current world size (bit-exact on the same one); under torchrun
    every rank calls this (the load is a collective).
    """
    d = ck.latest_checkpoint(run)
    if d is None:
        raise FileNotFoundError(f"{run}: no checkpoint to resume (RUN/latest missing)")
    meta = ck.read_meta(d)
    mcfg = model_config_from_dict(meta["model"], str(d))
    tdict = dict(meta["train"])
    tdict.update(overrides or {})
    tcfg = train_config_from_dict(tdict, str(d))
    torch.set_num_threads(tcfg.threads)
    model = build_for_run(mcfg, tcfg.seed, "cpu")
    tr = Trainer(model, sample_set(run, meta["model"]), _context(mcfg, meta["instruction"], d / ck.EMBED_FILE),
                 tcfg, run, meta["stats"], meta["instruction"], device)
    tr.load_state(d)
    tr.init_from = meta.get("init_from")
    return tr


def export(run: str | Path, out: str | Path, ckpt: str | Path | None = None,
           sampler: dict | None = None, execute: int | None = None) -> Path:
    """Inference bundle: model.safetensors (net, net_ema, vae), policy.json, statistics, embeddings, loss plot.

    One process. A checkpoint saved without model.safetensors (train.consolidate_checkpoints: false) is
    gathered from its sharded state, whatever world size wrote it. sampler: inference-only fields of the model's
    sampler config to set in the bundle (e.g. {"action_smoothing": 9} for a run started before the recipe had it);
    validated, the weights are unchanged. execute: the bundle is run in chunk mode synchronous playing the first
    `execute` actions of each chunk (policy.json chunk_mode / synchronous_steps, read by the launch graph and
    `cosmos-aloha eval`), as it was evaluated.
    """
    if execute is not None and (why := actions_per_chunk_error(execute)):
        raise ValueError(f"execute: {why}")
    d = Path(ckpt) if ckpt else ck.latest_checkpoint(run)
    if d is None:
        raise FileNotFoundError(f"{run}: no checkpoint to export")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = ck.read_meta(d)
    if sampler:
        meta["model"] = {**meta["model"], "sampler": {**meta["model"].get("sampler", {}), **sampler}}
        model_config_from_dict(meta["model"], f"{d} with sampler {sampler}")  # validates
    if (d / ck.MODEL_FILE).is_file():
        shutil.copy2(d / ck.MODEL_FILE, out / ck.MODEL_FILE)
    else:
        ck.write_model(out / ck.MODEL_FILE, consolidated_weights(d, meta), meta["model"])
    shutil.copy2(d / ck.EMBED_FILE, out / ck.EMBED_FILE)
    (out / "dataset_statistics.json").write_text(json.dumps(meta["stats"], indent=1))
    policy = {k: meta[k] for k in ("model", "train", "instruction", "step", "elapsed_s")}
    policy["init_from"] = meta.get("init_from")
    policy["files"] = {"checkpoint": ck.MODEL_FILE, "stats": "dataset_statistics.json",
                       "t5_embeddings": ck.EMBED_FILE, "ema": True}
    # one action per control step of the episodes (ALOHA HDF5: 50 Hz); deployment plays them at this period
    policy["action_period_s"] = meta.get("action_period_s", AlohaRobot.from_yaml().dt)
    tcfg = train_config_from_dict(meta["train"], str(d))
    # how frames reach the model: the run's resize and crop, and the test-time centre crop when it trained on
    # augmented crops (the nodes and `cosmos-aloha eval` apply exactly this); checkpoint.json records it
    policy["preprocess"] = meta.get("preprocess") or dataclasses.asdict(inference_preprocessing(tcfg))
    # the gripper constants that normalised the episodes: nodes refuse a robot config with other ones
    policy["gripper_convention"] = meta.get("gripper_convention") or AlohaRobot.from_yaml(
        tcfg.robot_config).config.gripper.convention_record()
    if execute is not None:
        policy["chunk_mode"], policy["synchronous_steps"] = "synchronous", execute
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
                   help="start from this bundle/checkpoint's or released folder's weights, VAE and statistics")
    p.add_argument("--t5-embeddings", metavar="FILE", help="T5 embeddings of the episodes' instruction "
                   "(train.t5_embeddings; default: the --init-from parent's; `cosmos-aloha t5-embed` makes them)")
    # --run-dir: the spelling torchrun lets through (its own parser takes --run for an abbreviation of --run-path)
    p.add_argument("--run", "--run-dir", dest="run",
                   help="run directory (dataset cache, checkpoints, loss.png)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--minutes", type=float, help="stop (with a checkpoint) after this much training time")
    p.add_argument("--stop-at", type=int,
                   help="stop (with a checkpoint) at this step; the LR schedule still spans train.steps")
    p.add_argument("--max-episodes", type=int)
    p.add_argument("--threads", type=int, help="override train.threads (CPU: 1 when another job shares the cores)")
    p.add_argument("--device")
    p.add_argument("--export", metavar="OUT_DIR", help="export the latest checkpoint as an inference bundle")
    p.add_argument("--action-smoothing", type=int, metavar="K",
                   help="with --export: the bundle's sampler.action_smoothing (odd window of the chunk's moving "
                        "average on read-back; 1 = off; default: the run's)")
    p.add_argument("--execute", type=int, metavar="K",
                   help="with --export: the bundle runs in chunk mode synchronous, playing the first K actions of "
                        "each chunk before the next query (as `cosmos-aloha eval --execute K` measured it)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--encode-only", action="store_true",
                   help="fill the run's latent cache (on --device) and stop; a later run with --run reuses it")
    p.add_argument("--plan", action="store_true",
                   help="print which DDP/FSDP, checkpointing and micro-batch setups fit --config (default: the 2B "
                        "model) on --gpus x --gpu, and stop")
    memory_plan.add_arguments(p)
    ns = p.parse_args(argv)
    if not ns.plan and not ns.run:
        p.error("the following arguments are required: --run")
    if not (ns.plan or ns.export or ns.resume or (ns.config and ns.data)):
        p.error("a fresh run needs --config and --data (or --resume)")
    if ns.action_smoothing is not None and not ns.export:
        p.error("--action-smoothing sets an exported bundle's sampler: use it with --export")
    if ns.execute is not None and not ns.export:
        p.error("--execute sets how an exported bundle is run: use it with --export")
    try:
        if ns.plan:  # no run: the table for --config (default the 2B model) on --gpus x --gpu
            print(memory_plan.run_plan(ns.config or memory_plan.DEFAULT_MODEL, ns))
            return 0
        if ns.export:  # one process; under torchrun rank 0 exports and the others have nothing to do
            if distributed.env_rank() == 0:
                over = None if ns.action_smoothing is None else {"action_smoothing": ns.action_smoothing}
                print(f"exported {export(ns.run, ns.export, sampler=over, execute=ns.execute)}")
            return 0
        # under torchrun: the process group (nccl on CUDA, gloo on CPU) and this rank's device
        ranks, device = distributed.join(ns.device)
        try:
            return _train(ns, ranks, device)
        finally:
            distributed.leave()
    except (ValueError, *EXPECTED_ERRORS) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2


def _train(ns: argparse.Namespace, ranks: distributed.Ranks, device: str | None) -> int:
    """Fresh or resumed run on this rank. Rank 0 prepares a fresh run's dataset first; the others then
    find it cached (they wait in a barrier; Trainer construction needs no collective)."""
    over = {k: v for k, v in (("steps", ns.steps), ("max_episodes", ns.max_episodes), ("threads", ns.threads),
                              ("t5_embeddings", ns.t5_embeddings)) if v is not None}
    progress = not ns.no_progress and ranks.main
    if ns.resume:
        tr = resume(ns.run, device, over)
    else:
        if not ranks.main:
            distributed.barrier()
        tr = start(ns.config, ns.data, ns.run, over, device, progress=progress, init_from=ns.init_from,
                   encode_only=ns.encode_only)
        if ranks.main:
            distributed.barrier()
        if tr is None:
            if ranks.main:
                print(f"encoded the latent cache of {ns.run}")
            return 0
    tr.fit(until_step=ns.stop_at, time_budget_s=ns.minutes * 60 if ns.minutes else None, progress=progress)
    last = tr.history[-1] if tr.history else {}
    if ranks.main:
        print(f"step {tr.step}, {tr.elapsed:.0f} s, loss {last.get('loss', float('nan')):.4f}, "
              f"checkpoint {ck.latest_checkpoint(ns.run)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main, prog="cosmos-aloha train", code=2))
