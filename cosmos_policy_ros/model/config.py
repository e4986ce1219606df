"""Model configuration: dataclasses filled from YAML (config/model/*.yaml).

Numbers live in YAML, not code. Loading validates every key and raises one `ConfigError` naming the
file and the offending key, so a typo in a robot PC's config fails loudly instead of silently
building the wrong network.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

# Wan2.1 VAE per-channel latent statistics (upstream tokenizers/wan2pt1.py; spec section 3.2).
WAN21_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN21_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)


from cosmos_policy_ros.config import ConfigError, read_yaml  # noqa: E402  (one error type for every config)


@dataclass(frozen=True)
class DiTConfig:
    """Cosmos-Predict2 MiniTrainDIT (+1 condition-mask channel) hyper-parameters."""

    max_img_h: int = 240
    max_img_w: int = 240
    max_frames: int = 128
    in_channels: int = 16
    out_channels: int = 16
    patch_spatial: int = 2
    patch_temporal: int = 1
    concat_padding_mask: bool = True
    condition_mask_channel: bool = True
    model_channels: int = 2048
    num_blocks: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    crossattn_emb_channels: int = 1024
    use_adaln_lora: bool = True
    adaln_lora_dim: int = 256
    rope_h_extrapolation_ratio: float = 3.0
    rope_w_extrapolation_ratio: float = 3.0
    rope_t_extrapolation_ratio: float = 1.0
    timestep_scale: float = 1.0

    def validate(self) -> None:
        if self.model_channels % self.num_heads:
            raise ValueError("model_channels must be divisible by num_heads")
        head_dim = self.model_channels // self.num_heads
        if head_dim < 12 or head_dim % 2:
            raise ValueError("head_dim (model_channels/num_heads) must be even and >= 12 for 3-D RoPE")
        if not self.use_adaln_lora:
            raise ValueError("use_adaln_lora=False is not implemented (the released model uses AdaLN-LoRA)")
        for name in ("num_blocks", "num_heads", "patch_spatial", "patch_temporal", "adaln_lora_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


@dataclass(frozen=True)
class VAEConfig:
    """Wan2.1 causal video VAE; released: dim 96, z 16, mult (1,2,4,4), temporal down (F,T,T)."""

    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    latent_mean: tuple[float, ...] = WAN21_LATENT_MEAN
    latent_std: tuple[float, ...] = WAN21_LATENT_STD
    # pixel frames per causal encoder call after frame 0 (a multiple of 4). Same latents up to float rounding
    # (spec 3.3); 16 (upstream's tokenizer, inferred) encodes the proprio frame and three cameras in one call.
    temporal_window: int = 4

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(bool(x) for x in self.temporal_downsample)

    def validate(self) -> None:
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ValueError("temporal_downsample needs len(dim_mult)-1 entries")
        if len(self.latent_mean) != self.z_dim or len(self.latent_std) != self.z_dim:
            raise ValueError("latent_mean/latent_std need z_dim entries")
        if any(s <= 0 for s in self.latent_std):
            raise ValueError("latent_std entries must be > 0")
        if self.temporal_factor != 4:
            raise ValueError("the latent layout needs exactly 2 temporal downsamples (4 pixel frames per latent)")
        if self.temporal_window < 4 or self.temporal_window % 4:
            raise ValueError(f"temporal_window must be a positive multiple of 4, got {self.temporal_window}")


@dataclass(frozen=True)
class LayoutConfig:
    """Which latent frame holds what (spec section 4.1); camera order = order of the camera slots."""

    image_size: int = 224
    cameras: tuple[str, ...] = ("cam_left_wrist", "cam_right_wrist", "cam_high")
    chunk_len: int = 50
    action_dim: int = 14
    proprio_dim: int = 14

    def validate(self) -> None:
        if not self.cameras:
            raise ValueError("cameras must list at least one camera")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError("cameras must be unique")
        for name in ("image_size", "chunk_len", "action_dim", "proprio_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


@dataclass(frozen=True)
class SamplerConfig:
    """Inference sampler: '2ab' multistep in log-sigma, sigma 80 -> 4 (released inference configs)."""

    sigma_max: float = 80.0
    sigma_min: float = 4.0
    rho: float = 7.0
    action_steps: int = 10
    world_steps: int = 5
    value_steps: int = 5
    world_ensemble_steps: tuple[int, ...] = (1, 3, 5)
    value_ensemble_steps: tuple[int, ...] = (1, 2, 3, 4, 5)
    # > 0: each x0 prediction is pushed away from the one made with the current camera frames replaced by the
    # training mean scene (0 after per-position camera normalisation): x0 + w (x0 - x0_mean_scene). It amplifies
    # what the images change in the prediction (a second DiT call per step); 0 = off, as upstream
    camera_guidance: float = 0.0
    # odd window > 1: the policy's chunk is averaged over that many consecutive actions on read-back
    # (inference/chunk_smoothing.py; the world model and value still see the generated latents). 1 = off, as upstream
    action_smoothing: int = 1

    def validate(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError("need 0 < sigma_min < sigma_max")
        if self.action_smoothing < 1 or self.action_smoothing % 2 == 0:
            raise ValueError(f"action_smoothing must be an odd window >= 1 (1 = off), got {self.action_smoothing}")
        if self.camera_guidance < 0:
            raise ValueError("camera_guidance must be >= 0 (0 = off)")
        steps = [self.action_steps, self.world_steps, self.value_steps,
                 *self.world_ensemble_steps, *self.value_ensemble_steps]
        if any(s < 1 for s in steps):
            raise ValueError("step counts must be >= 1")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build and run one Cosmos Policy model."""

    name: str = "cosmos_policy"
    dit: DiTConfig = field(default_factory=DiTConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    sigma_data: float = 1.0
    text_len: int = 512
    released_param_count: int | None = None
    # per-position normalisation of camera latents (model/camera_norm.py): cameras x C x h x w values each,
    # measured on the training latents when train.camera_latent_norm > 0; empty: off (upstream, released)
    camera_latent_mean: tuple[float, ...] = ()
    camera_latent_std: tuple[float, ...] = ()

    @property
    def latent_side(self) -> int:
        """Side of a camera's latent frame (the square image over the VAE's spatial factor)."""
        return self.layout.image_size // self.vae.spatial_factor

    def validate(self) -> None:
        for part in (self.dit, self.vae, self.layout, self.sampler):
            part.validate()
        if self.vae.z_dim != self.dit.in_channels or self.dit.in_channels != self.dit.out_channels:
            raise ValueError("vae.z_dim, dit.in_channels and dit.out_channels must be equal")
        if self.layout.image_size % (self.vae.spatial_factor * self.dit.patch_spatial):
            raise ValueError("layout.image_size must be divisible by vae spatial factor x patch_spatial")
        latent = self.latent_side
        if latent // self.dit.patch_spatial > self.dit.max_img_h // self.dit.patch_spatial:
            raise ValueError("image too large for dit.max_img_h (RoPE table)")
        per_frame = self.dit.in_channels * latent * latent
        if per_frame < self.layout.chunk_len * self.layout.action_dim:
            raise ValueError(
                f"one latent frame holds {per_frame} values, fewer than one action chunk "
                f"({self.layout.chunk_len}x{self.layout.action_dim}); enlarge image_size")
        n = len(self.layout.cameras) * per_frame
        if (len(self.camera_latent_mean), len(self.camera_latent_std)) not in ((0, 0), (n, n)):
            raise ValueError(f"camera_latent_mean/std need {n} values each (cameras x C x h x w) or none, got "
                             f"{len(self.camera_latent_mean)} and {len(self.camera_latent_std)}")
        if any(s <= 0 for s in self.camera_latent_std):
            raise ValueError("camera_latent_std entries must be > 0")


_SECTIONS = {"dit": DiTConfig, "vae": VAEConfig, "layout": LayoutConfig, "sampler": SamplerConfig}


def _coerce(value: Any, target: Any, where: str) -> Any:
    """Convert a YAML scalar/list to the dataclass field type, or raise naming `where`."""
    origin = str(target)
    if origin.startswith("tuple"):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        inner = origin[len("tuple["):].split(",")[0].strip()
        return tuple(_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in ("int", "int | None"):
        if value is None and "None" in origin:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if origin == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if origin == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if origin == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {origin}")


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(fields))})")
        if cls is ModelConfig and key in _SECTIONS:
            kwargs[key] = _build(_SECTIONS[key], value, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(value, fields[key].type, f"{where}.{key}")
    return cls(**kwargs)


def model_config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> ModelConfig:
    """Build and validate a ModelConfig; errors name `source` and the key."""
    cfg = _build(ModelConfig, data, f"{source}: model")
    try:
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return cfg


def load_model_config(path: str | Path) -> ModelConfig:
    """Read config/model/<name>.yaml (top-level key `model`) into a validated ModelConfig."""
    path = Path(path)
    raw = read_yaml(path)
    if "model" not in raw:
        raise ConfigError(f"{path}: missing top-level key 'model'")
    extra = set(raw) - {"model"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level key {sorted(extra)[0]!r}")
    return model_config_from_dict(raw["model"], str(path))


def config_to_dict(cfg: ModelConfig) -> dict:
    """Plain-dict form (lists instead of tuples) for YAML dumps and checkpoint metadata."""
    def conv(x):
        if isinstance(x, tuple):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        return x
    return conv(dataclasses.asdict(cfg))
