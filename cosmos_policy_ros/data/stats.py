"""Dataset statistics for normalisation: the JSON Cosmos Policy's ALOHA loader and deployment read.

Keys ``actions_{min,max,mean,std,median}`` and ``proprio_{min,max,mean,std,median}`` (14 floats
each) over every step of every episode, as upstream's dataset_statistics.json (proprio = qpos).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

KEYS = ("min", "max", "mean", "std", "median")


def compute_statistics(actions: list[np.ndarray], proprio: list[np.ndarray]) -> dict:
    """Per-dimension statistics over the concatenation of all episodes."""
    if not actions:
        raise ValueError("no episodes to compute statistics from")
    out: dict = {}
    for name, arrays in (("actions", actions), ("proprio", proprio)):
        x = np.concatenate([np.asarray(a, float).reshape(len(a), -1) for a in arrays])
        fns = {"min": np.min, "max": np.max, "mean": np.mean, "std": np.std, "median": np.median}
        for k in KEYS:
            out[f"{name}_{k}"] = fns[k](x, axis=0).tolist()
    out["num_episodes"] = len(actions)
    out["num_steps"] = int(sum(len(a) for a in actions))
    return out


def statistics_from_files(paths: list[Path]) -> dict:
    import h5py

    acts, props = [], []
    for p in paths:
        with h5py.File(p, "r") as f:
            acts.append(f["action"][()])
            props.append(f["observations/qpos"][()])
    return compute_statistics(acts, props)


def write_statistics(path: str | Path, stats: dict) -> None:
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(stats, indent=1))
    os.replace(tmp, path)


def load_statistics(path: str | Path) -> dict[str, np.ndarray]:
    data = json.loads(Path(path).read_text())
    return {k: np.asarray(v, float) for k, v in data.items() if isinstance(v, list)}
