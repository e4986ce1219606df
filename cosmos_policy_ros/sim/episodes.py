"""Episode runner: roll a policy (e.g. the scripted demonstrator) in SimAloha and collect the data.

Records, per step t, the observation before acting (qpos/qvel 14-D, optional images) and the
14-D action sent, as ALOHA/ACT datasets do, plus the staged reward; success = stage 4 reached.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cosmos_policy_ros.sim.demonstrator import ScriptedDemonstrator
from cosmos_policy_ros.sim.sim_aloha import SimAloha


@dataclass
class Episode:
    task: str
    seed: int
    qpos: np.ndarray          # (T, 14)
    qvel: np.ndarray          # (T, 14)
    actions: np.ndarray       # (T, 14)
    stages: np.ndarray        # (T,) stage after each action
    success: bool
    max_stage: int
    images: dict[str, np.ndarray] = field(default_factory=dict)  # cam -> (T, H, W, 3) uint8

    def __len__(self) -> int:
        return len(self.actions)


def run_demo_episode(sim: SimAloha, task: str, seed: int, *, cameras=(), width=None, height=None,
                     steps: int | None = None, demonstrator: ScriptedDemonstrator | None = None) -> Episode:
    """One scripted-demonstration episode; cameras=() skips rendering (fast data generation)."""
    sim.reset(task, seed)
    demo = demonstrator or ScriptedDemonstrator(sim.model, task, sim.wc.arm_prefix)
    n = int(steps or sim.tasks_cfg[task].episode_steps)
    demo.reset(sim.qpos14(), sim.object_poses())
    qpos, qvel, acts, stages = [], [], [], []
    frames: dict[str, list] = {c: [] for c in cameras}
    for _ in range(n):
        qpos.append(sim.qpos14())
        qvel.append(sim.qvel14())
        if cameras:
            for c, img in sim.render(cameras, width=width, height=height).items():
                frames[c].append(img)
        a = demo.act(qpos[-1], sim.object_poses())
        acts.append(a)
        stages.append(sim.step(a).stage)
    return Episode(task, sim.seed, np.array(qpos), np.array(qvel), np.array(acts), np.array(stages, dtype=int),
                   sim.success(), sim.max_stage, {c: np.stack(v) for c, v in frames.items()})
