"""Scripted demonstrator: waypoints for each gripper's grasp site, followed with IK. No learning.

A plain class that, once per 50 Hz step, turns the current state (14-D joint state + object poses)
into a 14-D policy-space target [left 6 rad, left gripper 0..1, right 6 rad, right gripper 0..1].
Waypoints (config/sim/demonstrator.yaml) are anchored to objects and resolved when their segment
starts, or every step when tracking, so the plan follows where the objects really are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.sim.ik import ArmIK, rpy_to_mat
from cosmos_policy_ros.sim.world import grasp_site_name
from cosmos_policy_ros.sim.world_config import SIDES

DEFAULT_DEMO_CONFIG = "sim/demonstrator.yaml"
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")


@dataclass
class Waypoint:
    t: int
    anchor: str = "previous"
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rpy: tuple[float, float, float] | None = None
    gripper: float | None = None
    carry: str | None = None
    track: bool = False


@dataclass
class IKSettings:
    damping: float = 1e-3
    rot_weight: float = 0.3
    max_iters: int = 30
    posture: dict[str, float] = field(default_factory=dict)   # joint name -> preferred angle (rad)
    posture_gain: float = 0.0


@dataclass
class _Resolved:
    pos: np.ndarray
    rpy: np.ndarray   # radians
    gripper: float


@dataclass
class _ArmState:
    plan: list[Waypoint]
    resolved: list[_Resolved | None] = field(default_factory=list)
    q_cmd: np.ndarray | None = None


def mat_to_rpy(r: np.ndarray) -> np.ndarray:
    """Inverse of rpy_to_mat (yaw, pitch, roll)."""
    pitch = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    return np.array([np.arctan2(r[1, 0], r[0, 0]), pitch, np.arctan2(r[2, 1], r[2, 2])])


def load_demo_config(path=DEFAULT_DEMO_CONFIG) -> tuple[dict[str, dict[str, list[Waypoint]]], IKSettings]:
    data = cfg.read_yaml(path)
    src = str(cfg.config_path(path))
    ik = cfg.from_dict(IKSettings, data.pop("ik", {}), source=src, prefix="ik")
    plans = {}
    for task, arms in data.items():
        if not isinstance(arms, dict) or set(arms) != set(SIDES):
            raise cfg.ConfigError(f"{src}: {task}: needs waypoint lists for left and right")
        plans[task] = {}
        for side in SIDES:
            wps = [cfg.from_dict(Waypoint, w, source=src, prefix=f"{task}.{side}[{i}]")
                   for i, w in enumerate(arms[side])]
            if not wps or wps[0].anchor != "start" or wps[0].t != 0:
                raise cfg.ConfigError(f"{src}: {task}.{side}[0]: the first waypoint must be {{t: 0, anchor: start}}")
            if any(b.t <= a.t for a, b in zip(wps, wps[1:])):
                raise cfg.ConfigError(f"{src}: {task}.{side}: waypoint times must increase")
            plans[task][side] = wps
    return plans, ik


class ScriptedDemonstrator:
    """Waypoint + IK policy for one task. reset(...) once per episode, then act(...) every step."""

    def __init__(self, model: mujoco.MjModel, task: str, arm_prefix: dict[str, str], config_path=DEFAULT_DEMO_CONFIG):
        plans, ik = load_demo_config(config_path)
        unknown = set(ik.posture) - set(ARM_JOINTS)
        if unknown:
            raise cfg.ConfigError(f"{config_path}: ik.posture: unknown joints {sorted(unknown)}; "
                                  f"have {list(ARM_JOINTS)}")
        posture = {ARM_JOINTS.index(j): float(v) for j, v in ik.posture.items()}
        if task not in plans:
            raise ValueError(f"no demonstrator plan for task {task!r}; have {sorted(plans)}")
        self.task = task
        self.plans = plans[task]
        self.ik = {
            side: ArmIK(model, [f"{arm_prefix[side]}/{j}" for j in ARM_JOINTS], grasp_site_name(side),
                        damping=ik.damping, rot_weight=ik.rot_weight, max_iters=ik.max_iters,
                        posture=posture, posture_gain=ik.posture_gain)
            for side in SIDES
        }
        self.t = 0
        self.arms: dict[str, _ArmState] = {}

    @property
    def episode_steps(self) -> int:
        return max(wps[-1].t for wps in self.plans.values())

    def reset(self, qpos14, objects: dict[str, np.ndarray]) -> None:
        qpos14 = np.asarray(qpos14, float)
        self.t = 0
        self.arms = {}
        for i, side in enumerate(SIDES):
            q = qpos14[7 * i:7 * i + 6].copy()
            pos, rot = self.ik[side].forward(q)
            st = _ArmState(plan=self.plans[side], resolved=[None] * len(self.plans[side]), q_cmd=q)
            wp0 = st.plan[0]
            g0 = wp0.gripper if wp0.gripper is not None else float(qpos14[7 * i + 6])
            st.resolved[0] = _Resolved(pos + np.asarray(wp0.offset), mat_to_rpy(rot), g0)
            self.arms[side] = st

    def _resolve(self, side: str, k: int, qpos14: np.ndarray, objects) -> _Resolved:
        st = self.arms[side]
        wp, prev = st.plan[k], st.resolved[k - 1]
        off = np.asarray(wp.offset, float)
        i = SIDES.index(side)
        if wp.anchor == "previous":
            pos = prev.pos + off
        elif wp.anchor == "current":
            pos = self.ik[side].forward(qpos14[7 * i:7 * i + 6])[0] + off
        elif wp.anchor == "world":
            pos = off.copy()
        elif wp.anchor in objects:
            pos = np.asarray(objects[wp.anchor][:3], float) + off
        else:
            raise ValueError(f"waypoint anchor {wp.anchor!r} is neither previous/current/world "
                             f"nor an object {sorted(objects)}")
        if wp.carry is not None:
            site = self.ik[side].forward(qpos14[7 * i:7 * i + 6])[0]
            pos = pos - (np.asarray(objects[wp.carry][:3], float) - site)
        if wp.rpy is not None:
            rpy = np.radians(wp.rpy)
            rpy[0] = prev.rpy[0] + (rpy[0] - prev.rpy[0] + np.pi) % (2 * np.pi) - np.pi  # shortest yaw turn
        else:
            rpy = prev.rpy.copy()
        g = prev.gripper if wp.gripper is None else float(wp.gripper)
        return _Resolved(pos, rpy, g)

    def act(self, qpos14, objects: dict[str, np.ndarray]) -> np.ndarray:
        """Target for the next step (14-D policy space); holds the last waypoint after the plan ends."""
        qpos14 = np.asarray(qpos14, float)
        self.t += 1
        out = np.zeros(14)
        for i, side in enumerate(SIDES):
            st = self.arms[side]
            k = next((j for j, w in enumerate(st.plan) if w.t >= self.t), len(st.plan) - 1)
            k = max(k, 1)
            if st.resolved[k] is None or st.plan[k].track:
                st.resolved[k] = self._resolve(side, k, qpos14, objects)
            a, b = st.resolved[k - 1], st.resolved[k]
            t0, t1 = st.plan[k - 1].t, st.plan[k].t
            s = float(np.clip((self.t - t0) / (t1 - t0), 0.0, 1.0))
            pos = a.pos + s * (b.pos - a.pos)
            rpy = a.rpy + s * (b.rpy - a.rpy)
            q, _ = self.ik[side].solve(st.q_cmd, pos, rpy_to_mat(*rpy))
            st.q_cmd = q
            out[7 * i:7 * i + 6] = q
            out[7 * i + 6] = a.gripper + s * (b.gripper - a.gripper)
        return out
