"""Where the ALOHA MJCF scenes and meshes live: inside the installed gym-aloha package.

We never import gym_aloha (it pulls gymnasium/dm_control, which we do not install); we only need
its data folder, found through the import machinery without executing the package. No asset file
is copied into this repository.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from cosmos_policy_ros.errors import CosmosError


class AssetsNotFoundError(CosmosError, RuntimeError):
    """gym-aloha is not installed, so the ALOHA model files are missing."""


def gym_aloha_assets_dir() -> Path:
    spec = importlib.util.find_spec("gym_aloha")
    if spec is None or not spec.submodule_search_locations:
        raise AssetsNotFoundError(
            "gym-aloha is not installed: pip install --no-deps gym-aloha==0.1.5 (only its MJCF/meshes are used)"
        )
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "assets"
        if d.is_dir():
            return d
    raise AssetsNotFoundError(f"gym_aloha has no assets/ folder in {list(spec.submodule_search_locations)}")
