"""Schema of config/planner.yaml, and its translation to the planning core's PlanConfig."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.topics import refuse_topics_section

DEFAULT_PLANNER_CONFIG = "planner.yaml"


@dataclass
class PlannerConfig:
    num_candidates: int = 8
    base_seed: int = 195
    action_steps: int = 0
    world_steps: list[int] = field(default_factory=lambda: [1, 3, 5])
    value_steps: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    value_mode: Literal["v_sprime", "q", "v_sas"] = "v_sprime"
    aggregation: Literal["majority_mean", "average", "lcb", "success_vote"] = "majority_mean"
    threshold: float = 0.05
    deadline_s: float = 10.0

    def validate(self) -> None:
        if self.num_candidates < 1 or not self.world_steps or not self.value_steps:
            raise cfg.ConfigError("num_candidates, world_steps and value_steps must not be empty")
        if min(self.world_steps + self.value_steps) < 1:
            raise cfg.ConfigError("world_steps/value_steps: every entry must be >= 1")
        if self.deadline_s <= 0:
            raise cfg.ConfigError(f"deadline_s: must be positive, got {self.deadline_s}")

    def plan_config(self):
        from cosmos_policy_ros.inference.planning import PlanConfig

        return PlanConfig(num_candidates=self.num_candidates, base_seed=self.base_seed,
                          action_steps=self.action_steps or None, world_steps=tuple(self.world_steps),
                          value_steps=tuple(self.value_steps), value_mode=self.value_mode,
                          aggregation=self.aggregation, threshold=self.threshold)


def load_planner_config(path: str | Path = DEFAULT_PLANNER_CONFIG) -> PlannerConfig:
    refuse_topics_section(path)
    return cfg.load(PlannerConfig, path)
