"""Schema of config/policy.yaml (see the file for what each key means)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros.topics import refuse_topics_section

DEFAULT_POLICY_CONFIG = "policy.yaml"


@dataclass
class PolicyNodeConfig:
    trigger: Literal["request", "continuous"] = "request"
    max_obs_age_s: float = 0.5
    max_skew_s: float = 0.15
    max_future_s: float = 0.05
    seed: int = 0
    seed_mode: Literal["fixed", "increment"] = "increment"
    action_period_s: float = 0.04
    steps: int = 0
    warmup: bool = True
    device: str = ""
    torch_threads: int = 0
    refuse_log_period_s: float = 2.0
    # stamp: observation ages from the messages' header stamps (clocks of camera/driver host and this host
    # synchronised). arrival: from this host's receive times (clocks not synchronised, e.g. a GPU workstation
    # beside the robot PC); chunks keep the message stamps, the executor's clock. Either way the start-up log
    # gives the measured stamp offset per stream.
    observation_time: Literal["stamp", "arrival"] = "stamp"
    # torch.compile the DiT (policy and planning model): off, or a torch.compile mode (reduce-overhead also
    # captures CUDA graphs). The warm-up inference pays the compile time; each new batch size compiles again.
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = "off"

    def validate(self) -> None:
        for key in ("max_obs_age_s", "max_skew_s", "action_period_s", "refuse_log_period_s"):
            if getattr(self, key) <= 0:
                raise cfg.ConfigError(f"{key}: must be positive, got {getattr(self, key)}")
        if not self.max_future_s >= 0:
            raise cfg.ConfigError(f"max_future_s: must be >= 0, got {self.max_future_s}")
        if self.torch_threads < 0:
            raise cfg.ConfigError(f"torch_threads: must be >= 0, got {self.torch_threads}")
        if self.steps < 0:
            raise cfg.ConfigError(f"steps: must be >= 0, got {self.steps}")


def load_policy_config(path: str | Path = DEFAULT_POLICY_CONFIG, overrides: dict | None = None) -> PolicyNodeConfig:
    refuse_topics_section(path)
    return cfg.load(PolicyNodeConfig, path, overrides)


def apply_torch_threads(n: int) -> int:
    """Set torch's CPU thread count (0 = cores - 1, at most 4) and return it."""
    import os

    import torch

    if n == 0:
        n = max(1, min(4, (os.cpu_count() or 2) - 1))
    torch.set_num_threads(n)
    return n
