"""ALOHA HDF5 episodes: the on-disk format training reads (same as the recording converter writes).

Layout (ACT / upstream `preprocess_split_aloha_data.py` raw format):
  attrs: sim (bool), success (bool), task, instruction, seed (optional)
  /observations/qpos, /observations/qvel, /observations/effort   (T, 14) float
  /observations/images/<camera>                                 (T, H, W, 3) uint8
  /action                                                       (T, 14) float
Reading validates shapes and names the file and the dataset in a one-line error, so a wrong or
half-written file fails before training starts rather than as a shape error deep in a batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np


class EpisodeFormatError(ValueError):
    """An episode file is missing, unreadable or does not follow the ALOHA HDF5 layout."""


@dataclass
class EpisodeData:
    path: str
    qpos: np.ndarray                      # (T, 14) float32
    actions: np.ndarray                   # (T, 14) float32
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera -> (T, H, W, 3) uint8
    success: bool = True
    success_score: float | None = None
    instruction: str = ""
    task: str = ""

    def __len__(self) -> int:
        return len(self.actions)


def write_episode(path: str | Path, qpos, qvel, actions, images: dict[str, np.ndarray], *, success: bool,
                  task: str, instruction: str, seed: int | None = None, sim: bool = True,
                  effort=None) -> None:
    """Write one episode in the ALOHA HDF5 layout (images uncompressed-chunked per frame)."""
    qpos = np.asarray(qpos, np.float32)
    T = len(qpos)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["sim"] = bool(sim)
        f.attrs["success"] = bool(success)
        f.attrs["task"] = task
        f.attrs["instruction"] = instruction
        f.attrs["task_description"] = instruction  # upstream rollout attr name
        if seed is not None:
            f.attrs["seed"] = int(seed)
        obs = f.create_group("observations")
        obs.create_dataset("qpos", data=qpos)
        obs.create_dataset("qvel", data=np.asarray(qvel, np.float32))
        obs.create_dataset("effort", data=np.zeros_like(qpos) if effort is None else np.asarray(effort, np.float32))
        g = obs.create_group("images")
        for cam, arr in images.items():
            arr = np.asarray(arr, np.uint8)
            if arr.shape[0] != T:
                raise EpisodeFormatError(f"{path}: images/{cam} has {arr.shape[0]} frames, qpos {T}")
            g.create_dataset(cam, data=arr, chunks=(1, *arr.shape[1:]))
        f.create_dataset("action", data=np.asarray(actions, np.float32))
    tmp.replace(path)


def _need(f: h5py.File, key: str, path: Path):
    if key not in f:
        raise EpisodeFormatError(f"{path}: missing dataset /{key} (not an ALOHA HDF5 episode)")
    return f[key]


def read_episode(path: str | Path, cameras: Sequence[str] = ()) -> EpisodeData:
    """Load qpos, actions, labels and the named cameras' images; one-line error on bad input."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeFormatError(f"{path}: episode file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise EpisodeFormatError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        qpos = np.asarray(_need(f, "observations/qpos", path), np.float32)
        actions = np.asarray(_need(f, "action", path), np.float32)
        if qpos.ndim != 2 or actions.ndim != 2 or len(qpos) != len(actions):
            raise EpisodeFormatError(f"{path}: qpos {qpos.shape} and action {actions.shape} must be (T, D) of equal T")
        images = {}
        for cam in cameras:
            key = f"observations/images/{cam}"
            if key not in f:
                have = sorted(f["observations/images"]) if "observations/images" in f else []
                raise EpisodeFormatError(f"{path}: missing camera {cam!r} (has {have})")
            arr = np.asarray(f[key])
            if arr.ndim != 4 or arr.shape[0] != len(qpos) or arr.shape[-1] != 3 or arr.dtype != np.uint8:
                raise EpisodeFormatError(f"{path}: /{key} has shape {arr.shape} {arr.dtype}, expected ({len(qpos)}, H, W, 3) uint8")
            images[cam] = arr
        a = f.attrs
        score = a.get("success_score")  # the bag converter writes NaN for "no score"
        score = None if score is None or not np.isfinite(float(score)) else float(score)
        return EpisodeData(str(path), qpos, actions, images, bool(a.get("success", True)), score,
                           str(a.get("instruction", a.get("task_description", ""))), str(a.get("task", "")))


def list_episodes(data_dir: str | Path) -> list[Path]:
    """Sorted *.hdf5/*.h5 files under data_dir (recursively); error if there are none."""
    d = Path(data_dir)
    if not d.is_dir():
        raise EpisodeFormatError(f"{d}: dataset directory not found")
    files = sorted(p for p in d.rglob("*") if p.suffix in (".hdf5", ".h5", ".he5") and p.is_file())
    if not files:
        raise EpisodeFormatError(f"{d}: no *.hdf5 episodes found")
    return files
