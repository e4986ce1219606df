"""The MuJoCo ALOHA world: gym-aloha's task scene, edited with MjSpec for our cameras and renderer.

Edits (all driven by config/sim/world.yaml):
- cameras named as on the real robot (cam_high, cam_low, cam_left_wrist, cam_right_wrist), the wrist
  ones placed like the D405 wrist mounts (gym-aloha's own wrist cameras are not realistic);
- shadows, reflections and MSAA off: on a CPU GL (llvmpipe) the shipped settings cost ~1 s per frame;
- a grasp site per gripper for the scripted demonstrator's IK;
- the offscreen buffer sized for the largest requested image.
"""
from __future__ import annotations

from cosmos_policy_ros.sim.gl import ensure_gl_backend

ensure_gl_backend()

import mujoco  # noqa: E402  (after choosing MUJOCO_GL)
import numpy as np  # noqa: E402

from cosmos_policy_ros.sim.assets import gym_aloha_assets_dir  # noqa: E402
from cosmos_policy_ros.sim.world_config import SIDES, WorldConfig  # noqa: E402

CAMERA_NAMES = ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist")


def grasp_site_name(side: str) -> str:
    return f"{side}/grasp"


def xyaxes_to_quat(xyaxes) -> np.ndarray:
    """MuJoCo camera xyaxes (right, up) -> quaternion (w x y z)."""
    x = np.asarray(xyaxes[:3], float)
    y = np.asarray(xyaxes[3:], float)
    x /= np.linalg.norm(x)
    y = y - x * (x @ y)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    mat = np.column_stack([x, y, z]).reshape(-1)
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, mat)
    return q


def build_spec(task: str, wc: WorldConfig, max_width: int | None = None,
               max_height: int | None = None) -> mujoco.MjSpec:
    if task not in wc.scenes:
        raise ValueError(f"unknown task {task!r}; known: {sorted(wc.scenes)}")
    spec = mujoco.MjSpec.from_file(str(gym_aloha_assets_dir() / wc.scenes[task]))
    spec.option.timestep = wc.physics.timestep

    # Renderer cost: no shadow maps, no multisampling; reflections/shadows are also scene flags.
    spec.visual.quality.offsamples = int(wc.render.msaa_samples)
    if not wc.render.shadows:
        spec.visual.quality.shadowsize = 0
        for light in spec.lights:
            light.castshadow = False
    spec.visual.map.znear = wc.render.znear
    spec.visual.global_.offwidth = max(int(max_width or 0), wc.render.width, 640)
    spec.visual.global_.offheight = max(int(max_height or 0), wc.render.height, 480)

    for name in wc.remove_cameras:
        cam = spec.camera(name)
        if cam is not None:
            spec.delete(cam)
    for name, cc in wc.cameras.items():
        parent = spec.worldbody if cc.parent == "world" else spec.body(cc.parent)
        if parent is None:
            raise ValueError(f"camera {name}: parent body {cc.parent!r} is not in the {task} scene")
        quat = np.asarray(cc.quat, float) if cc.quat is not None else xyaxes_to_quat(cc.xyaxes)
        parent.add_camera(name=name, pos=list(cc.pos), quat=list(quat / np.linalg.norm(quat)), fovy=cc.fovy)

    for side in SIDES:
        body = spec.body(f"{wc.arm_prefix[side]}/gripper_link")
        body.add_site(name=grasp_site_name(side), pos=list(wc.grasp_site_offset), size=[0.005, 0.005, 0.005],
                      rgba=[0, 1, 0, 0], group=5)
    return spec


def build_model(task: str, wc: WorldConfig, max_width: int | None = None,
                max_height: int | None = None) -> mujoco.MjModel:
    """Compile the task's world; raises ValueError for an unknown task or a bad camera parent."""
    return build_spec(task, wc, max_width, max_height).compile()
