"""The world: gym-aloha scene loaded in place, real-robot cameras, cheap render settings."""
from __future__ import annotations

import os

import mujoco
import numpy as np
import pytest

from cosmos_policy_ros.sim import gl
from cosmos_policy_ros.sim.assets import gym_aloha_assets_dir
from cosmos_policy_ros.sim.world import CAMERA_NAMES, build_model, xyaxes_to_quat
from cosmos_policy_ros.sim.world_config import load_world_config


@pytest.fixture(scope="module")
def wc():
    return load_world_config()


@pytest.mark.parametrize("task", ["transfer_cube", "insertion"])
def test_model_has_real_robot_cameras_and_cheap_rendering(wc, task):
    m = build_model(task, wc)
    names = [m.camera(i).name for i in range(m.ncam)]
    for cam in CAMERA_NAMES:
        assert cam in names
    assert "left_wrist" not in names and "right_wrist" not in names  # gym-aloha's unrealistic ones
    for side in ("left", "right"):
        cid = m.camera(f"cam_{side}_wrist").id
        assert m.body(m.cam_bodyid[cid]).name == f"vx300s_{side}/gripper_link"
        assert m.cam_fovy[cid] == pytest.approx(58.0)
    assert m.camera("cam_high").bodyid == 0 and m.camera("cam_low").bodyid == 0
    assert m.vis.quality.shadowsize == 0 and m.vis.quality.offsamples == 0
    assert not any(m.light_castshadow)
    assert m.opt.timestep == pytest.approx(0.002)
    assert (m.vis.global_.offwidth, m.vis.global_.offheight) >= (640, 480)


def test_assets_come_from_the_installed_package_not_the_repo():
    d = gym_aloha_assets_dir()
    assert (d / "bimanual_viperx_transfer_cube.xml").is_file()
    assert "site-packages" in str(d) or "dist-packages" in str(d)


def test_unknown_task_is_rejected(wc):
    with pytest.raises(ValueError, match="unknown task"):
        build_model("stack_blocks", wc)


def test_xyaxes_to_quat_matches_mujoco():
    xy = [0.0, -1.0, 0.0, 0.4226, 0.0, 0.9063]
    q = xyaxes_to_quat(xy)
    m = mujoco.MjModel.from_xml_string(
        f"<mujoco><worldbody><camera name='c' xyaxes='{' '.join(map(str, xy))}'/></worldbody></mujoco>")
    assert np.allclose(np.abs(q @ m.cam_quat[0]), 1.0, atol=1e-4)


def test_gl_backend_respects_explicit_choice_and_rejects_bogus(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "egl")
    assert gl.ensure_gl_backend() == "egl"
    assert gl.probe("no-such-backend", timeout=60) is False
    assert os.environ["MUJOCO_GL"] == "egl"


def test_gl_backend_is_chosen_automatically_when_unset():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    code = ("import os; from cosmos_policy_ros.sim.gl import ensure_gl_backend; b = ensure_gl_backend(); "
            "import mujoco; r = mujoco.Renderer(mujoco.MjModel.from_xml_string('<mujoco/>'), 8, 8); r.close(); "
            "print(b, os.environ['MUJOCO_GL'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    chosen, exported = out.stdout.split()
    assert chosen in ("egl", "osmesa") and exported == chosen
