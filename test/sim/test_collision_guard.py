"""The collision guard in the loop: scripted chunks through SafetyFilter into the real SimAloha.

Each chunk is run twice from the same seeded state: without the guard the sim reports contacts between the
arms and the table or each other (so the chunk really collides), with it there are none and the guard names
the pair it stopped.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from cosmos_policy_ros.robot.safety import SafetyConfig, SafetyFilter

START_ARM = [0.0, -0.96, 1.16, 0.0, -0.3, 0.0]
# Right shoulder forward, elbow open, wrist bent: the right gripper's body goes down through the table.
RIGHT_WRIST_INTO_TABLE = {"right": [0.0, 0.9, 0.1, 0.0, -1.0, 0.0]}
# Both arms reach forward, the left one swung across the right one's path: its gripper meets the right hand.
ARMS_CROSS = {"left": [0.39, 0.22, 0.69, 0.0, -0.47, 0.0], "right": [-0.11, 0.25, 0.33, 0.0, -0.11, 0.0]}


def straight_chunk(goal: dict[str, list[float]], steps: int = 100, hold: int = 25) -> np.ndarray:
    """From the start pose to ``goal`` (per arm) in a straight joint-space line, then held; grippers half open."""
    start = np.array(START_ARM + [0.5] + START_ARM + [0.5])
    end = start.copy()
    for i, side in enumerate(("left", "right")):
        if side in goal:
            end[7 * i:7 * i + 6] = goal[side]
    alpha = np.minimum(np.arange(1, steps + hold + 1) / steps, 1.0)
    return start + alpha[:, None] * (end - start)


def arm_contacts(sim) -> set[tuple[str, str]]:
    """Contacts between an arm geom and the table or a geom of the other arm (geom names, sorted)."""
    m, d = sim.model, sim.data
    prefixes = tuple(sim.wc.arm_prefix.values())
    out = set()
    for c in d.contact[:d.ncon]:
        a, b = sorted(m.geom(g).name for g in (c.geom1, c.geom2))
        arm_a = next((p for p in prefixes if a.startswith(p + "/")), None)
        arm_b = next((p for p in prefixes if b.startswith(p + "/")), None)
        if (arm_a and b == "table") or (arm_b and a == "table") or (arm_a and arm_b and arm_a != arm_b):
            out.add((a, b))
    return out


def run_chunk(sim, chunk: np.ndarray, guard: bool) -> tuple[set, list[str], SafetyFilter]:
    sim.reset("transfer_cube", seed=0)
    f = SafetyFilter(sim.robot, SafetyConfig(collision=guard), dt=sim.dt)
    prev = sim.qpos14()
    contacts, reasons = set(), []
    for target in chunk:
        res = f.filter(target, prev, sim.qpos14())
        if res.reason.startswith("collision"):
            reasons.append(res.reason)
        prev = res.command
        sim.step(prev)
        contacts |= arm_contacts(sim)
    return contacts, reasons, f


@pytest.mark.parametrize("goal, pair", [(RIGHT_WRIST_INTO_TABLE, r"right/(wrist|gripper) - table"),
                                        (ARMS_CROSS, r"left/\w+ - right/\w+")],
                         ids=["right wrist into the table", "arms cross"])
def test_guard_stops_the_chunk_before_any_contact_and_names_the_pair(sim, goal, pair):
    chunk = straight_chunk(goal)
    unguarded, _, _ = run_chunk(sim, chunk, guard=False)
    assert unguarded, "the scripted chunk must collide without the guard, or this test proves nothing"
    guarded, reasons, f = run_chunk(sim, chunk, guard=True)
    assert guarded == set()
    assert f.kinds["collision"] > 0 and reasons
    assert any(re.search(f"target puts {pair} at", r) for r in reasons), reasons[:3]
    # the arms settle where they were held: within a few mm (tracking error) of the margins
    assert f.guard.model.clearances(sim.qpos14()[None]).min() > -0.005
