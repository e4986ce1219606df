"""Shared simulator fixtures: one SimAloha per module (model compilation and GL contexts are costly)."""
from __future__ import annotations

import pytest

from cosmos_policy_ros.sim.sim_aloha import SimAloha


@pytest.fixture(scope="module")
def sim():
    s = SimAloha("transfer_cube")
    yield s
    s.close()
