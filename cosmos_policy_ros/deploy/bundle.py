"""Find everything a policy needs from one checkpoint path, load it once into typed values, build the engine.

Two layouts resolve:

* Our bundle: a folder with ``model.safetensors`` (net.* [+ net_ema.*] + vae.* weights), a JSON
  (``policy.json`` from ``cosmos-aloha train --export``, or a training checkpoint's ``checkpoint.json``:
  model config, dataset statistics (inline or ``dataset_statistics.json``), default instruction, action
  period) and ``instruction_embeddings.pt`` (T5 embeddings). A training run folder works too (its
  ``latest`` checkpoint is used).
* Upstream's released checkpoint as downloaded (model/released.py): a folder without that JSON holding
  ``Cosmos-Policy-ALOHA-Predict2-2B.pt``, ``aloha_dataset_statistics.json``, ``aloha_t5_embeddings.pkl``
  and the Wan2.1 ``tokenizer.pth`` (beside them or in ``tokenizer/``), or one weights file with those
  beside it. The model config is ``config/model/cosmos_policy_2b_aloha.yaml``. A file that is missing is
  named in one line saying which Hugging Face repository and path it comes from.

Explicit arguments (``model_config``, ``stats``, ``t5_embeddings``, ``tokenizer``) override what either
layout holds. A planning checkpoint resolves the same way with the policy's bundle as ``fallback``: the
statistics, T5 file, tokenizer and model config its folder lacks are the policy's.

Why one resolution step: the model config and statistics arrive as a path, a YAML name or a dict
inside the metadata. `resolve_bundle` turns all of them into a `ModelConfig` and a statistics dict
here, at the edge, with one-line errors naming the file, so the engine and the planning check below
take one type each. The module stays free of torch: nodes import it before they decide to build a model.

The metadata also says how the checkpoint must be run: `gripper_convention` (the robot config's gripper
constants that normalised its training data; `check_gripper_convention` refuses a robot config with
other ones), `preprocess` (inference/preprocessing.py: how frames and proprio reach the model, each camera's
crop included; `check_camera_crops` refuses a camera config stating another) and
optionally `chunk_mode` (the executor mode a launch graph defaults to, `launch_chunk_mode`, read before any
node starts) and `synchronous_steps` (in chunk mode synchronous, the actions played from each chunk before the
next is requested, as the checkpoint was evaluated: `launch_synchronous_steps`). A checkpoint without them is
taken to be upstream's released one.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cosmos_policy_ros.config import ConfigError, read_json_object, share_dir
from cosmos_policy_ros.inference.preprocessing import Crop, Preprocessing
from cosmos_policy_ros.model import released
from cosmos_policy_ros.model.config import ModelConfig, load_model_config, model_config_from_dict
from cosmos_policy_ros.robot.aloha import GRIPPER_CONVENTION_KEYS, AlohaRobot, robot_configs_matching
from cosmos_policy_ros.robot.scheduler import MODES, actions_per_chunk_error

MODEL_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
EXPORT_META_FILE = "policy.json"
STATS_FILE = "dataset_statistics.json"
EMBED_FILE = "instruction_embeddings.pt"
BUNDLED_CHECKPOINT = "checkpoints/sim_small_transfer_cube"
BUNDLED_PLANNING_CHECKPOINT = "checkpoints/sim_small_transfer_cube_planning"
# What `cosmos-aloha demo` runs: the bundled sim checkpoint that solves its task most often (its policy.json says
# how it was evaluated). The nodes' default stays the small one: tests and a bare launch start it in seconds.
DEMO_CHECKPOINT = "checkpoints/sim_crop_transfer_cube"
# What a checkpoint that does not record them is taken to need: upstream's released ALOHA checkpoint.
# Upstream's ALOHA client copies constants.py / real_env.py from the original ROS 1 ALOHA (tonyzhaozh/aloha;
# cosmos-policy ALOHA.md, as OpenVLA-OFT's experiments/robot/aloha/constants.py): its data was normalised
# with the ROS 1 gripper constants.
UPSTREAM_GRIPPER_CONFIG = "robot/aloha_ros1.yaml"
# Upstream runs each chunk whole at 25 Hz and queries the next one with the robot at rest
# (run_aloha_eval.py:559-776): our executor's synchronous mode.
UPSTREAM_CHUNK_MODE = "synchronous"


@dataclass
class CheckpointBundle:
    """One resolved checkpoint: what `build_engine` loads, plus what the nodes report about it."""

    weights: Path
    model_config: ModelConfig
    # dataset statistics ({actions,proprio}_{min,max,...}: lists of floats), read once
    stats: dict
    t5_embeddings: Path
    instruction: str
    # s between actions of a chunk, as trained; None: the node's configured period
    action_period_s: float | None
    # content hash of the weights (+ "@step"), carried in logs and recorded chunks
    checkpoint_id: str
    model_name: str
    ema: bool = False           # use the net_ema.* weights (our trainer's bundles)
    # how frames and proprio reach the model as it was trained (upstream's unless the metadata says otherwise)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    # the Wan2.1 VAE weights file (the released tokenizer.pth); None: vae.* keys of the weights file
    tokenizer: Path | None = None
    meta_file: Path | None = None   # policy.json / checkpoint.json it was read from (None: released layout)
    meta: dict = field(default_factory=dict)  # that file's contents (train config, step, task, ...)
    # the JSON file the statistics came from; None: inline in meta_file
    stats_file: Path | None = None
    # {name, the eight gripper open/close constants} that normalised the training data (robot config
    # `gripper:` keys); None: not recorded (upstream's released checkpoint, older bundles)
    gripper_convention: dict | None = None


def default_checkpoint() -> Path:
    """The small checkpoint shipped with the package (trained on scripted sim demonstrations)."""
    return share_dir() / BUNDLED_CHECKPOINT


def default_demo_checkpoint() -> Path:
    """The bundled sim checkpoint `cosmos-aloha demo` runs (DEMO_CHECKPOINT)."""
    return share_dir() / DEMO_CHECKPOINT


def default_planning_checkpoint() -> Path:
    """The bundled checkpoint's planning model (world model + V(s') fine-tuned on its rollouts)."""
    return share_dir() / BUNDLED_PLANNING_CHECKPOINT


def resolve_bundle(checkpoint: str | Path = "", model_config: str | Path = "", stats: str | Path = "",
                   t5_embeddings: str | Path = "", tokenizer: str | Path = "",
                   fallback: CheckpointBundle | None = None) -> CheckpointBundle:
    """Resolve a checkpoint folder / run folder / released folder / weights file; explicit arguments win.

    Empty strings mean "not given" (ROS parameters cannot be None). `fallback` (the policy's bundle, when
    this is a planning checkpoint) supplies what a released-layout folder lacks.
    """
    path = Path(checkpoint).expanduser() if str(checkpoint) else default_checkpoint()
    if not path.exists():
        hint = " (the bundled checkpoint is missing from this install)" if not str(checkpoint) else ""
        raise ConfigError(f"{path}: checkpoint not found{hint}")
    given = {"model_config": str(model_config), "stats": str(stats), "t5_embeddings": str(t5_embeddings),
             "tokenizer": str(tokenizer)}
    if path.is_dir() and _is_our_folder(path):
        return _resolve_ours(path, given)
    return _resolve_released(path, given, fallback)


def _resolve_ours(path: Path, given: dict[str, str]) -> CheckpointBundle:
    """A bundle / checkpoint / run folder of our trainer: everything from its metadata unless given."""
    weights, meta_file, meta = _read_folder(path)
    folder = weights.parent
    if not given["model_config"] and meta.get("model") is None:
        raise ConfigError(f"{meta_file}: no 'model' key (pass the model_config parameter)")
    cfg = _load_model_config(given["model_config"], meta, meta_file)
    stats_dict, stats_file = _load_stats(given["stats"], meta, meta_file, folder)
    t5 = _existing(given["t5_embeddings"], "T5 embeddings") or folder / EMBED_FILE
    if not t5.is_file():
        raise ConfigError(f"{t5}: T5 embeddings file not found")
    model = meta.get("model")
    model_name = model.get("name", "") if isinstance(model, dict) else ""
    return CheckpointBundle(
        weights=weights, model_config=cfg, stats=stats_dict, t5_embeddings=t5,
        instruction=meta.get("instruction", ""), action_period_s=meta.get("action_period_s"),
        checkpoint_id=_checkpoint_id(weights, meta.get("step")), model_name=model_name or weights.stem,
        ema=bool(meta.get("files", {}).get("ema", False)),
        preprocessing=Preprocessing.from_meta(meta, str(meta_file)),
        tokenizer=_existing(given["tokenizer"], "tokenizer"), meta_file=meta_file, meta=meta,
        stats_file=stats_file, gripper_convention=_gripper_convention(meta.get("gripper_convention"), meta_file))


def _resolve_released(path: Path, given: dict[str, str], fallback: CheckpointBundle | None) -> CheckpointBundle:
    """Upstream's released layout: a folder as downloaded, or one weights file with the other files beside it.

    Each file: the explicit argument, else the released name (or pattern) in the folder, else the fallback's
    (the policy's, for a planning checkpoint), else one line naming it and where to download it.
    """
    folder = path if path.is_dir() else path.parent
    weights_spec, stats_spec, t5_spec, tok_spec = released.layout_files(planning=fallback is not None)
    weights = path if path.is_file() else _find(folder, weights_spec)
    if weights is None:
        raise ConfigError(released.missing_line(folder, weights_spec))
    if given["model_config"] or fallback is None:
        cfg = _load_model_config(given["model_config"] or released.RELEASED_MODEL_CONFIG, {}, None)
    else:
        cfg = fallback.model_config
    stats_file = _existing(given["stats"], "statistics") or _find(folder, stats_spec)
    if stats_file is not None:
        stats_dict = read_json_object(stats_file, "statistics")
    elif fallback is not None:
        stats_dict, stats_file = fallback.stats, fallback.stats_file
    else:
        raise ConfigError(released.missing_line(folder, stats_spec))
    t5 = (_existing(given["t5_embeddings"], "T5 embeddings") or _find(folder, t5_spec)
          or (fallback.t5_embeddings if fallback else None))
    if t5 is None:
        raise ConfigError(released.missing_line(folder, t5_spec))
    # a planning model encodes and decodes nothing itself: the engine gives it the policy's VAE
    tokenizer = (_existing(given["tokenizer"], "tokenizer") or _find(folder, tok_spec)
                 or (fallback.tokenizer if fallback else None))
    if tokenizer is None and fallback is None and not _holds_vae(weights):
        raise ConfigError(released.missing_line(folder, tok_spec))
    return CheckpointBundle(
        weights=weights, model_config=cfg, stats=stats_dict, t5_embeddings=t5, instruction="",
        action_period_s=None, checkpoint_id=_checkpoint_id(weights, None), model_name=weights.stem,
        preprocessing=Preprocessing(), tokenizer=tokenizer, stats_file=stats_file)


def _existing(given: str, what: str) -> Path | None:
    """The explicitly given file (None when not given); a given path that is no file is refused in one line."""
    if not given:
        return None
    path = Path(given).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    return path


def _find(folder: Path, spec: released.ReleasedFile) -> Path | None:
    try:
        return released.find(folder, spec)
    except released.AmbiguousFileError as exc:
        raise ConfigError(str(exc)) from None


def _holds_vae(weights: Path) -> bool:
    """Whether a weights file carries vae.*/tokenizer.* keys: read from a .safetensors header (our bundles),
    never from a pickle; a .pt/.pth is upstream's DiT-only file."""
    if weights.suffix != ".safetensors":
        return False
    try:
        with open(weights, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(min(size, 100 << 20)))
    except (OSError, struct.error, ValueError):
        return False  # unreadable: the loader names it
    return any(k.startswith(("vae.", "tokenizer.")) for k in header)


def _is_our_folder(path: Path) -> bool:
    """A training run folder, or a folder with our metadata JSON (else: upstream's released layout)."""
    return (path / "latest").is_file() or any((path / f).is_file() for f in (EXPORT_META_FILE, META_FILE))


def _read_folder(path: Path) -> tuple[Path, Path, dict]:
    """(weights, metadata file, its contents) of a bundle or checkpoint folder; a run folder -> its latest."""
    if (path / "latest").is_file():  # a training run folder
        path = path / "checkpoints" / (path / "latest").read_text().strip()
    meta_file = next((path / f for f in (EXPORT_META_FILE, META_FILE) if (path / f).is_file()), None)
    if meta_file is None or not (path / MODEL_FILE).is_file():
        raise ConfigError(f"{path}: not a checkpoint folder (needs {MODEL_FILE} and {EXPORT_META_FILE} "
                          f"or {META_FILE})")
    return path / MODEL_FILE, meta_file, read_json_object(meta_file, "checkpoint metadata")


def _load_model_config(given: str, meta: dict, meta_file: Path | None) -> ModelConfig:
    """The explicit model YAML (a path or a name under config/model/), else the metadata's `model` key."""
    if not given:
        return model_config_from_dict(meta["model"], str(meta_file))
    path = Path(given).expanduser()
    if not path.is_file():
        path = share_dir() / "config" / "model" / given
        if not path.is_file():
            raise ConfigError(f"{given}: model config not found")
    return load_model_config(path)


def _load_stats(given: str, meta: dict, meta_file: Path | None, folder: Path | None) -> tuple[dict, Path | None]:
    """(statistics, the file they came from): the explicit file, else inline in the metadata, else beside it."""
    if given:
        path = Path(given).expanduser()
    elif meta.get("stats") is not None:
        if not isinstance(meta["stats"], dict):
            raise ConfigError(f"{meta_file}: stats: expected a mapping, got {type(meta['stats']).__name__}")
        return meta["stats"], None
    else:
        path = folder / STATS_FILE
    return read_json_object(path, "statistics"), path


def _gripper_convention(record, meta_file: Path | None) -> dict | None:
    """The metadata's gripper_convention checked: a mapping with a number for each of the eight constants."""
    if record is None:
        return None
    if not isinstance(record, dict):
        raise ConfigError(f"{meta_file}: gripper_convention: expected a mapping, got {type(record).__name__}")
    for key in GRIPPER_CONVENTION_KEYS:
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{meta_file}: gripper_convention.{key}: expected a number, got {value!r}")
    return {"name": str(record.get("name", "")), **{k: float(record[k]) for k in GRIPPER_CONVENTION_KEYS}}


def _describe_gripper(record: dict) -> str:
    name = record.get("name") or "unnamed"
    return (f"{name}: follower finger {record['follower_position_close']:g}..{record['follower_position_open']:g} m, "
            f"follower joint {record['follower_joint_close']:g}..{record['follower_joint_open']:g} rad")


def check_gripper_convention(bundle: CheckpointBundle, robot: AlohaRobot) -> list[str]:
    """Refuse a checkpoint trained on grippers normalised with other constants than `robot`'s; warning lines.

    The same finger reading normalises to another number under the other stack's constants (Interbotix
    ROS 2 vs original ROS 1), so such a policy would see and command other openings: a ConfigError naming
    the bundle file, both conventions and the fix. A bundle that records no convention (upstream's released
    checkpoint) is assumed to follow upstream's and gets a warning line, as does training data whose gripper
    actions reach beyond the robot's gripper_command_range (the executor would clip them).
    """
    rc = robot.config
    where = bundle.meta_file or bundle.weights
    ours = rc.gripper.convention_record()
    warnings = []
    if bundle.gripper_convention is None:
        upstream = AlohaRobot.from_yaml(UPSTREAM_GRIPPER_CONFIG).config.gripper.convention_record()
        line = (f"{where}: no gripper_convention recorded: assuming upstream's ({_describe_gripper(upstream)}; "
                f"Cosmos Policy's ALOHA client copies the original ROS 1 ALOHA constants)")
        if not rc.gripper.matches(upstream):
            line += (f"; the robot config {rc.source} has other ones ({ours['name'] or 'unnamed'}): run with "
                     f"robot_config:={UPSTREAM_GRIPPER_CONFIG} unless the data was recorded with them")
        warnings.append(line)
    elif not rc.gripper.matches(bundle.gripper_convention):
        matching = robot_configs_matching(bundle.gripper_convention)
        fix = f"run with robot_config:={matching[0]} or " if matching else ""
        raise ConfigError(f"{where}: gripper convention {_describe_gripper(bundle.gripper_convention)} differs "
                          f"from the robot config {rc.source} ({_describe_gripper(ours)}): the policy would read "
                          f"and command other gripper openings; {fix}re-normalise the episodes with this robot's "
                          f"constants and retrain")
    return warnings + _gripper_range_warnings(bundle, robot)


def _gripper_range_warnings(bundle: CheckpointBundle, robot: AlohaRobot) -> list[str]:
    """A line when the training data's gripper actions (statistics) reach beyond gripper_command_range."""
    lows, highs = bundle.stats.get("actions_min"), bundle.stats.get("actions_max")
    grip = robot.gripper_indices
    if not (isinstance(lows, list) and isinstance(highs, list) and len(lows) == len(highs) == robot.STATE_DIM):
        return []
    lo, hi = min(float(lows[i]) for i in grip), max(float(highs[i]) for i in grip)
    r_lo, r_hi = robot.config.gripper_command_range
    if lo >= r_lo - 1e-6 and hi <= r_hi + 1e-6:
        return []
    return [f"{bundle.stats_file or bundle.meta_file}: the training data's gripper actions span [{lo:.3f}, {hi:.3f}] "
            f"but {robot.config.source} clips gripper commands to [{r_lo:g}, {r_hi:g}] (gripper_command_range): "
            f"the policy cannot squeeze or open as far as its data did"]


def _launch_meta(checkpoint: str | Path) -> tuple[Path, dict] | str | None:
    """(metadata file, contents) of `checkpoint` for a launch default; "upstream" for a released folder or a
    bare weights file; None when "" (the bundled one) is absent from this install (the node reports it)."""
    path = Path(checkpoint).expanduser() if str(checkpoint) else default_checkpoint()
    if not path.exists():
        if not str(checkpoint):
            return None
        raise ConfigError(f"{path}: checkpoint not found")
    if not (path.is_dir() and _is_our_folder(path)):
        return "upstream"
    _, meta_file, meta = _read_folder(path)
    return meta_file, meta


def launch_chunk_mode(checkpoint: str | Path, mode: str) -> str | None:
    """The executor chunk mode `checkpoint` states for launch mode `mode`, read from its metadata JSON only.

    policy.json `chunk_mode`: a chunk mode, or {launch mode: chunk mode}. A folder without our metadata or a
    bare weights file is upstream's released checkpoint: UPSTREAM_CHUNK_MODE. None: the checkpoint does not
    say ("" = the bundled one; absent from this install: None, the node reports it).
    """
    found = _launch_meta(checkpoint)
    if found is None:
        return None
    if found == "upstream":
        return UPSTREAM_CHUNK_MODE
    meta_file, meta = found
    stated = meta.get("chunk_mode")
    per_mode = stated if isinstance(stated, dict) else {mode: stated}
    for value in per_mode.values():
        if value is not None and value not in MODES:
            raise ConfigError(f"{meta_file}: chunk_mode: expected one of {', '.join(MODES)} (or a mapping "
                              f"launch mode -> one of them), got {value!r}")
    return per_mode.get(mode)


def launch_synchronous_steps(checkpoint: str | Path) -> int | None:
    """policy.json `synchronous_steps`: in chunk mode synchronous, the actions of each chunk played before the
    next is requested, as the checkpoint was evaluated (`cosmos-aloha eval --execute`). None: not stated (the
    executor config's value; upstream plays whole chunks)."""
    found = _launch_meta(checkpoint)
    if not isinstance(found, tuple):
        return None
    meta_file, meta = found
    stated = meta.get("synchronous_steps")
    if stated is not None and (why := actions_per_chunk_error(stated)):
        raise ConfigError(f"{meta_file}: synchronous_steps: {why}")
    return stated


def _checkpoint_id(weights: Path, step) -> str:
    """Short content hash (first 8 MB) so logs and recorded chunks say which weights acted."""
    h = hashlib.sha256()
    with open(weights, "rb") as f:
        h.update(f.read(8 << 20))
    return h.hexdigest()[:12] + (f"@{step}" if step is not None else "")


def check_planning_compatible(policy: CheckpointBundle, planning: CheckpointBundle) -> None:
    """The planning model scores the policy's action latents: both must normalise with the same numbers
    and share the latent layout and VAE (the engine builds the planning net from the policy's config)."""
    if policy.stats != planning.stats:
        raise ConfigError(f"{planning.weights}: planning checkpoint was trained with other dataset statistics than "
                          f"the policy {policy.weights} (fine-tune it with `cosmos-aloha train --init-from` "
                          f"the policy)")
    a, b = policy.model_config, planning.model_config
    if a.layout != b.layout or a.vae != b.vae:
        raise ConfigError(f"{planning.weights}: planning checkpoint has another latent layout or VAE than the policy "
                          f"{policy.weights}")
    if policy.preprocessing.crop != planning.preprocessing.crop:
        raise ConfigError(f"{planning.weights}: planning checkpoint was trained on frames cropped "
                          f"{_crops(planning.preprocessing.crop)}, the policy {policy.weights} on "
                          f"{_crops(policy.preprocessing.crop)}: fine-tune it with the policy's train.crop")


def check_camera_crops(bundle: CheckpointBundle, stated: Mapping[str, Crop | None], source: str) -> None:
    """The nodes apply the crop the bundle was trained with; a crop the camera config states for one of the
    model's cameras must be that one (ConfigError, one line naming both). `stated`: camera -> crop or None."""
    where = bundle.meta_file or bundle.weights
    for cam in bundle.model_config.layout.cameras:
        want, have = bundle.preprocessing.crop_of(cam), stated.get(cam)
        if have is not None and tuple(have) != want:
            trained = f"the crop {list(want)}" if want else "whole frames (no crop)"
            raise ConfigError(f"{source}: cameras.{cam}.crop {list(have)} differs from {where}, trained on "
                              f"{trained}: remove the key (the checkpoint's crop applies) or set it to the same")


def _crops(crop: Mapping[str, Crop]) -> str:
    return ", ".join(f"{c} {list(b)}" for c, b in crop.items()) if crop else "whole (no crop)"


def build_engine(bundle: CheckpointBundle, planning: CheckpointBundle | None = None, device: str | None = None):
    """PolicyEngine from a resolved bundle (+ a planning bundle whose world model and value it uses)."""
    from cosmos_policy_ros.inference.engine import PolicyEngine  # heavy: torch and the model core

    if planning is not None:
        check_planning_compatible(bundle, planning)
    return PolicyEngine.from_files(bundle.model_config, bundle.weights, bundle.stats, bundle.t5_embeddings,
                                   vae_checkpoint=bundle.tokenizer,
                                   planning_checkpoint=planning.weights if planning else None, device=device,
                                   ema=bundle.ema, preprocessing=bundle.preprocessing,
                                   stats_source=str(bundle.stats_file or bundle.meta_file))
