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
    check_gripper_convention,
    check_planning_compatible,
    default_checkpoint,
    default_planning_checkpoint,
    resolve_bundle,
)
from cosmos_policy_ros.deploy.random_bundle import make_random_bundle
from cosmos_policy_ros.inference.preprocessing import TRAINER, UPSTREAM
from cosmos_policy_ros.model.config import ModelConfig
from cosmos_policy_ros.robot.aloha import DEFAULT_ROBOT_CONFIG, AlohaRobot


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
    assert not b.ema and b.preprocessing == TRAINER and b.tokenizer is None
    assert dataclasses.replace(b, ema=True).ema   # evaluation runs a training checkpoint on its EMA weights


def test_exported_bundle_reads_statistics_beside_policy_json(checkpoint, tmp_path):
    b = resolve_bundle(make_exported_bundle(checkpoint, tmp_path / "bundle"))
    assert b.meta_file.name == EXPORT_META_FILE and b.stats_file == tmp_path / "bundle" / STATS_FILE
    assert b.stats == _inline_stats(checkpoint) and "stats" not in b.meta
    assert b.model_config == resolve_bundle(checkpoint).model_config
    assert b.ema and not b.preprocessing.center_crop and b.action_period_s == 0.02


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
    assert b.preprocessing == UPSTREAM and not b.ema and "@" not in b.checkpoint_id
    assert b.tokenizer is None   # our .safetensors carries vae.* keys: no tokenizer needed


def test_explicit_arguments_override_the_bundle_metadata(checkpoint, tmp_path):
    other = tmp_path / "other_stats.json"
    other.write_text(json.dumps({**_inline_stats(checkpoint), "note": "other"}))
    b = resolve_bundle(checkpoint, stats=other)
    assert b.stats["note"] == "other" and b.stats_file == other


@pytest.mark.parametrize("missing,released_name", [("stats", "aloha_dataset_statistics.json"),
                                                    ("t5_embeddings", "aloha_t5_embeddings.pkl")])
def test_bare_weights_file_without_a_piece_is_refused_naming_it_and_where_to_get_it(checkpoint, tmp_path, missing,
                                                                                     released_name):
    weights, stats, t5 = make_bare_pieces(checkpoint, tmp_path / "bare")
    args = {"model_config": "tiny_test.yaml", "stats": stats, "t5_embeddings": t5, missing: ""}
    with pytest.raises(ConfigError) as info:
        resolve_bundle(weights, **args)
    line = str(info.value)
    assert line.startswith(f"{weights.parent}: no ") and released_name in line and "\n" not in line
    assert "huggingface.co/nvidia/Cosmos-Policy-ALOHA-Predict2-2B" in line and f"{missing}:=<file>" in line


def test_bare_weights_file_without_a_model_config_takes_the_released_one(checkpoint, tmp_path):
    weights, stats, t5 = make_bare_pieces(checkpoint, tmp_path / "bare")
    assert resolve_bundle(weights, stats=stats, t5_embeddings=t5).model_config.name == "cosmos_policy_2b_aloha"


def test_unreadable_or_missing_files_are_refused_in_one_line_naming_the_file(checkpoint, tmp_path):
    weights, stats, t5 = make_bare_pieces(checkpoint, tmp_path / "bare")
    bad = tmp_path / "stats.yaml"
    bad.write_text("actions_min: [0, 1]\n")
    cases = [((weights, "tiny_test.yaml", bad, t5), re.escape(f"{bad}: unreadable statistics")),
             ((weights, "tiny_test.yaml", tmp_path / "nope.json", t5), "nope.json: statistics file not found"),
             ((weights, "tiny_test.yaml", stats, tmp_path / "nope.pt"), "nope.pt: T5 embeddings file not found"),
             ((weights, "no_such_model.yaml", stats, t5), "no_such_model.yaml: model config not found"),
             ((tmp_path / "nowhere",), "nowhere: checkpoint not found"),
             ((weights, "tiny_test.yaml", stats, t5, tmp_path / "nope.pth"), "nope.pth: tokenizer file not found"),
             ((tmp_path / "bare",), "bare: no dataset statistics \\(aloha_dataset_statistics.json\\)")]
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


# ---- gripper convention: the constants that normalised the training data must be the robot's ----------------

ROBOT_ROS1 = "robot/aloha_ros1.yaml"


def make_bundle_with_convention(checkpoint: Path, dest: Path, convention: dict | None) -> Path:
    """An exported bundle whose policy.json records `convention` (None: the field left out, as upstream's)."""
    folder = make_exported_bundle(checkpoint, dest)
    meta = json.loads((folder / EXPORT_META_FILE).read_text())
    meta.pop("gripper_convention", None)
    if convention is not None:
        meta["gripper_convention"] = convention
    (folder / EXPORT_META_FILE).write_text(json.dumps(meta))
    return folder


def _convention(robot_config: str) -> dict:
    return AlohaRobot.from_yaml(robot_config).config.gripper.convention_record()


def test_bundles_record_the_gripper_convention_they_were_trained_with(checkpoint):
    """Our random and exported bundles, and both bundled sim checkpoints (made from SimAloha with the default
    robot config), record the Interbotix constants and pass with the default robot config."""
    interbotix = _convention(DEFAULT_ROBOT_CONFIG)
    assert interbotix["name"] == "aloha_interbotix" and interbotix["follower_position_close"] == 0.044
    for folder in (checkpoint, default_checkpoint(), default_planning_checkpoint()):
        bundle = resolve_bundle(folder)
        assert bundle.gripper_convention == interbotix, folder
        assert check_gripper_convention(bundle, AlohaRobot.from_yaml()) == []


def test_a_bundle_with_another_gripper_convention_is_refused_naming_file_both_conventions_and_fix(checkpoint, tmp_path):
    folder = make_bundle_with_convention(checkpoint, tmp_path / "ros1_data", _convention(ROBOT_ROS1))
    with pytest.raises(ConfigError) as err:
        check_gripper_convention(resolve_bundle(folder), AlohaRobot.from_yaml())
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(f"{folder / EXPORT_META_FILE}: gripper convention aloha_ros1: follower finger "
                           f"0.01844..0.058 m, follower joint -0.6213..1.491 rad differs from the robot config ")
    assert "aloha_interbotix.yaml (aloha_interbotix: follower finger 0.044..0.0579 m" in line
    assert line.endswith("run with robot_config:=robot/aloha_ros1.yaml or re-normalise the episodes with this "
                         "robot's constants and retrain")
    # the robot config it names is accepted; a renamed copy of the same constants is accepted too
    assert check_gripper_convention(resolve_bundle(folder), AlohaRobot.from_yaml(ROBOT_ROS1)) == []
    renamed = make_bundle_with_convention(checkpoint, tmp_path / "renamed", {**_convention(ROBOT_ROS1),
                                                                              "name": "lab_3"})
    assert check_gripper_convention(resolve_bundle(renamed), AlohaRobot.from_yaml(ROBOT_ROS1)) == []


def test_constants_no_robot_config_has_are_refused_without_a_config_to_suggest(checkpoint, tmp_path):
    odd = {**_convention(DEFAULT_ROBOT_CONFIG), "name": "lab_gripper", "follower_joint_close": 0.5}
    folder = make_bundle_with_convention(checkpoint, tmp_path / "odd", odd)
    with pytest.raises(ConfigError, match=r"lab_gripper: .* differs from .*; re-normalise the episodes with this "
                                          r"robot's constants and retrain$"):
        check_gripper_convention(resolve_bundle(folder), AlohaRobot.from_yaml())


def test_a_bundle_without_the_field_warns_naming_upstreams_assumption(checkpoint, tmp_path):
    """The released checkpoint records nothing: assumed to be upstream's (ROS 1 constants), a warning not an error."""
    folder = make_bundle_with_convention(checkpoint, tmp_path / "upstream_like", None)
    bundle = resolve_bundle(folder)
    assert bundle.gripper_convention is None
    (line,) = check_gripper_convention(bundle, AlohaRobot.from_yaml())
    assert line.startswith(f"{folder / EXPORT_META_FILE}: no gripper_convention recorded: assuming upstream's "
                           f"(aloha_ros1: follower finger 0.01844..0.058 m")
    assert line.endswith("run with robot_config:=robot/aloha_ros1.yaml unless the data was recorded with them")
    (line,) = check_gripper_convention(bundle, AlohaRobot.from_yaml(ROBOT_ROS1))
    assert "robot_config:=" not in line   # the robot config already has upstream's constants


def test_a_malformed_gripper_convention_is_one_line_naming_the_key(checkpoint, tmp_path):
    broken = {**_convention(DEFAULT_ROBOT_CONFIG), "leader_joint_open": "wide"}
    folder = make_bundle_with_convention(checkpoint, tmp_path / "broken", broken)
    with pytest.raises(ConfigError, match=re.escape(f"{folder / EXPORT_META_FILE}: gripper_convention."
                                                    f"leader_joint_open: expected a number, got 'wide'")):
        resolve_bundle(folder)


def test_training_data_that_squeezes_past_the_gripper_range_is_reported(checkpoint, tmp_path):
    folder = make_exported_bundle(checkpoint, tmp_path / "squeeze")
    stats = json.loads((folder / STATS_FILE).read_text())
    stats["actions_min"][6] = -0.25                     # the leader squeezed well past its calibrated close
    (folder / STATS_FILE).write_text(json.dumps(stats))
    (line,) = check_gripper_convention(resolve_bundle(folder), AlohaRobot.from_yaml())
    assert line.startswith(f"{folder / STATS_FILE}: the training data's gripper actions span [-0.250, ")
    assert "clips gripper commands to [-0.1, 1] (gripper_command_range)" in line


def test_evaluation_refuses_another_gripper_convention_in_one_line(checkpoint, tmp_path, capsys):
    from cosmos_policy_ros.evaluation import cli as eval_cli

    folder = make_bundle_with_convention(checkpoint, tmp_path / "ros1_data", _convention(ROBOT_ROS1))
    assert eval_cli.main([str(folder), "-n", "1"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: {folder / EXPORT_META_FILE}: gripper convention aloha_ros1")


@pytest.mark.ros
def test_the_policy_node_refuses_another_gripper_convention_before_loading_the_model(checkpoint, tmp_path):
    from cosmos_policy_ros.ros_env import local_ros_env

    folder = make_bundle_with_convention(checkpoint, tmp_path / "ros1_data", _convention(ROBOT_ROS1))
    done = subprocess.run([sys.executable, "-m", "cosmos_policy_ros.nodes.policy_node", "--ros-args",
                           "-r", "__node:=convention_test_policy", "-p", f"checkpoint:={folder}"],
                          capture_output=True, text=True, timeout=120, env=local_ros_env())
    assert done.returncode == 1
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and f"{folder / EXPORT_META_FILE}: gripper convention aloha_ros1" in lines[0], lines
    assert "robot_config:=robot/aloha_ros1.yaml" in lines[0]
