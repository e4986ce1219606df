"""ALOHA HDF5 episodes: the one on-disk episode format, written by the bag converter, the demo generator and
evaluation rollouts, and read by training.

Layout (ACT / upstream `preprocess_split_aloha_data.py` raw format):
  attrs: sim (bool), success (bool), success_score (float, NaN = no score), task, instruction,
         task_description (upstream's rollout name for the instruction), seed (optional), + the writer's extras
  /observations/qpos, /observations/qvel, /observations/effort   (T, 14) float
  /observations/images/<camera>                                 (T, H, W, 3) uint8, one chunk per frame
  /action                                                       (T, 14) float
  /timestamps                                                   (T,) int64 ns (optional; not in ALOHA files)
Why one module: a format that two writers both spell out drifts apart. Reading validates shapes and names the
file and the dataset in a one-line error, so a wrong or half-written file fails before training starts rather
than as a shape error deep in a batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import h5py
import numpy as np

from cosmos_policy_ros.errors import CosmosError, file_head, looks_like, one_line

# attrs that write_episode sets from its own keywords; `attrs=` may not repeat them.
OWN_ATTRS = ("sim", "success", "success_score", "task", "instruction", "task_description", "seed")


class EpisodeFormatError(CosmosError, ValueError):
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
    # JSON of the robot config's gripper constants that normalised qpos/actions (converter attr); "" = not recorded
    gripper_constants: str = ""

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class FrameStream:
    """One camera's frames handed over one at a time: each (steps, frame) pair is written at those steps.

    Why: a converted recording holds T x H x W x 3 bytes per camera (about 1 GB a minute at 640x480, 50 Hz);
    the bag converter decodes each frame once and writes it straight into the file instead of stacking them.
    """

    frames: Iterable[tuple[Sequence[int], np.ndarray]]


def write_episode(path: str | Path, qpos, qvel, actions, images: Mapping[str, np.ndarray | FrameStream], *,
                  success: bool, task: str, instruction: str, seed: int | None = None, sim: bool = True,
                  effort=None, success_score: float | None = None, timestamps=None, compression: str | None = None,
                  dtype=np.float32, attrs: Mapping[str, object] | None = None) -> None:
    """Write one episode in the ALOHA HDF5 layout: to a hidden temporary file, renamed at the end.

    A failure (bad shapes, an error raised by a FrameStream) leaves no file behind. ``effort`` defaults to zeros;
    ``timestamps`` (ns) adds /timestamps; ``compression`` applies to the images (h5py name, e.g. "gzip");
    ``dtype`` is the float type of the joint arrays (the bag converter keeps the messages' float64);
    ``attrs`` are extra file attributes (the converter's provenance: kind, outcome, source_bag, ...).
    """
    path = Path(path)
    clash = sorted(set(attrs or ()) & set(OWN_ATTRS))
    if clash:
        raise ValueError(f"{path}: attrs {clash[0]!r} is written from write_episode's own keyword")
    qpos = np.asarray(qpos, dtype)
    arrays = {"observations/qpos": qpos, "observations/qvel": np.asarray(qvel, dtype),
              "observations/effort": np.zeros_like(qpos) if effort is None else np.asarray(effort, dtype),
              "action": np.asarray(actions, dtype)}
    if timestamps is not None:
        arrays["timestamps"] = np.asarray(timestamps, np.int64)
    for key, arr in arrays.items():
        if len(arr) != len(qpos):
            raise EpisodeFormatError(f"{path}: /{key} has {len(arr)} steps, /observations/qpos {len(qpos)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # hidden, so listings and *.hdf5 globs skip it; per process, so two writers of one name do not collide
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w", rdcc_nbytes=2 * 1024 ** 2) as f:
            f.attrs.update(_own_attrs(success=success, success_score=success_score, task=task,
                                      instruction=instruction, seed=seed, sim=sim))
            f.attrs.update(attrs or {})
            for key, arr in arrays.items():
                f.create_dataset(key, data=arr)
            group = f.create_group("observations/images")
            for cam, frames in images.items():
                _write_camera(group, cam, frames, len(qpos), compression, path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _own_attrs(*, success: bool, success_score: float | None, task: str, instruction: str, seed: int | None,
               sim: bool) -> dict[str, object]:
    out = {"sim": bool(sim), "success": bool(success), "task": task, "instruction": instruction,
           # upstream rollout attr name; the task name stands in when there is no instruction
           "task_description": instruction or task,
           "success_score": float("nan") if success_score is None else float(success_score)}
    if seed is not None:
        out["seed"] = int(seed)
    return out


def _write_camera(group: h5py.Group, cam: str, frames: np.ndarray | FrameStream, T: int, compression: str | None,
                  path: Path) -> None:
    """One camera's (T, H, W, 3) uint8 dataset, chunked per frame (a training sample reads single frames)."""
    if not isinstance(frames, FrameStream):
        arr = np.asarray(frames, np.uint8)
        if arr.ndim != 4 or arr.shape[0] != T:
            raise EpisodeFormatError(f"{path}: images/{cam} has shape {arr.shape}, expected ({T}, H, W, 3)")
        group.create_dataset(cam, data=arr, chunks=(1, *arr.shape[1:]), compression=compression)
        return
    ds, written = None, 0
    for steps, frame in frames.frames:
        frame = np.asarray(frame, np.uint8)
        if ds is None:
            ds = group.create_dataset(cam, shape=(T, *frame.shape), dtype=np.uint8, chunks=(1, *frame.shape),
                                      compression=compression)
        elif frame.shape != ds.shape[1:]:
            raise EpisodeFormatError(f"{path}: images/{cam}: frame size changed from {ds.shape[1:]} to {frame.shape}")
        for k in steps:
            ds[k] = frame
        written += len(steps)
    if written < T:
        raise EpisodeFormatError(f"{path}: images/{cam}: frames given for {written} of {T} steps")


def _load(f: h5py.File, key: str, path: Path) -> np.ndarray:
    """Dataset ``key`` as an array; one line naming the file and the dataset when it is missing or unreadable."""
    if not isinstance(f.get(key), h5py.Dataset):
        raise EpisodeFormatError(f"{path}: missing dataset /{key} (not an ALOHA HDF5 episode)")
    try:
        return np.asarray(f[key])
    except OSError as exc:  # a file cut off mid-write: its index lists chunks that are not there
        raise EpisodeFormatError(f"{path}: /{key} is unreadable (truncated file?): {exc}") from None


def open_episode(path: str | Path) -> h5py.File:
    """The episode file opened for reading; EpisodeFormatError naming it if it is missing, not HDF5 or cut short."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeFormatError(f"{path}: episode file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        kind = looks_like(file_head(path))
        if kind != "an HDF5 file":
            raise EpisodeFormatError(f"{path}: not an HDF5 episode file (it looks like {kind})") from None
        raise EpisodeFormatError(f"{path}: not a readable HDF5 file, truncated or corrupt ({one_line(exc)})") from None


def read_episode(path: str | Path, cameras: Sequence[str] = ()) -> EpisodeData:
    """Load qpos, actions, labels and the named cameras' images; one-line error on bad input."""
    path = Path(path)
    with open_episode(path) as f:
        qpos = _load(f, "observations/qpos", path).astype(np.float32)
        actions = _load(f, "action", path).astype(np.float32)
        if qpos.ndim != 2 or actions.ndim != 2 or len(qpos) != len(actions):
            raise EpisodeFormatError(f"{path}: qpos {qpos.shape} and action {actions.shape} "
                                     "must be (T, D) of equal T")
        images = {cam: _read_camera(f, cam, len(qpos), path) for cam in cameras}
        a = f.attrs
        score = a.get("success_score")  # NaN (or absent, in older files) means "no score"
        score = None if score is None or not np.isfinite(float(score)) else float(score)
        return EpisodeData(str(path), qpos, actions, images, bool(a.get("success", True)), score,
                           str(a.get("instruction", a.get("task_description", ""))), str(a.get("task", "")),
                           gripper_constants=str(a.get("gripper_constants", "")))


def camera_frames(f: h5py.File, cam: str, T: int, path: str | Path) -> h5py.Dataset:
    """Camera ``cam``'s frames as an unread dataset, checked to be (T, H, W, 3) uint8; else one line naming it.

    Reads no pixels: the training cache checks every episode's cameras with it before encoding any.
    """
    key = f"observations/images/{cam}"
    d = f.get(key)
    if not isinstance(d, h5py.Dataset):
        have = sorted(f["observations/images"]) if "observations/images" in f else []
        raise EpisodeFormatError(f"{path}: missing camera {cam!r} (has {have})")
    if d.ndim != 4 or d.shape[0] != T or d.shape[-1] != 3 or d.dtype != np.uint8:
        raise EpisodeFormatError(f"{path}: /{key} has shape {d.shape} {d.dtype}, expected ({T}, H, W, 3) uint8")
    return d


def _read_camera(f: h5py.File, cam: str, T: int, path: Path) -> np.ndarray:
    camera_frames(f, cam, T, path)
    return _load(f, f"observations/images/{cam}", path)


def list_episodes(data_dir: str | Path) -> list[Path]:
    """Sorted *.hdf5/*.h5 files under data_dir (recursively); error if there are none."""
    d = Path(data_dir)
    if not d.is_dir():
        raise EpisodeFormatError(f"{d}: dataset directory not found")
    files = sorted(p for p in d.rglob("*") if p.suffix in (".hdf5", ".h5", ".he5") and p.is_file())
    if not files:
        raise EpisodeFormatError(f"{d}: no *.hdf5 episodes found")
    return files
