"""Find everything a policy needs from one checkpoint path, and build the engine.

A *bundle* is a folder with ``model.safetensors`` (net.* [+ net_ema.*] + vae.* weights), a JSON
(``policy.json`` from ``cosmos-aloha train --export``, or a training checkpoint's
``checkpoint.json``: model config, dataset statistics (inline or ``dataset_statistics.json``),
default instruction, action period) and ``instruction_embeddings.pt`` (T5 embeddings). A training
run folder works too (its ``latest`` checkpoint is used). A bare weights file (e.g. the
released 2B checkpoint) needs the model config, statistics and T5 file named explicitly.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from cosmos_policy_ros.config import ConfigError, share_dir

MODEL_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
EXPORT_META_FILE = "policy.json"
STATS_FILE = "dataset_statistics.json"
EMBED_FILE = "instruction_embeddings.pt"
BUNDLED_CHECKPOINT = "checkpoints/sim_small_transfer_cube"
BUNDLED_PLANNING_CHECKPOINT = "checkpoints/sim_small_transfer_cube_planning"


@dataclass
class BundlePaths:
    weights: Path
    model_config: Path | dict
    stats: Path | dict
    t5_embeddings: Path
    instruction: str
    action_period_s: float | None
    checkpoint_id: str
    model_name: str
    ema: bool = False           # use the net_ema.* weights (our trainer's bundles)
    center_crop: bool = True    # upstream preprocessing; our sim checkpoints were trained uncropped
    meta_file: Path | None = None   # policy.json / checkpoint.json it was read from (None: bare weights file)
    meta: dict = field(default_factory=dict)  # that file's contents (train config, step, task, ...)


def default_checkpoint() -> Path:
    """The small checkpoint shipped with the package (trained on scripted sim demonstrations)."""
    return share_dir() / BUNDLED_CHECKPOINT


def default_planning_checkpoint() -> Path:
    """The bundled checkpoint's planning model (world model + V(s') fine-tuned on its rollouts)."""
    return share_dir() / BUNDLED_PLANNING_CHECKPOINT


def resolve_bundle(checkpoint: str | Path = "", model_config: str | Path = "", stats: str | Path = "",
                   t5_embeddings: str | Path = "") -> BundlePaths:
    """Resolve a checkpoint folder / run folder / weights file into the four inputs of the engine."""
    path = Path(checkpoint).expanduser() if str(checkpoint) else default_checkpoint()
    if not path.exists():
        hint = " (the bundled checkpoint is missing from this install)" if not str(checkpoint) else ""
        raise ConfigError(f"{path}: checkpoint not found{hint}")
    meta: dict = {}
    meta_file = None
    if path.is_dir():
        if (path / "latest").is_file():  # a training run folder
            path = path / "checkpoints" / (path / "latest").read_text().strip()
        meta_file = next((path / f for f in (EXPORT_META_FILE, META_FILE) if (path / f).is_file()), None)
        if meta_file is None or not (path / MODEL_FILE).is_file():
            raise ConfigError(f"{path}: not a checkpoint folder (needs {MODEL_FILE} and {EXPORT_META_FILE} "
                              f"or {META_FILE})")
        try:
            meta = json.loads(meta_file.read_text())
            if "stats" not in meta and (path / STATS_FILE).is_file():
                meta["stats"] = json.loads((path / STATS_FILE).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{meta_file}: unreadable checkpoint metadata ({exc})") from None
        weights = path / MODEL_FILE
        embed = path / EMBED_FILE
    else:
        weights, embed = path, None
    cfg_src = Path(model_config) if str(model_config) else meta.get("model")
    stats_src = Path(stats) if str(stats) else meta.get("stats")
    t5_src = Path(t5_embeddings) if str(t5_embeddings) else embed
    for name, value in (("model_config", cfg_src), ("stats", stats_src), ("t5_embeddings", t5_src)):
        if value is None:
            raise ConfigError(f"{weights}: a bare weights file needs the {name} parameter")
    if isinstance(cfg_src, Path) and not cfg_src.is_file():
        cfg_src = share_dir() / "config" / "model" / cfg_src
        if not cfg_src.is_file():
            raise ConfigError(f"{model_config}: model config not found")
    model_name = (meta.get("model") or {}).get("name", "") if isinstance(meta.get("model"), dict) else ""
    step = meta.get("step")
    files = meta.get("files", {})
    return BundlePaths(weights, cfg_src, stats_src, Path(t5_src), meta.get("instruction", ""),
                       meta.get("action_period_s"), _checkpoint_id(weights, step), model_name or Path(weights).stem,
                       ema=bool(files.get("ema", False)), center_crop=bool(meta.get("center_crop", not meta)),
                       meta_file=meta_file, meta=meta)


def _checkpoint_id(weights: Path, step) -> str:
    """Short content hash (first 8 MB) so logs and recorded chunks say which weights acted."""
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        h.update(f.read(8 << 20))
    return h.hexdigest()[:12] + (f"@{step}" if step is not None else "")


def _as_dict(src: Path | dict) -> dict:
    return src if isinstance(src, dict) else json.loads(Path(src).read_text()) if Path(src).suffix == ".json" else {}


def check_planning_compatible(policy: BundlePaths, planning: BundlePaths) -> None:
    """The planning model scores the policy's action latents: both must normalise with the same numbers."""
    a, b = _as_dict(policy.stats), _as_dict(planning.stats)
    if a and b and a != b:
        raise ConfigError(f"{planning.weights}: planning checkpoint was trained with other dataset statistics than "
                          f"the policy {policy.weights} (fine-tune it with `cosmos-aloha train --init-from` the policy)")
    ca, cb = _as_dict(policy.model_config), _as_dict(planning.model_config)
    if ca and cb and (ca.get("layout") != cb.get("layout") or ca.get("vae") != cb.get("vae")):
        raise ConfigError(f"{planning.weights}: planning checkpoint has another latent layout or VAE than the policy "
                          f"{policy.weights}")


def build_engine(paths: BundlePaths, planning: BundlePaths | None = None, device: str | None = None):
    """PolicyEngine from resolved paths (torch and the model core are imported here, not at node import)."""
    from cosmos_policy_ros.inference.engine import PolicyEngine
    from cosmos_policy_ros.model.config import load_model_config, model_config_from_dict

    if planning is not None:
        check_planning_compatible(paths, planning)
    cfg = (model_config_from_dict(paths.model_config, str(paths.weights)) if isinstance(paths.model_config, dict)
           else load_model_config(paths.model_config))
    return PolicyEngine.from_files(cfg, paths.weights, paths.stats, paths.t5_embeddings,
                                   planning_checkpoint=planning.weights if planning else None, device=device,
                                   ema=paths.ema, center_crop=paths.center_crop)
