"""Launch defaults that cannot hurt a robot, in both front ends (cosmos-aloha up, ros2 launch).

* A real-robot graph without policy_checkpoint is refused in one line before any node starts: the bundled
  checkpoint is a toy trained in the sim, never something to run on an arm.
* A graph that would start the sim refuses to when a real driver (xs_sdk) is on the ROS graph: the sim
  publishes on the robot's topic names. use_sim:=auto used to start it on any machine without
  /dev/ttyDXL_follower_*, e.g. a GPU workstation beside the robot PC.
* The executor's chunk mode defaults to what the policy checkpoint states (policy.json chunk_mode; a bare
  weights file is upstream's released checkpoint: synchronous), else the mode's default.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launch_standin import install, run_launch_file

from cosmos_policy_ros import cli, driver_check
from cosmos_policy_ros import graph as graph_mod
from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.deploy.bundle import EXPORT_META_FILE, MODEL_FILE

ROOT = Path(__file__).resolve().parents[2]
NO_CHECKPOINT = "use_sim is false: policy_checkpoint:=<folder> is required; the bundled checkpoint is a sim toy"


def _run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    return subprocess.run([sys.executable, "-m", "cosmos_policy_ros.cli", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def make_metadata_bundle(folder: Path, **meta) -> Path:
    """A bundle folder as graph resolution sees it: policy.json with `meta` beside a weights file (never read)."""
    folder.mkdir(parents=True)
    (folder / MODEL_FILE).write_bytes(b"")
    (folder / EXPORT_META_FILE).write_text(json.dumps(meta))
    return folder


def _executor_parameters(mode: str, given: dict[str, str]) -> dict:
    specs = graph_mod.resolve(mode, {"use_sim": "true", **given})
    return dict(next(s for s in specs if s.key == "executor").parameters)


def _executor_chunk_mode(mode: str, given: dict[str, str]) -> str:
    return _executor_parameters(mode, given)["chunk_mode"]


@pytest.fixture
def launch_standin(monkeypatch):
    install(monkeypatch)


# ---- a real robot needs a real checkpoint ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["direct", "planning"])
def test_real_robot_without_a_checkpoint_is_one_line_and_nothing_starts(mode):
    done = _run_cli("up", mode, "--real")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"cosmos-aloha: {NO_CHECKPOINT}"]
    assert done.stdout == ""  # `up` prints its mode line just before the supervisor starts the nodes
    done = _run_cli("up", mode, "use_sim:=false")
    assert (done.returncode, done.stderr.splitlines()) == (2, [f"cosmos-aloha: {NO_CHECKPOINT}"])


def test_cli_never_starts_the_supervisor_without_a_robot_checkpoint(monkeypatch, capsys):
    def no_supervisor(*args, **kwargs):
        raise AssertionError("the supervisor was started")

    monkeypatch.setattr(cli, "Supervisor", no_supervisor)
    assert cli.main(["up", "direct", "--real"]) == 2
    assert capsys.readouterr().err == f"cosmos-aloha: {NO_CHECKPOINT}\n"
    assert cli.main(["graph", "planning", "--real"]) == 2   # `graph` shows what `up` would do: the same line


@pytest.mark.parametrize("mode", ["direct", "planning"])
def test_ros2_launch_refuses_a_real_robot_without_a_checkpoint_before_any_node(launch_standin, mode):
    with pytest.raises(ConfigError) as err:
        run_launch_file(mode, {"use_sim": "false"})
    assert str(err.value) == NO_CHECKPOINT


def test_a_given_checkpoint_or_a_mode_without_a_policy_starts_on_the_robot(launch_standin, tmp_path):
    bundle = make_metadata_bundle(tmp_path / "lab_policy")
    _, nodes = run_launch_file("direct", {"use_sim": "false", "policy_checkpoint": str(bundle)})
    policy = next(n for n in nodes if n.kwargs["executable"] == "policy_node")
    assert policy.kwargs["parameters"][0]["checkpoint"] == str(bundle)
    # planning: "" = the policy checkpoint's own world model and value, never the bundled sim planning model
    _, nodes = run_launch_file("planning", {"use_sim": "false", "policy_checkpoint": str(bundle)})
    assert next(n for n in nodes if n.kwargs["executable"] == "planner_node").kwargs["parameters"][0][
        "planning_checkpoint"] == ""
    for mode in ("sim", "record"):  # no policy in these graphs: nothing to require
        graph_mod.resolve(mode, {"use_sim": "false"})


# ---- never a sim beside a live driver ----------------------------------------------------------------------


@pytest.fixture
def fake_driver(ros_context):
    """A node named like the Interbotix driver publishing the left follower's joint states, in this test's domain."""
    import rclpy
    from sensor_msgs.msg import JointState

    node = rclpy.create_node("xs_sdk", namespace="follower_left", context=ros_context)
    node.create_publisher(JointState, "/follower_left/joint_states", 10)
    yield node
    node.destroy_node()


def _cli_wait_for(sighting_node: str) -> None:
    """The test's own driver node is on the graph (then the CLI or launch file gets DISCOVERY_S of its own)."""
    found = driver_check.find_driver(["/follower_left/joint_states"], [], wait_s=5.0)
    assert found is not None and found.node == sighting_node


@pytest.mark.ros
@pytest.mark.parametrize("how, start", [
    (["--sim"], "cosmos-aloha: use_sim:=true but a real robot driver is on this ROS graph (node "
                "/follower_left/xs_sdk "),
    ([], "cosmos-aloha: use_sim:=auto: a real robot driver is on this ROS graph (node /follower_left/xs_sdk ")])
def test_cli_refuses_to_start_the_sim_beside_a_live_driver(fake_driver, how, start):
    _cli_wait_for("/follower_left/xs_sdk")
    t0 = time.monotonic()
    done = _run_cli("up", "sim", *how, "--duration", "5")
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    # seen as the publisher of the joint states or by its name first, whichever discovery delivers first
    assert line.startswith(start), line
    assert "publishes /follower_left/joint_states, " in line or "is running, " in line
    assert f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']})" in line
    assert ("another ROS_DOMAIN_ID" in line) and ("--real" in line) == (how == [])
    assert done.stdout == ""   # no mode line: nothing was started
    assert time.monotonic() - t0 < 30


@pytest.mark.ros
def test_ros2_launch_refuses_to_start_the_sim_beside_a_live_driver(launch_standin, fake_driver):
    _cli_wait_for("/follower_left/xs_sdk")
    with pytest.raises(ConfigError, match=r"^use_sim:=true but a real robot driver is on this ROS graph \(node "
                                          r"/follower_left/xs_sdk (publishes /follower_left/joint_states|is "
                                          r"running), "):
        run_launch_file("direct", {"use_sim": "true"})
    # a real-robot graph wants the driver there: no check, no refusal
    bundle = str(ROOT / "checkpoints" / "sim_small_transfer_cube")
    _, nodes = run_launch_file("direct", {"use_sim": "false", "policy_checkpoint": bundle})
    assert "sim_node" not in [n.kwargs["executable"] for n in nodes]


@pytest.mark.ros
def test_our_own_sim_is_not_a_driver_but_xs_sdk_by_name_is(ros_context):
    import rclpy
    from sensor_msgs.msg import JointState

    ours = rclpy.create_node("aloha_sim", context=ros_context)
    ours.create_publisher(JointState, "/follower_left/joint_states", 10)
    topics = ["/follower_left/joint_states", "/follower_right/joint_states"]
    try:
        assert driver_check.find_driver(topics, ["aloha_sim"], wait_s=1.0) is None
        silent = rclpy.create_node("xs_sdk", namespace="follower_right", context=ros_context)
        try:
            found = driver_check.find_driver(topics, ["aloha_sim"], wait_s=5.0)
            assert found == driver_check.DriverSighting("/follower_right/xs_sdk", "")
        finally:
            silent.destroy_node()
    finally:
        ours.destroy_node()


def test_only_graphs_that_start_the_sim_look_for_a_driver(monkeypatch, tmp_path):
    def no_discovery(*args, **kwargs):
        raise AssertionError("discovery ran")

    monkeypatch.setattr(driver_check, "find_driver", no_discovery)
    bundle = str(make_metadata_bundle(tmp_path / "b"))
    for mode, use_sim in (("direct", "false"), ("planning", "false"), ("sim", "false"), ("record", "false")):
        args = graph_mod.resolve_mode_arguments(graph_mod.load_graph(), mode,
                                                {"use_sim": use_sim, "policy_checkpoint": bundle})
        driver_check.refuse_sim_beside_driver(graph_mod.resolve(mode, args), args, use_sim)


# ---- the chunk mode follows the checkpoint -----------------------------------------------------------------


def test_chunk_mode_defaults_to_the_modes_own_for_the_bundled_checkpoint():
    """The bundled sim checkpoint states none: direct blends (as the demo always ran it), planning plays each
    chosen chunk whole (a plan that outlasts a chunk would otherwise arrive stale)."""
    assert _executor_chunk_mode("direct", {}) == "blend"
    assert _executor_chunk_mode("planning", {}) == "synchronous"


def test_chunk_mode_default_follows_the_bundle_metadata(tmp_path):
    upstream_like = make_metadata_bundle(tmp_path / "a", chunk_mode="synchronous")
    assert _executor_chunk_mode("direct", {"policy_checkpoint": str(upstream_like)}) == "synchronous"
    per_mode = make_metadata_bundle(tmp_path / "b", chunk_mode={"direct": "temporal_ensemble"})
    assert _executor_chunk_mode("direct", {"policy_checkpoint": str(per_mode)}) == "temporal_ensemble"
    assert _executor_chunk_mode("planning", {"policy_checkpoint": str(per_mode)}) == "synchronous"
    # a bare weights file (the released checkpoint): upstream's cadence, whole chunk then re-query at rest
    released = tmp_path / "Cosmos-Policy-ALOHA-Predict2-2B.pt"
    released.write_bytes(b"")
    assert _executor_chunk_mode("direct", {"policy_checkpoint": str(released)}) == "synchronous"
    # an explicit argument wins over the checkpoint
    assert _executor_chunk_mode("direct", {"policy_checkpoint": str(upstream_like), "chunk_mode": "blend"}) == "blend"


def test_synchronous_steps_follow_the_bundle_in_chunk_mode_synchronous(tmp_path):
    """A bundle evaluated re-querying every K actions (policy.json synchronous_steps) is launched that way; an
    explicit argument wins, and another chunk mode leaves it to config/executor.yaml."""
    bundle = str(make_metadata_bundle(tmp_path / "a", chunk_mode="synchronous", synchronous_steps=25))
    assert _executor_parameters("direct", {"policy_checkpoint": bundle})["synchronous_steps"] == 25
    assert _executor_parameters("direct", {"policy_checkpoint": bundle, "synchronous_steps": "10"})[
        "synchronous_steps"] == 10
    assert _executor_parameters("direct", {"policy_checkpoint": bundle, "chunk_mode": "blend"})[
        "synchronous_steps"] == ""
    assert _executor_parameters("direct", {})["synchronous_steps"] == ""   # the bundled sim_small states none
    for bad in (0, "25", True):
        wrong = make_metadata_bundle(tmp_path / f"bad_{bad}", chunk_mode="synchronous", synchronous_steps=bad)
        with pytest.raises(ConfigError) as err:
            graph_mod.resolve("direct", {"use_sim": "true", "policy_checkpoint": str(wrong)})
        assert str(err.value) == (f"{wrong / EXPORT_META_FILE}: synchronous_steps: expected an integer >= 1 "
                                  f"(actions of each chunk), got {bad!r}")


def test_the_demo_checkpoint_is_launched_as_it_was_evaluated():
    """cosmos-aloha demo's default bundle (sim_crop) states chunk mode synchronous, 25 actions per chunk: the
    setting of its reported evaluation (`cosmos-aloha eval --execute 25`, eval_transfer_cube_50.json beside it)."""
    from cosmos_policy_ros.deploy.bundle import default_demo_checkpoint

    folder = default_demo_checkpoint()
    if not folder.is_dir():
        pytest.skip("the bundled checkpoints are not installed in this stage")
    params = _executor_parameters("direct", {"policy_checkpoint": str(folder)})
    assert (params["chunk_mode"], params["synchronous_steps"]) == ("synchronous", 25)
    report = json.loads((folder / "eval_transfer_cube_50.json").read_text())
    assert report["settings"]["execute"] == 25 and report["settings"]["safety"] is True


def test_chunk_mode_from_the_bundle_reaches_ros2_launch_and_cosmos_aloha_graph(launch_standin, tmp_path):
    bundle = make_metadata_bundle(tmp_path / "a", chunk_mode="open_loop")
    _, nodes = run_launch_file("direct", {"use_sim": "false", "policy_checkpoint": str(bundle)})
    executor = next(n for n in nodes if n.kwargs["executable"] == "executor_node")
    assert executor.kwargs["parameters"][0]["chunk_mode"] == "open_loop"
    done = _run_cli("graph", "direct", "--real", f"policy_checkpoint:={bundle}")
    assert done.returncode == 0, done.stderr
    assert "-p chunk_mode:=open_loop" in done.stdout


def test_a_wrong_chunk_mode_in_the_bundle_is_one_line_naming_the_file(tmp_path):
    bundle = make_metadata_bundle(tmp_path / "a", chunk_mode="fast")
    with pytest.raises(ConfigError) as err:
        graph_mod.resolve("direct", {"use_sim": "true", "policy_checkpoint": str(bundle)})
    assert str(err.value) == (f"{bundle / EXPORT_META_FILE}: chunk_mode: expected one of open_loop, temporal_ensemble, "
                              f"blend, synchronous (or a mapping launch mode -> one of them), got 'fast'")
    with pytest.raises(ConfigError, match=r"nowhere: checkpoint not found$"):
        graph_mod.resolve("direct", {"use_sim": "true", "policy_checkpoint": str(tmp_path / "nowhere")})
