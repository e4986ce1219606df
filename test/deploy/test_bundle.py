"""deploy.bundle: every checkpoint layout resolves once into a ModelConfig, a statistics dict and paths;
what is missing or unreadable is refused in one line naming the file; planning bundles must match the policy."""
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from model_fixtures import CONFIG_DIR
from safetensors.torch import load_file

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.deploy.bundle import (
    EMBED_FILE,
    EXPORT_META_FILE,
    META_FILE,
    MODEL_FILE,
    STATS_FILE,
    CheckpointBundle,
    build_engine,
    check_planning_compatible,
    resolve_bundle,
)
from cosmos_policy_ros.deploy.random_bundle import make_random_bundle
from cosmos_policy_ros.model.config import ModelConfig


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A training-checkpoint folder (checkpoint.json with inline statistics), made once per module."""
    return make_random_bundle(tmp_path_factory.mktemp("ckpt") / "step_00000000", "tiny_test")


def make_exported_bundle(checkpoint: Path, dest: Path) -> Path:
    """The `train --export` layout: policy.json, statistics in dataset_statistics.json beside it, EMA flag."""
    dest.mkdir()
    meta = json.loads((checkpoint / META_FILE).read_text())
    for name in (MODEL_FILE, EMBED_FILE):
        shutil.copy2(checkpoint / name, dest / name)
    (dest / STATS_FILE).write_text(json.dumps(meta.pop("stats")))
    meta.update(files={"checkpoint": MODEL_FILE, "stats": STATS_FILE, "t5_embeddings": EMBED_FILE, "ema": True},
                center_crop=False, action_period_s=0.02)
    (dest / EXPORT_META_FILE).write_text(json.dumps(meta))
    return dest


def make_run_folder(checkpoint: Path, dest: Path) -> Path:
    """A training run folder: RUN/latest names RUN/checkpoints/<step>."""
    shutil.copytree(checkpoint, dest / "checkpoints" / checkpoint.name)
    (dest / "latest").write_text(checkpoint.name + "\n")
    return dest


def make_bare_pieces(checkpoint: Path, dest: Path) -> tuple[Path, Path, Path]:
    """(weights file, statistics JSON, T5 file) as loose files, like the released 2B checkpoint."""
    dest.mkdir()
    stats = dest / "stats.json"
    stats.write_text(json.dumps(json.loads((checkpoint / META_FILE).read_text())["stats"]))
    shutil.copy2(checkpoint / MODEL_FILE, dest / "policy_weights.safetensors")
    shutil.copy2(checkpoint / EMBED_FILE, dest / "t5.pt")
    return dest / "policy_weights.safetensors", stats, dest / "t5.pt"


def _inline_stats(checkpoint: Path) -> dict:
    return json.loads((checkpoint / META_FILE).read_text())["stats"]


def test_training_checkpoint_resolves_to_typed_config_stats_and_paths(checkpoint):
    b = resolve_bundle(checkpoint)
    assert isinstance(b, CheckpointBundle) and isinstance(b.model_config, ModelConfig)
    assert b.model_config.layout.cameras == ("cam_left_wrist", "cam_right_wrist", "cam_high")
    assert b.stats == _inline_stats(checkpoint) and b.stats_file is None
    assert b.weights == checkpoint / MODEL_FILE and b.t5_embeddings == checkpoint / EMBED_FILE
    assert b.meta_file == checkpoint / META_FILE and b.meta["step"] == 0
    assert b.instruction == "transfer the cube" and b.action_period_s == 0.04 and b.checkpoint_id.endswith("@0")
    assert not b.ema and not b.center_crop
    assert dataclasses.replace(b, ema=True).ema   # evaluation runs a training checkpoint on its EMA weights


def test_exported_bundle_reads_statistics_beside_policy_json(checkpoint, tmp_path):
    b = resolve_bundle(make_exported_bundle(checkpoint, tmp_path / "bundle"))
    assert b.meta_file.name == EXPORT_META_FILE and b.stats_file == tmp_path / "bundle" / STATS_FILE
    assert b.stats == _inline_stats(checkpoint) and "stats" not in b.meta
    assert b.model_config == resolve_bundle(checkpoint).model_config
    assert b.ema and not b.center_crop and b.action_period_s == 0.02


def test_run_folder_resolves_its_latest_checkpoint(checkpoint, tmp_path):
    run = make_run_folder(checkpoint, tmp_path / "run")
    b = resolve_bundle(run)
    assert b.weights == run / "checkpoints" / checkpoint.name / MODEL_FILE
    assert b.checkpoint_id == resolve_bundle(checkpoint).checkpoint_id


@pytest.mark.parametrize("config", ["tiny_test.yaml", str(CONFIG_DIR / "tiny_test.yaml")])
def test_bare_weights_file_takes_explicit_config_stats_and_t5(checkpoint, tmp_path, config):
    weights, stats, t5 = make_bare_pieces(checkpoint, tmp_path / "bare")
    b = resolve_bundle(str(weights), config, str(stats), str(t5))
    assert b.model_config == resolve_bundle(checkpoint).model_config
    assert b.stats == _inline_stats(checkpoint) and b.stats_file == stats and b.t5_embeddings == t5
    assert b.meta_file is None and b.meta == {} and b.model_name == "policy_weights"
    assert b.center_crop and not b.ema and "@" not in b.checkpoint_id


def test_explicit_arguments_override_the_bundle_metadata(checkpoint, tmp_path):
    other = tmp_path / "other_stats.json"
    other.write_text(json.dumps({**_inline_stats(checkpoint), "note": "other"}))
    b = resolve_bundle(checkpoint, stats=other)
    assert b.stats["note"] == "other" and b.stats_file == other


@pytest.mark.parametrize("missing", ["model_config", "stats", "t5_embeddings"])
def test_bare_weights_file_without_a_piece_is_refused_naming_it(checkpoint, tmp_path, missing):
    weights, stats, t5 = make_bare_pieces(checkpoint, tmp_path / "bare")
    args = {"model_config": "tiny_test.yaml", "stats": stats, "t5_embeddings": t5, missing: ""}
    with pytest.raises(ConfigError, match=re.escape(f"{weights}: a bare weights file needs the {missing} parameter")):
        resolve_bundle(weights, **args)


def test_unreadable_or_missing_files_are_refused_in_one_line_naming_the_file(checkpoint, tmp_path):
    weights, stats, t5 = make_bare_pieces(checkpoint, tmp_path / "bare")
    bad = tmp_path / "stats.yaml"
    bad.write_text("actions_min: [0, 1]\n")
    cases = [((weights, "tiny_test.yaml", bad, t5), re.escape(f"{bad}: unreadable statistics")),
             ((weights, "tiny_test.yaml", tmp_path / "nope.json", t5), "nope.json: statistics file not found"),
             ((weights, "tiny_test.yaml", stats, tmp_path / "nope.pt"), "nope.pt: T5 embeddings file not found"),
             ((weights, "no_such_model.yaml", stats, t5), "no_such_model.yaml: model config not found"),
             ((tmp_path / "nowhere",), "nowhere: checkpoint not found"),
             ((tmp_path / "bare",), "not a checkpoint folder")]
    for args, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            resolve_bundle(*args)
        assert "\n" not in str(info.value)


def test_broken_metadata_is_refused_naming_the_file_and_key(checkpoint, tmp_path):
    folder = make_exported_bundle(checkpoint, tmp_path / "bundle")
    meta = json.loads((folder / EXPORT_META_FILE).read_text())
    (folder / EXPORT_META_FILE).write_text(json.dumps({k: v for k, v in meta.items() if k != "model"}))
    with pytest.raises(ConfigError, match=re.escape(f"{folder / EXPORT_META_FILE}: no 'model' key")):
        resolve_bundle(folder)
    assert resolve_bundle(folder, model_config="tiny_test.yaml").model_config.name == meta["model"]["name"]
    (folder / EXPORT_META_FILE).write_text(json.dumps(meta))
    (folder / STATS_FILE).unlink()
    with pytest.raises(ConfigError, match=re.escape(f"{folder / STATS_FILE}: statistics file not found")):
        resolve_bundle(folder)
    meta = json.loads((folder / EXPORT_META_FILE).read_text())
    meta["model"]["layout"]["chunk_len"] = "fifty"
    (folder / EXPORT_META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=re.escape(f"{folder / EXPORT_META_FILE}: model.layout.chunk_len")):
        resolve_bundle(folder)
    (folder / EXPORT_META_FILE).write_text("{truncated")
    with pytest.raises(ConfigError, match=re.escape(f"{folder / EXPORT_META_FILE}: unreadable checkpoint metadata")):
        resolve_bundle(folder)


def test_planning_bundle_must_share_statistics_layout_and_vae(checkpoint, tmp_path):
    policy = resolve_bundle(checkpoint)
    check_planning_compatible(policy, resolve_bundle(make_run_folder(checkpoint, tmp_path / "run")))
    other_stats = dataclasses.replace(policy, stats={**policy.stats, "actions_min": [0.0] * 14})
    with pytest.raises(ConfigError, match="other dataset statistics"):
        check_planning_compatible(policy, other_stats)
    cfg = policy.model_config
    other_layout = dataclasses.replace(policy, model_config=dataclasses.replace(
        cfg, layout=dataclasses.replace(cfg.layout, cameras=("cam_high",))))
    other_vae = dataclasses.replace(policy, model_config=dataclasses.replace(
        cfg, vae=dataclasses.replace(cfg.vae, latent_std=(1.0,) * 16)))
    for planning in (other_layout, other_vae):
        with pytest.raises(ConfigError, match="another latent layout or VAE"):
            check_planning_compatible(policy, planning)
        with pytest.raises(ConfigError, match="another latent layout or VAE"):
            build_engine(policy, planning, device="cpu")


def test_build_engine_loads_the_bundle_weights_and_statistics(checkpoint, tmp_path):
    weights, stats, t5 = make_bare_pieces(checkpoint, tmp_path / "bare")
    for b in (resolve_bundle(checkpoint), resolve_bundle(weights, "tiny_test.yaml", stats, t5)):
        eng = build_engine(b, device="cpu")
        saved = load_file(str(checkpoint / MODEL_FILE))
        assert all(torch.equal(v, saved["net." + k]) for k, v in eng.model.net.state_dict().items())
        assert eng.stats.actions_min.tolist() == b.stats["actions_min"] and eng.cfg == b.model_config


def test_resolving_a_bundle_does_not_import_torch():
    """Nodes resolve their checkpoint before deciding to build a model; torch stays out until then."""
    code = ("import sys; from cosmos_policy_ros.deploy.bundle import resolve_bundle; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
