"""`make demo`'s command runs the direct graph on the sim and writes a truthful report."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_demo_runs_episodes_and_reports(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "cosmos_policy_ros.cli", "demo", "--episodes", "1", "--episode-s", "2",
                           "--width", "96", "--height", "72", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "demo_report.json").read_text())
    assert len(report["episodes"]) == 1 and report["episodes"][0]["chunks"] >= 1
    assert report["chunk_mode"] == "synchronous"   # as the demo's bundle states (policy.json), as it was evaluated
    assert report["executor"]["chunks_accepted"] >= 1
    assert "success:" in proc.stdout and "chunk latency" in proc.stdout
    from PIL import Image
    strip = Image.open(out / report["episodes"][0]["strip"])   # per-episode PNG strip, through the graph
    assert strip.height == 72 + 14 and strip.width >= 2 * 96     # frames at 0 s, 1 s, ... and the last one
    if report["note"]:  # no bundled checkpoint: the demo must say it runs random weights
        assert "RANDOM weights" in proc.stdout
    assert_episode_media(out, report["episodes"][0], proc.stdout)


def assert_episode_media(out, episode: dict, stdout: str) -> None:
    """The episode's GIF plays the sim's large viewer (not the policy's 96x72 input) with the arms moving,
    its chunk plot is a picture, and the printed summary says where both are."""
    import numpy as np
    from PIL import Image, ImageSequence

    from cosmos_policy_ros.sim.viewer import load_viewer_config

    viewer = load_viewer_config()
    with Image.open(out / episode["animation"]) as gif:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    assert len(frames) >= 3
    assert frames[0].shape[0] >= viewer.height and frames[0].shape[1] >= viewer.width
    pictures = [f[:viewer.height] for f in frames]   # without the caption band, whose time always changes
    assert any(not np.array_equal(pictures[0], p) for p in pictures[1:])
    with Image.open(out / episode["chunk_plot"]) as plot:
        assert plot.width >= 800
    assert str(out / episode["animation"]) in stdout and str(out / episode["chunk_plot"]) in stdout


def test_demo_runs_the_planning_graph(tmp_path):
    """--mode planning: the planner node (best-of-N, CPU-sized) drives the sim through the same executor."""
    out = tmp_path / "demo_planning"
    proc = subprocess.run([sys.executable, "-m", "cosmos_policy_ros.cli", "demo", "--mode", "planning",
                           "--episodes", "1", "--episode-s", "6", "--width", "96", "--height", "72", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "demo_report.json").read_text())
    assert report["mode"] == "planning" and report["chunk_mode"] == "synchronous"
    assert report["episodes"][0]["chunks"] >= 1 and report["executor"]["chunks_accepted"] >= 1
    assert "best-of-N planner" in proc.stdout


@pytest.mark.parametrize("kind", ["bundled", "random", "missing"])
def test_demo_renders_at_the_size_the_checkpoint_was_trained_on(tmp_path, kind):
    """Our sim checkpoints (center_crop false) get square renders at their image size; others 128x96."""
    from pathlib import Path

    from cosmos_policy_ros.demo import camera_size
    from cosmos_policy_ros.deploy.bundle import default_checkpoint
    from cosmos_policy_ros.deploy.random_bundle import make_random_bundle

    ckpt = {"bundled": default_checkpoint, "missing": lambda: Path(tmp_path / "nothing"),
            "random": lambda: make_random_bundle(tmp_path / "random", "tiny_test")}[kind]()
    want = (64, 64) if kind == "bundled" else (128, 96)   # the nodes' default bundle, 64 px without a crop
    assert camera_size(ckpt, None, None) == want
    assert camera_size(ckpt, 96, None) == (96, 96)      # an explicit width wins, height follows it


def test_the_demo_runs_the_cropped_checkpoint_at_its_render_size():
    """cosmos-aloha demo's default bundle crops cam_high to the workspace: its demos were rendered at 240 px."""
    from cosmos_policy_ros.demo import _checkpoint, camera_size
    from cosmos_policy_ros.deploy.bundle import DEMO_CHECKPOINT, default_checkpoint

    checkpoint, note = _checkpoint("", "direct")
    assert note == "" and checkpoint.as_posix().endswith(DEMO_CHECKPOINT)
    assert camera_size(checkpoint, None, None) == (240, 240)
    assert _checkpoint("", "planning")[0] == default_checkpoint()   # the policy the planning model was tuned from
