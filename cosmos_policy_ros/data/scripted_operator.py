"""A scripted ALOHA operator: the sim's demonstrator playing the leader arms, so recording runs without hardware.

The demonstrator needs object poses, which no robot topic carries; the operator therefore plans
each episode on its own headless copy of the simulated world, reset with the same task and seed as
the sim node (same object placement), and then streams the plan as an operator would: leader
joint states in the xs_sdk layout (leader gripper angle and fingers from the robot config's leader
constants) and follower commands derived from them exactly as ALOHA teleop does (arm joints copied,
gripper through LEADER2FOLLOWER). Before each episode it squeezes both leader grippers, which is
what starts an ALOHA recording.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cosmos_policy_ros.robot.aloha import AlohaRobot


@dataclass
class Plan:
    task: str
    seed: int
    actions: np.ndarray        # (T, 14) policy-space targets (grippers 0..1)
    predicted_success: bool


class ScriptedOperator:
    def __init__(self, robot: AlohaRobot, task: str):
        self.robot = robot
        self.task = task
        self._sim = None

    def plan(self, seed: int, steps: int | None = None) -> Plan:
        """Run the demonstrator on a private world (no rendering) and keep its actions."""
        from cosmos_policy_ros.sim.episodes import run_demo_episode
        from cosmos_policy_ros.sim.sim_aloha import SimAloha

        if self._sim is None:
            self._sim = SimAloha(self.task, robot=self.robot, width=64, height=48)
        ep = run_demo_episode(self._sim, self.task, seed, cameras=(), steps=steps)
        return Plan(self.task, seed, ep.actions, bool(ep.success))

    def leader_positions(self, action14, side: str, squeeze: bool = False) -> np.ndarray:
        """9 xs_sdk joint_states positions of one leader arm for a policy-space action."""
        i = self.robot.config.arms.index(side)
        a = np.asarray(action14, float)[7 * i:7 * i + 7]
        grip = 0.0 if squeeze else float(a[6])
        g = self.robot.config.gripper
        joint = float(self.robot.normalized_to_leader_joint(grip))
        if squeeze:  # below the close threshold even when the threshold equals the closed angle
            joint = min(joint, g.leader_close_threshold - 0.05)
        finger = grip * (g.leader_position_open - g.leader_position_close) + g.leader_position_close
        return np.concatenate([a[:6], [joint, finger, -finger]])

    def follower_command(self, leader_positions) -> tuple[list[float], float]:
        """ALOHA teleop mapping: arm joints copied, gripper = FOLLOWER_UNNORMALIZE(LEADER_NORMALIZE(angle))."""
        p = np.asarray(leader_positions, float)
        grip = float(self.robot.normalized_to_follower_joint(self.robot.leader_joint_to_normalized(p[6])))
        return p[:6].tolist(), grip

    def close(self) -> None:
        if self._sim is not None:
            self._sim.close()
            self._sim = None
