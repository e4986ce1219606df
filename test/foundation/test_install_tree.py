"""The robot-PC route: CMake (as colcon runs it) builds the package from a clean source tree and
installs interfaces, Python sources, ros2-run executables, launch, config and rviz that work."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_cmake_install_tree_is_a_working_ros_package(tmp_path):
    venv = Path(sys.prefix)
    src = tmp_path / "ws" / "src" / "cosmos_policy_ros"
    src.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    subprocess.run(["tar", "-cf", str(tmp_path / "src.tar"), *[f for f in files if (ROOT / f).exists()]], cwd=ROOT,
                   check=True)
    subprocess.run(["tar", "-xf", str(tmp_path / "src.tar"), "-C", str(src)], check=True)
    prefix, build = tmp_path / "install", tmp_path / "build"
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "AMENT_PREFIX_PATH": str(venv),
           "CMAKE_PREFIX_PATH": str(venv)}
    for cmd in (["cmake", "-S", str(src), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}",
                 f"-DCMAKE_PREFIX_PATH={venv}", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
                ["cmake", "--build", str(build), "-j2"], ["cmake", "--install", str(build)]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    share = prefix / "share" / "cosmos_policy_ros"
    for d in ("launch/aloha_direct.launch.py", "launch/aloha_planning.launch.py", "config/graph.yaml",
              "config/robot/aloha_interbotix.yaml", "rviz/aloha.rviz", "msg/ActionChunk.msg", "package.xml"):
        assert (share / d).is_file(), d
    for exe in ("sim_node", "executor_node", "policy_node", "planner_node", "recorder_node", "monitor_node"):
        assert os.access(prefix / "lib" / "cosmos_policy_ros" / exe, os.X_OK), exe
    site = next((prefix / "lib").glob("python3*/site-packages"))
    run_env = {**os.environ, "PYTHONPATH": str(site), "AMENT_PREFIX_PATH": f"{prefix}:{venv}"}
    probe = ("import cosmos_policy_ros.graph as g, cosmos_policy_ros.config as c, cosmos_policy_ros.msg as m;"
             "from cosmos_policy_ros.msg import ActionChunk, PlanResult;"
             "print(g.__file__); print(m.__file__); print(c.share_dir())")
    r = subprocess.run([sys.executable, "-c", probe], env=run_env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    graph_file, msg_file, share_dir = r.stdout.split()
    assert graph_file.startswith(str(site)) and msg_file.startswith(str(site))
    assert Path(share_dir) == share
    # an installed ros2-run executable starts its node (and reports a bad parameter in one line)
    r = subprocess.run([sys.executable, str(prefix / "lib" / "cosmos_policy_ros" / "monitor_node"), "--ros-args",
                        "-p", "robot_config:=missing.yaml"], env=run_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "missing.yaml: config file not found" in r.stderr
