"""Dataset statistics and [-1, 1] normalisation of actions and proprio (spec section 4.4).

The released file (`aloha_dataset_statistics.json`) holds `actions_{min,max,mean,std,median}` and
`proprio_{...}`, 14 floats each. Upstream uses min/max scaling without clipping; mean/std is
available for our own datasets. A zero range (a joint that never moved) is treated as range 1 so
normalisation stays finite (upstream would divide by zero).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from cosmos_policy_ros.config import read_json_object
from cosmos_policy_ros.errors import CosmosError


class StatsError(CosmosError, ValueError):
    """Statistics file is missing a key or has the wrong length."""


@dataclass(frozen=True)
class DatasetStats:
    actions_min: np.ndarray
    actions_max: np.ndarray
    proprio_min: np.ndarray
    proprio_max: np.ndarray
    actions_mean: np.ndarray | None = None
    actions_std: np.ndarray | None = None
    proprio_mean: np.ndarray | None = None
    proprio_std: np.ndarray | None = None
    method: str = "min_max"

    @classmethod
    def from_dict(cls, d: Mapping, method: str = "min_max", dim: int | None = None,
                  source: str = "<dict>") -> "DatasetStats":
        if method not in ("min_max", "mean_std"):
            raise StatsError(f"{source}: unknown normalisation method {method!r}")
        if not isinstance(d, Mapping):
            raise StatsError(f"{source}: statistics must be a JSON object, got {type(d).__name__}")
        need = ("min", "max") if method == "min_max" else ("mean", "std")
        vals: dict[str, np.ndarray | None] = {}
        for kind in ("actions", "proprio"):
            for stat in ("min", "max", "mean", "std"):
                key = f"{kind}_{stat}"
                if key not in d:
                    if stat in need:
                        raise StatsError(f"{source}: missing key {key!r}")
                    vals[key] = None
                    continue
                try:
                    arr = np.asarray(d[key], dtype=np.float64).reshape(-1)
                except (TypeError, ValueError):
                    raise StatsError(f"{source}: {key!r} must be a list of numbers, got {d[key]!r:.60}") from None
                if dim is not None and arr.shape[0] != dim:
                    raise StatsError(f"{source}: {key!r} has {arr.shape[0]} entries, expected {dim}")
                if not np.all(np.isfinite(arr)):
                    raise StatsError(f"{source}: {key!r} contains NaN/Inf")
                vals[key] = arr
        if method == "min_max" and vals["actions_min"] is None:
            raise StatsError(f"{source}: missing key 'actions_min'")
        if vals["actions_min"] is None:  # mean_std only: keep min/max fields filled
            vals["actions_min"] = vals["actions_max"] = vals["actions_mean"]
            vals["proprio_min"] = vals["proprio_max"] = vals["proprio_mean"]
        return cls(method=method, **vals)

    @classmethod
    def load(cls, path: str | Path, method: str = "min_max", dim: int | None = None) -> "DatasetStats":
        d = read_json_object(Path(path), "statistics", StatsError)
        return cls.from_dict(d, method, dim, str(path))

    def to_dict(self) -> dict:
        out = {}
        for k in ("actions_min", "actions_max", "proprio_min", "proprio_max",
                  "actions_mean", "actions_std", "proprio_mean", "proprio_std"):
            v = getattr(self, k)
            if v is not None:
                out[k] = [float(x) for x in v]
        return out

    def _params(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(offset, half_range) such that x_norm = (x - offset) / half_range."""
        if self.method == "min_max":
            lo, hi = getattr(self, f"{kind}_min"), getattr(self, f"{kind}_max")
            rng = np.where(hi - lo > 0, hi - lo, 1.0)
            return lo + rng / 2.0, rng / 2.0
        std = getattr(self, f"{kind}_std")
        return getattr(self, f"{kind}_mean"), np.where(std > 0, std, 1.0)

    def normalize(self, kind: str, x) -> np.ndarray:
        off, half = self._params(kind)
        return ((np.asarray(x, dtype=np.float64) - off) / half).astype(np.float32)

    def unnormalize(self, kind: str, x) -> np.ndarray:
        off, half = self._params(kind)
        return (np.asarray(x, dtype=np.float64) * half + off).astype(np.float32)

    def normalize_proprio(self, x) -> np.ndarray:
        return self.normalize("proprio", x)

    def unnormalize_proprio(self, x) -> np.ndarray:
        return self.unnormalize("proprio", x)

    def normalize_actions(self, x) -> np.ndarray:
        return self.normalize("actions", x)

    def unnormalize_actions(self, x) -> np.ndarray:
        return self.unnormalize("actions", x)
