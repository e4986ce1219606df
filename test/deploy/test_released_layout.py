"""Upstream's released checkpoint folder, as downloaded, resolves by file name; each missing file is named in one
line with the repository and path it comes from; the weights load strictly despite TE extra state; a planning
folder takes what it lacks from the policy; the direct graph runs from the folder through launch arguments alone."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from released_fixture import INSTRUCTIONS, write_released_folder

from cosmos_policy_ros import graph, topics
from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.deploy.bundle import build_engine, launch_chunk_mode, resolve_bundle
from cosmos_policy_ros.inference.preprocessing import UPSTREAM
from cosmos_policy_ros.model import released
from cosmos_policy_ros.model.checkpoint import read_state_dict
from cosmos_policy_ros.model.checkpoint_cli import main as ckpt_main


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_released_folder(tmp_path_factory.mktemp("released") / "Cosmos-Policy-ALOHA-Predict2-2B")


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def test_released_folder_resolves_each_file_by_its_released_name(folder):
    b = resolve_bundle(folder, model_config="tiny_test.yaml")
    assert b.weights == folder / "Cosmos-Policy-ALOHA-Predict2-2B.pt"
    assert b.stats_file == folder / "aloha_dataset_statistics.json" and len(b.stats["proprio_median"]) == 14
    assert b.t5_embeddings == folder / "aloha_t5_embeddings.pkl"
    assert b.tokenizer == folder / "tokenizer" / "tokenizer.pth"
    assert b.meta_file is None and b.preprocessing == UPSTREAM and b.gripper_convention is None
    assert b.model_name == "Cosmos-Policy-ALOHA-Predict2-2B" and b.instruction == ""
    assert launch_chunk_mode(folder, "direct") == "synchronous"   # upstream's cadence, as for a bare file


def test_without_model_config_a_released_folder_is_the_2b_model(folder):
    assert resolve_bundle(folder).model_config.name == "cosmos_policy_2b_aloha"


def test_tokenizer_beside_the_weights_and_files_found_by_pattern(folder, tmp_path):
    d = _copy(folder, tmp_path / "snapshot")
    shutil.move(d / "tokenizer" / "tokenizer.pth", d / "tokenizer.pth")
    (d / "Cosmos-Policy-ALOHA-Predict2-2B.pt").rename(d / "model_50000.pt")
    (d / "aloha_dataset_statistics.json").rename(d / "dataset_statistics.json")
    b = resolve_bundle(d, model_config="tiny_test.yaml")
    assert (b.tokenizer, b.weights.name, b.stats_file.name) == (d / "tokenizer.pth", "model_50000.pt",
                                                                "dataset_statistics.json")
    (d / "extra.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=re.escape("several DiT weights files (extra.pt, model_50000.pt)")):
        resolve_bundle(d, model_config="tiny_test.yaml")


def test_released_weights_with_te_extra_state_load_strictly_and_act(folder):
    raw = torch.load(folder / "Cosmos-Policy-ALOHA-Predict2-2B.pt", weights_only=False)
    kinds = {type(v).__name__ for k, v in raw.items() if k.endswith("_extra_state")}
    assert kinds == {"BytesIO", "NoneType", "Tensor"}
    assert not any(k.endswith("_extra_state") for k in read_state_dict(folder / "Cosmos-Policy-ALOHA-Predict2-2B.pt"))
    engine = build_engine(resolve_bundle(folder, model_config="tiny_test.yaml"), device="cpu")
    net = engine.model.net.state_dict()
    assert all(torch.equal(net[k[4:]].to(torch.bfloat16), v) for k, v in raw.items()
               if isinstance(v, torch.Tensor) and v.is_floating_point() and not k.endswith("_extra_state"))
    vae = torch.load(folder / "tokenizer" / "tokenizer.pth", weights_only=True)
    assert all(torch.equal(engine.model.vae.state_dict()[k], v) for k, v in vae.items())
    rng = np.random.default_rng(0)
    obs = {"images": {c: rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for c in engine.layout.cameras},
           "proprio": np.array(engine.stats.proprio_min) + 0.1, "instruction": INSTRUCTIONS[0]}
    assert engine.act(obs, seed=0).actions.shape == (50, 14)


@pytest.mark.parametrize("name,repo,repo_path,argument", [
    ("Cosmos-Policy-ALOHA-Predict2-2B.pt", released.POLICY_REPO, "Cosmos-Policy-ALOHA-Predict2-2B.pt", "checkpoint"),
    ("aloha_dataset_statistics.json", released.POLICY_REPO, "aloha_dataset_statistics.json", "stats"),
    ("aloha_t5_embeddings.pkl", released.POLICY_REPO, "aloha_t5_embeddings.pkl", "t5_embeddings"),
    ("tokenizer", released.BASE_REPO, "tokenizer/tokenizer.pth", "tokenizer"),
])
def test_a_missing_file_is_named_in_one_line_with_where_to_get_it(folder, tmp_path, name, repo, repo_path, argument):
    d = _copy(folder, tmp_path / "partial")
    target = d / name
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(ConfigError) as info:
        resolve_bundle(d, model_config="tiny_test.yaml")
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"{d}: no ")
    assert f"download {repo_path} from https://huggingface.co/{repo}" in line and f"{argument}:=<file>" in line


def test_files_that_live_elsewhere_are_given_by_argument(folder, tmp_path):
    d = _copy(folder, tmp_path / "weights_only")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("aloha_dataset_statistics.json", "aloha_t5_embeddings.pkl", "tokenizer/tokenizer.pth"):
        shutil.move(d / name, elsewhere / Path(name).name)
    b = resolve_bundle(d / "Cosmos-Policy-ALOHA-Predict2-2B.pt", model_config="tiny_test.yaml",
                       stats=elsewhere / "aloha_dataset_statistics.json",
                       t5_embeddings=elsewhere / "aloha_t5_embeddings.pkl", tokenizer=elsewhere / "tokenizer.pth")
    assert b.tokenizer == elsewhere / "tokenizer.pth" and b.stats_file.parent == elsewhere
    assert build_engine(b, device="cpu").text.instructions == sorted(INSTRUCTIONS)


def test_a_released_planning_folder_takes_what_it_lacks_from_the_policy(folder, tmp_path):
    policy = resolve_bundle(folder, model_config="tiny_test.yaml")
    planning_dir = tmp_path / "Cosmos-Policy-ALOHA-Planning-Model-Predict2-2B"
    write_released_folder(tmp_path / "other", seed=1)
    planning_dir.mkdir()
    shutil.copy2(tmp_path / "other" / "Cosmos-Policy-ALOHA-Predict2-2B.pt", planning_dir / "planning_18k.pt")
    planning = resolve_bundle(planning_dir, fallback=policy)
    assert planning.weights == planning_dir / "planning_18k.pt" and planning.model_config == policy.model_config
    assert (planning.stats, planning.t5_embeddings, planning.tokenizer) == (policy.stats, policy.t5_embeddings,
                                                                           policy.tokenizer)
    engine = build_engine(policy, planning, device="cpu")
    assert engine.planning_model is not engine.model
    empty = tmp_path / "empty_planning"
    empty.mkdir()
    with pytest.raises(ConfigError, match=re.escape(f"https://huggingface.co/{released.PLANNING_REPO}")):
        resolve_bundle(empty, fallback=policy)


def test_cosmos_ckpt_reports_what_a_folder_holds_and_what_is_missing(folder, tmp_path, capsys):
    assert ckpt_main([str(folder), "--config", "config/model/tiny_test.yaml"]) == 0
    out = capsys.readouterr().out
    assert "tokenizer/tokenizer.pth" in out and "aloha_t5_embeddings.pkl" in out and "fits" in out
    assert "bfloat16" in out and "_extra_state entries dropped" in out
    d = _copy(folder, tmp_path / "no_tokenizer")
    shutil.rmtree(d / "tokenizer")
    assert ckpt_main([str(d)]) == 1
    captured = capsys.readouterr()
    assert "Wan2.1 tokenizer: MISSING" in captured.out
    (err,) = captured.err.strip().splitlines()
    assert f"https://huggingface.co/{released.BASE_REPO}" in err and "tokenizer:=<file>" in err


def _ros_env() -> dict:
    env = os.environ.copy()
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=os.environ["ROS_DOMAIN_ID"])
    return env


@pytest.mark.ros
def test_the_policy_node_without_the_tokenizer_stops_with_one_line(folder, tmp_path):
    d = _copy(folder, tmp_path / "no_tokenizer")
    shutil.rmtree(d / "tokenizer")
    run = subprocess.run([sys.executable, "-m", "cosmos_policy_ros.nodes.policy_node", "--ros-args",
                          "-p", f"checkpoint:={d}", "-p", "model_config:=tiny_test.yaml"],
                         capture_output=True, text=True, timeout=120, env=_ros_env())
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if "Cosmos-Predict2-2B-Video2World" in line]
    assert len(lines) == 1 and "tokenizer/tokenizer.pth" in lines[0], run.stderr


@pytest.mark.ros
@pytest.mark.slow
def test_the_direct_graph_runs_from_the_released_folder_through_launch_arguments_alone(folder, ros_context):
    """`cosmos-aloha up direct --sim policy_checkpoint:=DIR ...` publishes an ActionChunk of that checkpoint."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from cosmos_policy_ros.msg import ActionChunk

    node = rclpy.create_node("released_graph_test", context=ros_context)
    chunks = []
    node.create_subscription(ActionChunk, topics.ACTION_CHUNK, chunks.append, 10)
    ex = SingleThreadedExecutor(context=ros_context)
    ex.add_node(node)
    up = subprocess.Popen([sys.executable, "-m", "cosmos_policy_ros.cli", "up", "direct", "--sim",
                           f"policy_checkpoint:={folder}", "model_config:=tiny_test.yaml",
                           f"instruction:={INSTRUCTIONS[0]}", "sim_width:=64", "sim_height:=64",
                           "sim_camera_rate_hz:=5.0", "autostart:=true", "--duration", "240"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_ros_env(),
                          start_new_session=True)
    try:
        end = time.monotonic() + 200
        while not chunks and time.monotonic() < end and up.poll() is None:
            ex.spin_once(timeout_sec=0.2)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGINT)
        out = up.communicate(timeout=60)[0]
        node.destroy_node()
    assert chunks, out[-3000:]
    msg = chunks[0]
    assert msg.model_name == "Cosmos-Policy-ALOHA-Predict2-2B" and msg.source == "policy"
    assert len(msg.trajectory.points) == 50 and msg.instruction == INSTRUCTIONS[0]


def test_the_graph_passes_the_file_arguments_and_runs_a_released_folder_synchronously(folder, tmp_path):
    specs = graph.resolve("planning", {"use_sim": "true", "policy_checkpoint": str(folder),
                                       "stats": str(tmp_path / "s.json"), "tokenizer": "~/tok.pth"})
    params = {s.key: dict(s.parameters) for s in specs}
    assert params["executor"]["chunk_mode"] == "synchronous"
    assert params["planner"]["stats"] == str(tmp_path / "s.json") and params["planner"]["t5_embeddings"] == ""
    assert params["planner"]["tokenizer"] == str(Path("~/tok.pth").expanduser())
    direct = {s.key: dict(s.parameters) for s in graph.resolve("direct", {"use_sim": "true",
                                                                          "policy_checkpoint": str(folder)})}
    assert direct["executor"]["chunk_mode"] == "synchronous" and direct["policy"]["tokenizer"] == ""
