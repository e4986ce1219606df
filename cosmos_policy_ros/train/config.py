"""Training configuration from config/train/*.yaml: a `model:` section (ModelConfig) and a `train:` section.

The model section is inline so a training recipe is one file and a checkpoint's JSON can carry the
exact config it was trained with (including VAE latent statistics measured in stage 1).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cosmos_policy_ros.config import config_path, read_yaml
from cosmos_policy_ros.inference.preprocessing import Crop, parse_crops
from cosmos_policy_ros.model.config import ConfigError, ModelConfig, load_model_config, model_config_from_dict


@dataclass(frozen=True)
class TrainConfig:
    task: str = "transfer_cube"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 100
    final_lr_factor: float = 0.3
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    mix: tuple[float, float, float] = (0.5, 0.25, 0.25)
    loss_scale: float = 10.0
    p_mean: float = 1.3862943611198906
    p_std: float = 1.2
    uniform_prob: float = 0.3
    uniform_range: tuple[float, float] = (1.0, 85.0)
    gamma: float = 0.998
    sample_stride: int = 1
    # samples starting in each episode's first `early_steps` steps are drawn `early_weight` times as often
    # (the approach, where only the cameras say where the cube is); 0 / 1.0 = uniform draws
    early_steps: int = 0
    early_weight: float = 1.0
    checkpoint_every_s: float = 300.0
    log_every: int = 10
    threads: int = 2
    max_episodes: int = 0          # 0 = all episodes in the directory
    value_query: str = "v_sas"     # value samples: V(s,a,s') (policy run) or V(s') (planning run, upstream)
    # Robot config whose gripper constants normalised the episodes: a converted episode recording other ones
    # (its gripper_constants attribute) is refused; exported bundles record them as gripper_convention.
    robot_config: str = "robot/aloha_interbotix.yaml"
    # T5 embeddings file (upstream pickle; `cosmos-aloha t5-embed` adds instructions) holding the episodes'
    # instruction: the training context. "" = the --init-from parent's T5 file, or (no parent) the stand-in.
    t5_embeddings: str = ""
    # Latent cache (train/latent_store.py, docs/training_data.md). Augmented copies of every frame stored in the
    # cache, made with upstream's image augmentation (parameters fixed per seed, episode and copy); 0 = off.
    augment_copies: int = 0
    # camera frame -> layout.image_size as the inference nodes resize (inference/preprocessing.py): "torch" (one
    # antialiased bicubic resize, none at size) or "pil_256_224" (upstream's ALOHA data: PIL bicubic 256, then 224)
    image_resize: str = "torch"
    # per-camera crop cut from each frame before that resize, [x0, y0, x1, y1] as fractions of the frame, e.g.
    # {cam_high: [0.2, 0.0, 0.8, 0.6]}: the cache applies it through the nodes' preprocess_image, the bundle
    # records it (preprocess.crop) and the nodes apply it (docs/training.md "Workspace crop"); {} = whole frames
    crop: Mapping[str, Crop] = field(default_factory=dict)
    # > 0: normalise each camera's latents per (channel, row, column) by the training frames' mean and std, the std
    # floored at this value (model/camera_norm.py; the statistics go into the model config); 0 = off (per-channel
    # statistics only, as upstream). A fine-tune keeps its parent's.
    camera_latent_norm: float = 0.0
    # dtype of the cached latents on disk: float16 (half the bytes) or float32
    latent_dtype: str = "float16"
    # frames per VAE call when encoding (each frame is a 1+4(1+cameras)-pixel-frame prefix)
    encode_batch: int = 16
    # latent cache directory; "" = RUN/latents. Runs with the same episodes, VAE and image settings can share one
    latent_cache: str = ""
    # ---- torchrun (docs/training.md "Distributed training"); one process ignores parallel and trains the net as is
    # none | ddp | fsdp: replicated weights with averaged gradients (ddp) or FSDP2 sharding per DiT block (fsdp)
    parallel: str = "ddp"
    # auto | fp32 | bf16: bf16 compute over fp32 master weights; auto = bf16 on CUDA, fp32 on CPU
    precision: str = "auto"
    # recompute each DiT block's activations in backward (less memory, ~1/3 more compute)
    activation_checkpointing: bool = False
    # samples per rank per forward; 0 = batch_size / ranks. batch_size stays the GLOBAL batch:
    # accumulation steps = batch_size / (ranks x micro_batch), which must be a whole number
    micro_batch: int = 0
    # DataLoader worker processes preparing the next steps' batches (0: in the training process)
    num_workers: int = 0
    # steps between checkpoints, 0 = off (checkpoint_every_s applies as well)
    checkpoint_every_steps: int = 0
    # rank 0 also writes model.safetensors (gathered full net, EMA, VAE) beside the sharded state, so the
    # evaluation and deploy.bundle load the checkpoint folder as is; false: only --export writes one
    consolidate_checkpoints: bool = True

    def validate(self) -> None:
        if abs(sum(self.mix) - 1.0) > 1e-6 or any(m < 0 for m in self.mix):
            raise ValueError("mix must be three non-negative fractions summing to 1")
        if not 0 <= self.ema_decay < 1:
            raise ValueError("ema_decay must be in [0, 1)")
        for name in ("steps", "batch_size", "sample_stride", "threads", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0 < self.gamma <= 1:
            raise ValueError("gamma must be in (0, 1]")
        if self.value_query not in ("v_sas", "v_sprime"):
            raise ValueError(f"value_query must be v_sas or v_sprime, got {self.value_query!r}")
        if self.early_steps < 0 or self.early_weight <= 0:
            raise ValueError("early_steps must be >= 0 and early_weight > 0")
        if self.camera_latent_norm < 0:
            raise ValueError("camera_latent_norm must be >= 0 (0 = off)")
        if self.augment_copies < 0 or self.encode_batch < 1:
            raise ValueError("augment_copies must be >= 0 and encode_batch >= 1")
        if self.image_resize not in ("torch", "pil_256_224"):
            raise ValueError(f"image_resize must be torch or pil_256_224, got {self.image_resize!r}")
        if self.latent_dtype not in ("float16", "float32"):
            raise ValueError(f"latent_dtype must be float16 or float32, got {self.latent_dtype!r}")
        choices = {"parallel": ("none", "ddp", "fsdp"), "precision": ("auto", "fp32", "bf16")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be {' | '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("micro_batch", "num_workers", "checkpoint_every_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.micro_batch and self.batch_size % self.micro_batch:
            raise ValueError(f"micro_batch {self.micro_batch} must divide batch_size {self.batch_size}")


def check_train_keys(d: Mapping[str, Any], source: str) -> None:
    """Refuse a `train:` key TrainConfig does not have, naming `source` (the file that holds it)."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for k in d:
        if k not in known:
            raise ConfigError(f"{source}: train.{k}: unknown key (known: {', '.join(sorted(known))})")


def train_config_from_dict(d: Mapping[str, Any] | None, source: str = "<dict>") -> TrainConfig:
    check_train_keys(d or {}, source)
    kwargs = {}
    for k, v in (d or {}).items():
        if k == "crop":
            kwargs[k] = parse_crops(v, f"{source}: train.crop")
            continue
        default = getattr(TrainConfig, k)
        if isinstance(default, tuple):
            if not isinstance(v, (list, tuple)) or len(v) != len(default):
                raise ConfigError(f"{source}: train.{k}: expected a list of {len(default)} numbers")
            v = tuple(float(x) for x in v)
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise ConfigError(f"{source}: train.{k}: expected true or false, got {v!r}")
        elif isinstance(v, bool):
            raise ConfigError(f"{source}: train.{k}: unexpected boolean")
        elif isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(v, int):
                raise ConfigError(f"{source}: train.{k}: expected an integer, got {v!r}")
        elif isinstance(default, float):
            if not isinstance(v, (int, float)):
                raise ConfigError(f"{source}: train.{k}: expected a number, got {v!r}")
            v = float(v)
        elif isinstance(default, str) and not isinstance(v, str):
            raise ConfigError(f"{source}: train.{k}: expected a string, got {v!r}")
        kwargs[k] = v
    cfg = TrainConfig(**kwargs)
    try:
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(f"{source}: train: {exc}") from None
    return cfg


def train_config_to_dict(cfg: TrainConfig) -> dict:
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    out["crop"] = {c: list(box) for c, box in cfg.crop.items()}
    return out


def load_recipe(path: str | Path, model_optional: bool = False) -> tuple[ModelConfig | None, TrainConfig]:
    """config/train/<name>.yaml -> (ModelConfig, TrainConfig). `model:` may be inline or a path to a model YAML.

    model_optional: fine-tuning recipes take the model from the parent checkpoint (ModelConfig None).
    `train_from: OTHER.yaml` starts the train section from another recipe's (see train_section).
    """
    path = config_path(path)  # a name under config/ too: `train_from` and `model` resolve beside the file found
    raw = read_yaml(path)
    extra = set(raw) - {"model", "train", "train_from"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level key {sorted(extra)[0]!r}")
    train = train_config_from_dict(train_section(path, raw), str(path))
    if "model" not in raw:
        if model_optional:
            return None, train
        raise ConfigError(f"{path}: missing top-level key 'model' (a recipe without one needs --init-from)")
    m = raw["model"]
    if isinstance(m, str):
        mpath = Path(m) if Path(m).is_absolute() else (path.parent / m)
        if not mpath.exists():
            mpath = Path(m)
        mcfg = load_model_config(mpath)
    else:
        mcfg = model_config_from_dict(m, str(path))
    return mcfg, train


def train_section(path: Path, raw: Mapping[str, Any], _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The recipe's `train:` mapping, on top of the `train_from:` recipe's (its own `train_from` too).

    A fine-tune that changes three values of its parent's schedule names only those three, so the two
    cannot drift apart. Keys are replaced whole (a `crop:` given here replaces the parent's crop); the
    parent's `model:` is not taken: under --init-from the model comes from the parent checkpoint.
    """
    own = raw.get("train") or {}
    if not isinstance(own, Mapping):
        raise ConfigError(f"{path}: train: expected a mapping, got {type(own).__name__}")
    check_train_keys(own, str(path))  # named in the file that has it, not in the recipe that inherits it
    base = raw.get("train_from")
    if base is None:
        return dict(own)
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: train_from: expected a recipe file name, got {base!r}")
    bpath = Path(base) if Path(base).is_absolute() else path.parent / base
    if not bpath.is_file():
        raise ConfigError(f"{path}: train_from: {bpath} not found")
    seen = (*_seen, path.resolve())
    if bpath.resolve() in seen:
        raise ConfigError(f"{path}: train_from: {base} makes a loop ({' -> '.join(p.name for p in (*seen, bpath))})")
    return {**train_section(bpath, read_yaml(bpath), seen), **own}
