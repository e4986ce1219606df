"""Every CLI and the policy node turn a bad input file into one error line naming the file: no traceback.

Each case copies a small good input (a random-weights bundle, a bag, an HDF5 episode), spoils one
file of it — cut short, replaced by another format (a PNG, text), by a pickle, or by a valid file of
another model layout — and runs the tool as a user would, in a subprocess. The pickles are booby-traps:
unpickling them would create a marker file, which must never appear (weights_only loading and the
restricted unpicklers never build arbitrary objects).
"""
from __future__ import annotations

import ast
import json
import os
import pathlib
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import cosmos_policy_ros
from cosmos_policy_ros.config import share_dir
from cosmos_policy_ros.deploy.bundle import EMBED_FILE, EXPORT_META_FILE, META_FILE, MODEL_FILE, STATS_FILE
from cosmos_policy_ros.errors import looks_like, one_line

slow = pytest.mark.slow  # each case starts a Python process (1-3 s of imports)

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "cosmos_policy_ros.cli"]
CKPT = [sys.executable, "-m", "cosmos_policy_ros.model.checkpoint_cli"]
POLICY_NODE = [sys.executable, "-m", "cosmos_policy_ros.nodes.policy_node"]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
# stderr lines that are not errors (warnings some libraries print on start-up)
HARMLESS = re.compile(r"^(\S+Warning: |\s+warnings\.warn)")


def test_every_project_error_type_is_a_cosmos_error():
    """run_node and the CLIs recognise project errors by CosmosError: no error class may forget it."""
    package = Path(cosmos_policy_ros.__file__).parent
    missing = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and node.name != "CosmosError":
                bases = [ast.unparse(b) for b in node.bases]
                if "CosmosError" not in bases and not any(b.endswith("Error") and b not in (
                        "ValueError", "RuntimeError", "KeyError", "OSError", "TypeError") for b in bases):
                    missing.append(f"{path.relative_to(package)}:{node.name}({', '.join(bases)})")
    assert not missing, missing


def test_one_line_and_looks_like():
    torch_refusal = "Weights only load failed. \x1b[1mdo those steps only if you trust it\x1b[0m.\n\t(1) ..."
    assert one_line(RuntimeError(torch_refusal)) == "Weights only load failed. do those steps only if you trust it."
    enoent = FileNotFoundError(2, "No such file or directory", "/x/y.json")
    assert one_line(enoent) == "/x/y.json: No such file or directory"
    assert one_line(KeyError("no T5 embedding for 'x'")) == "no T5 embedding for 'x'"
    assert one_line(ValueError("\n\n")) == "ValueError"
    heads = (b"", PNG[:16], pickle.dumps({"a": 1})[:16], b'{"a": 1}', b"hello", b"\0\1\2")
    assert [looks_like(h) for h in heads] == [
        "an empty file", "a PNG image", "a Python pickle", "JSON", "text", "binary data"]


class Booby:
    """Unpickling this creates the marker file (it must never happen)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def marker(root: Path) -> Path:
    return root / "PICKLE_WAS_EXECUTED"


def raw_pickle(root: Path) -> bytes:
    """A plain pickle (as upstream's T5 file is one) of a dict holding the booby-trap."""
    return pickle.dumps({"net.x": Booby(marker(root))})


def torch_pickle(root: Path, path: Path) -> None:
    """A torch.save zip whose data.pkl holds the booby-trap: torch.load(weights_only=True) refuses it."""
    torch.save({"net.x": torch.zeros(2), "trap": Booby(marker(root))}, path)


def other_layout(tmp: Path) -> dict:
    """tiny_test with a wider DiT: a valid model config that does not fit tiny_test weights."""
    data = yaml.safe_load((share_dir() / "config" / "model" / "tiny_test.yaml").read_text())
    data["model"]["dit"]["model_channels"] = 48
    return data


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Good inputs: a random-weights bundle (exported layout: policy.json, statistics beside), a bag, an episode."""
    from cosmos_policy_ros.data.aloha_hdf5 import write_episode
    from cosmos_policy_ros.data.bag_writer import BagWriter
    from cosmos_policy_ros.data.msg_types import typestore
    from cosmos_policy_ros.deploy.random_bundle import make_random_bundle

    root = tmp_path_factory.mktemp("bad_files")
    good = make_random_bundle(root / "good_bundle", "tiny_test")
    meta = json.loads((good / META_FILE).read_text())
    (good / STATS_FILE).write_text(json.dumps(meta.pop("stats")))
    (good / EXPORT_META_FILE).write_text(json.dumps(meta))  # no net_ema.* weights: not a training checkpoint
    (good / META_FILE).unlink()
    writer = BagWriter(root / "good_bag" / "episode_0000")
    ts = typestore()
    writer.add_topic("/chatter", "std_msgs/msg/String")
    for i in range(50):
        writer.write("/chatter", 10**9 + i * 10**7,
                     ts.serialize_cdr(ts.types["std_msgs/msg/String"](f"message {i} " * 20), "std_msgs/msg/String"))
    writer.close()
    T = 20
    write_episode(root / "good_episodes" / "episode_0.hdf5", np.zeros((T, 14)), np.zeros((T, 14)), np.zeros((T, 14)),
                  {"cam_high": np.zeros((T, 8, 8, 3), np.uint8)}, success=True, task="transfer_cube",
                  instruction="transfer the cube")
    (root / "other_layout.yaml").write_text(yaml.safe_dump(other_layout(root)))
    return root


def spoil(root: Path, name: str, source: str, target: str, how: str) -> tuple[Path, Path]:
    """Copy good input ``source`` to a case folder and spoil its file ``target``; (case copy, spoilt file)."""
    case = root / "cases" / name
    src = root / source
    if src.is_dir():
        shutil.copytree(src, case)
    else:
        case.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, case)
    bad = case / target if target else case
    if how == "truncate":
        data = bad.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif how == "png":
        bad.write_bytes(PNG)
    elif how == "text":
        bad.write_text("these are not the weights you are looking for\n")
    elif how == "pickle":
        bad.write_bytes(raw_pickle(root))
    elif how == "torch_pickle":
        torch_pickle(root, bad)
    elif how == "other_layout":
        meta = json.loads(bad.read_text())
        meta["model"] = other_layout(root)["model"]
        bad.write_text(json.dumps(meta))
    else:
        raise AssertionError(how)
    return case, bad


def run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID="66", PYTHONWARNINGS="ignore",
               NO_COLOR="", TERM="xterm-256color")
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_naming(proc: subprocess.CompletedProcess, bad: Path, root: Path, *words: str) -> str:
    """Non-zero exit; stderr one line, naming ``bad``, no ANSI escape, no traceback; no pickle executed."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not HARMLESS.match(ln)]
    assert len(lines) == 1, proc.stderr[-3000:]
    line = lines[0]
    assert str(bad) in line, line
    assert "\x1b" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for word in words:
        assert word in line, line
    assert not marker(root).exists(), "a pickle in a bad file was executed"
    print(line)  # shown with -s / -rP: the lines a user gets
    return line


# (case, good source, file spoilt, how, command after the tool name ({case}: the spoilt copy), words expected)
BUNDLE_CASES = [
    ("eval_weights_truncated", MODEL_FILE, "truncate", "truncated or corrupt safetensors"),
    ("eval_weights_pickle", MODEL_FILE, "pickle", "not a safetensors file (it looks like a Python pickle)"),
    ("eval_weights_other_layout", EXPORT_META_FILE, "other_layout", "first bad key"),
    ("eval_meta_truncated", EXPORT_META_FILE, "truncate", "unreadable checkpoint metadata"),
    ("eval_stats_pickle", STATS_FILE, "pickle", "unreadable statistics (not JSON: it looks like a Python pickle)"),
    ("eval_t5_torch_pickle", EMBED_FILE, "torch_pickle", "not a T5 embeddings file"),
    ("eval_t5_pickle", EMBED_FILE, "pickle", "refusing to load pathlib"),
    ("eval_t5_text", EMBED_FILE, "text", "it looks like text"),
]


@slow
@pytest.mark.parametrize("name,target,how,expected", BUNDLE_CASES, ids=[c[0] for c in BUNDLE_CASES])
def test_eval_names_the_bad_bundle_file(root, name, target, how, expected):
    case, bad = spoil(root, name, "good_bundle", target, how)
    # a wrong layout is found by the weights that do not fit it: the line names the weights file
    named = case / MODEL_FILE if how == "other_layout" else bad
    assert_one_line_naming(run([*CLI, "eval", str(case), "-n", "1"]), named, root, expected)


@slow
@pytest.mark.parametrize("how,expected", [("truncate", "truncated or corrupt safetensors"),
                                          ("other_layout", "first bad key")])
def test_train_init_from_names_the_bad_bundle_file(root, how, expected):
    case, bad = spoil(root, f"train_{how}", "good_bundle", MODEL_FILE if how == "truncate" else EXPORT_META_FILE, how)
    named = case / MODEL_FILE
    proc = run([*CLI, "train", "--config", "config/train/sim_small_planning.yaml", "--init-from", str(case),
                "--data", str(root / "good_episodes"), "--run", str(root / "cases" / f"run_{how}"), "--no-progress"])
    assert_one_line_naming(proc, named, root, expected)


CKPT_CASES = [
    ("ckpt_truncated.safetensors", "truncate", "truncated or corrupt safetensors"),
    ("ckpt_png.safetensors", "png", "not a safetensors file (it looks like a PNG image)"),
    ("ckpt_text.pt", "text", "it looks like text"),
    ("ckpt_pickle.pt", "pickle", "pickled Python object (pathlib.Path.touch)"),
    ("ckpt_torch_pickle.pt", "torch_pickle", "pickled Python object"),
]


@slow
@pytest.mark.parametrize("name,how,expected", CKPT_CASES, ids=[c[0] for c in CKPT_CASES])
def test_cosmos_ckpt_names_the_bad_file(root, name, how, expected):
    _, bad = spoil(root, name, f"good_bundle/{MODEL_FILE}", "", how)
    assert_one_line_naming(run([*CKPT, str(bad)]), bad, root, "error: ", expected)


@slow
def test_cosmos_ckpt_names_the_checkpoint_that_does_not_fit_the_config(root):
    good = root / "good_bundle" / MODEL_FILE
    proc = run([*CKPT, str(good), "--config", str(root / "other_layout.yaml")])
    assert proc.returncode == 1
    assert_one_line_naming(proc, good, root, "error: ", "first bad key")


BAG_CASES = [
    ("bag-info", "mcap_truncated", "episode_0000.mcap", "truncate"),
    ("convert", "mcap_png", "episode_0000.mcap", "png"),
    ("bag-info", "metadata_pickle", "metadata.yaml", "pickle"),
    ("convert", "metadata_text", "metadata.yaml", "text"),
]


@slow
@pytest.mark.parametrize("tool,name,target,how", BAG_CASES, ids=[f"{c[0]}-{c[1]}" for c in BAG_CASES])
def test_bag_tools_name_the_bad_bag(root, tool, name, target, how):
    case, bad = spoil(root, f"bag_{tool}_{name}", "good_bag", f"episode_0000/{target}", how)
    bag = case / "episode_0000"
    extra = ["-o", str(root / "cases" / f"out_{name}"), "--no-progress"] if tool == "convert" else []
    # a cut-off MCAP is found by rosbags' reader, which names the bag; a foreign file is named itself
    named = bag if how == "truncate" else bad
    line = assert_one_line_naming(run([*CLI, tool, str(bag), *extra]), named, root)
    assert line.startswith(f"cosmos-aloha {tool}: "), line


@slow
@pytest.mark.parametrize("how", ["truncate", "png"])
def test_episodes_names_the_bad_hdf5_file(root, how):
    case, bad = spoil(root, f"episodes_{how}", "good_episodes", "episode_0.hdf5", how)
    line = assert_one_line_naming(run([*CLI, "episodes", str(case)]), bad, root)
    assert line.startswith("cosmos-aloha episodes: "), line


@slow
def test_policy_node_names_the_truncated_weights(root):
    case, bad = spoil(root, "node_weights_truncated", "good_bundle", MODEL_FILE, "truncate")
    proc = run([*POLICY_NODE, "--ros-args", "-p", f"checkpoint:={case}"], timeout=120)
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = assert_one_line_naming(proc, bad, root, "truncated or corrupt safetensors")
    assert line.startswith("[policy] error: "), line
