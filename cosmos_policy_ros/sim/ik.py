"""Damped-least-squares inverse kinematics of one ALOHA arm on a grasp site.

Used by the scripted demonstrator instead of gym-aloha/ACT's mocap welds (which on MuJoCo 3.x need
retuned weld torque scales): joint targets come out directly in the robot's command space.
Runs on a private MjData so it never disturbs the simulation; only the arm's six joints move.
"""
from __future__ import annotations

import mujoco
import numpy as np


def rpy_to_mat(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World rotation Rz(yaw) @ Ry(pitch) @ Rx(roll): gripper x = approach, y = finger axis, z = up."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


class ArmIK:
    def __init__(self, model: mujoco.MjModel, joint_names: list[str], site_name: str,
                 damping: float = 1e-3, rot_weight: float = 0.3, max_iters: int = 30,
                 pos_tol: float = 2e-4, rot_tol: float = 2e-3, max_step: float = 0.2,
                 posture: dict[int, float] | None = None, posture_gain: float = 0.0):
        self.model = model
        self.data = mujoco.MjData(model)
        jids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in joint_names]
        if min(jids) < 0:
            raise ValueError(f"IK: unknown joint among {joint_names}")
        self.qadr = np.array([model.jnt_qposadr[j] for j in jids])
        self.dadr = np.array([model.jnt_dofadr[j] for j in jids])
        self.lo = model.jnt_range[jids, 0].copy()
        self.hi = model.jnt_range[jids, 1].copy()
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site_name)
        if self.site < 0:
            raise ValueError(f"IK: unknown site {site_name!r}")
        self.damping, self.rot_weight, self.max_iters = damping, rot_weight, max_iters
        self.pos_tol, self.rot_tol, self.max_step = pos_tol, rot_tol, max_step
        # Null-space posture pull (joint index -> preferred angle): at the wrist singularity
        # (wrist_angle = 0) forearm_roll and wrist_rotate can trade +-pi turns freely; without a
        # preference, demos of one task land in several joint branches a policy cannot average.
        self.posture_mask = np.zeros(len(jids))
        self.posture_q = np.zeros(len(jids))
        for i, v in (posture or {}).items():
            self.posture_mask[i], self.posture_q[i] = 1.0, v
        self.posture_gain = float(posture_gain)
        self._jp = np.zeros((3, model.nv))
        self._jr = np.zeros((3, model.nv))

    def _fk(self, q: np.ndarray) -> None:
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def forward(self, q) -> tuple[np.ndarray, np.ndarray]:
        """Grasp-site position and rotation matrix for arm joints q."""
        self._fk(np.asarray(q, float))
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def solve(self, q0, pos, rot) -> tuple[np.ndarray, float]:
        """Joint angles near q0 putting the site at pos with orientation rot; returns (q, position error m)."""
        q = np.clip(np.asarray(q0, float).copy(), self.lo, self.hi)
        w = self.rot_weight
        err_p = np.inf
        for _ in range(self.max_iters):
            self._fk(q)
            cur_p = self.data.site_xpos[self.site]
            cur_r = self.data.site_xmat[self.site].reshape(3, 3)
            e_p = pos - cur_p
            e_r = 0.5 * sum(np.cross(cur_r[:, i], rot[:, i]) for i in range(3))
            err_p = float(np.linalg.norm(e_p))
            if err_p < self.pos_tol and np.linalg.norm(e_r) < self.rot_tol:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jp, self._jr, self.site)
            jac = np.vstack([self._jp[:, self.dadr], w * self._jr[:, self.dadr]])
            e = np.concatenate([e_p, w * e_r])
            j_pinv = jac.T @ np.linalg.inv(jac @ jac.T + self.damping * np.eye(6))
            dq = j_pinv @ e
            if self.posture_gain > 0:
                pull = self.posture_gain * self.posture_mask * (self.posture_q - q)
                dq += (np.eye(len(q)) - j_pinv @ jac) @ pull
            n = np.abs(dq).max()
            if n > self.max_step:
                dq *= self.max_step / n
            q = np.clip(q + dq, self.lo, self.hi)
        return q, err_p
