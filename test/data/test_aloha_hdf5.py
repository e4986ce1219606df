"""ALOHA HDF5 episodes: what write_episode writes reads back equal; a bad file is one error line naming it."""
from __future__ import annotations

from dataclasses import dataclass

import h5py
import numpy as np
import pytest

from cosmos_policy_ros.data.aloha_hdf5 import (
    EpisodeFormatError,
    FrameStream,
    list_episodes,
    read_episode,
    write_episode,
)


@dataclass
class Example:
    qpos: np.ndarray
    qvel: np.ndarray
    effort: np.ndarray
    actions: np.ndarray
    images: dict[str, np.ndarray]


def make_episode(T: int = 6, seed: int = 0) -> Example:
    """A small random episode with two 8x10 cameras."""
    rng = np.random.default_rng(seed)
    return Example(qpos=rng.normal(size=(T, 14)), qvel=rng.normal(size=(T, 14)), effort=rng.normal(size=(T, 14)),
                   actions=rng.normal(size=(T, 14)),
                   images={c: rng.integers(0, 255, (T, 8, 10, 3), dtype=np.uint8) for c in ("cam_high", "cam_low")})


def one_line_error(exc_info, *parts: str) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and all(p in msg for p in parts), msg
    return msg


def test_written_episode_reads_back_equal(tmp_path):
    ex, path = make_episode(), tmp_path / "ep.hdf5"
    write_episode(path, ex.qpos, ex.qvel, ex.actions, ex.images, success=True, task="toy", instruction="do it",
                  seed=7, effort=ex.effort, success_score=0.5)
    ep = read_episode(path, cameras=["cam_high", "cam_low"])
    np.testing.assert_array_equal(ep.qpos, ex.qpos.astype(np.float32))
    np.testing.assert_array_equal(ep.actions, ex.actions.astype(np.float32))
    for cam, frames in ex.images.items():
        np.testing.assert_array_equal(ep.images[cam], frames)
    assert (ep.success, ep.success_score, ep.task, ep.instruction, len(ep)) == (True, 0.5, "toy", "do it", 6)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["observations/qvel"][()], ex.qvel.astype(np.float32))
        np.testing.assert_array_equal(f["observations/effort"][()], ex.effort.astype(np.float32))
        assert f.attrs["seed"] == 7 and f.attrs["task_description"] == "do it" and f.attrs["sim"]
        assert f["observations/images/cam_high"].chunks == (1, 8, 10, 3) and "timestamps" not in f
    assert list_episodes(tmp_path) == [path]          # the temporary file is gone


def test_no_score_reads_back_as_none_and_no_instruction_falls_back_to_the_task(tmp_path):
    ex, path = make_episode(), tmp_path / "ep.hdf5"
    write_episode(path, ex.qpos, ex.qvel, ex.actions, {}, success=False, task="toy", instruction="")
    ep = read_episode(path)
    assert ep.success is False and ep.success_score is None
    with h5py.File(path) as f:
        assert f.attrs["task_description"] == "toy" and np.all(f["observations/effort"][()] == 0)


def test_streamed_frames_write_the_same_file_as_stacked_frames(tmp_path):
    """The converter's path: frames decoded one at a time, each written at the steps that show it."""
    ex = make_episode()
    stacked = {"cam_high": ex.images["cam_high"][[0, 0, 0, 3, 3, 5]]}
    stream = FrameStream(frames=iter([([0, 1, 2], ex.images["cam_high"][0]), ([3, 4], ex.images["cam_high"][3]),
                                      ([5], ex.images["cam_high"][5])]))
    stamps = np.arange(6, dtype=np.int64) * 20_000_000
    kw = dict(success=True, task="toy", instruction="x", effort=ex.effort, timestamps=stamps, compression="gzip",
              dtype=np.float64, attrs={"kind": "teleop", "rate_hz": 50.0})
    write_episode(tmp_path / "a.hdf5", ex.qpos, ex.qvel, ex.actions, stacked, **kw)
    write_episode(tmp_path / "b.hdf5", ex.qpos, ex.qvel, ex.actions, {"cam_high": stream}, **kw)
    with h5py.File(tmp_path / "a.hdf5") as a, h5py.File(tmp_path / "b.hdf5") as b:
        for key in ("observations/qpos", "observations/qvel", "observations/effort", "action", "timestamps",
                    "observations/images/cam_high"):
            assert a[key].dtype == b[key].dtype and a[key].compression == b[key].compression, key
            np.testing.assert_array_equal(a[key][()], b[key][()])
        assert b["observations/qpos"].dtype == np.float64 and b["observations/images/cam_high"].compression == "gzip"
        assert dict(a.attrs) == pytest.approx(dict(b.attrs), nan_ok=True) and b.attrs["kind"] == "teleop"


def test_truncated_file_is_one_error_line_naming_it(tmp_path):
    ex, path = make_episode(T=20), tmp_path / "ep.hdf5"
    write_episode(path, ex.qpos, ex.qvel, ex.actions, ex.images, success=True, task="toy", instruction="x")
    path.write_bytes(path.read_bytes()[:-3000])       # cut off mid-write
    with pytest.raises(EpisodeFormatError) as err:
        read_episode(path, cameras=["cam_high"])
    one_line_error(err, str(path))


@pytest.mark.parametrize("layout, dataset", [("no_action", "/action"), ("action_is_a_group", "/action"),
                                             ("short_action", "action (5, 14)"), ("gray_camera", "cam_high")])
def test_wrong_layout_is_one_error_line_naming_file_and_dataset(tmp_path, layout, dataset):
    path = tmp_path / f"{layout}.hdf5"
    with h5py.File(path, "w") as f:
        f["observations/qpos"] = np.zeros((6, 14))
        f["observations/images/cam_high"] = np.zeros((6, 8, 10) if layout == "gray_camera" else (6, 8, 10, 3),
                                                     np.uint8)
        if layout == "action_is_a_group":
            f.create_group("action")
        elif layout != "no_action":
            f["action"] = np.zeros((5 if layout == "short_action" else 6, 14))
    with pytest.raises(EpisodeFormatError) as err:
        read_episode(path, cameras=["cam_high"])
    one_line_error(err, str(path), dataset)


def test_a_failed_write_leaves_no_file(tmp_path):
    ex = make_episode()
    with pytest.raises(EpisodeFormatError) as err:
        write_episode(tmp_path / "a.hdf5", ex.qpos, ex.qvel, ex.actions, {"cam_high": ex.images["cam_high"][:4]},
                      success=True, task="toy", instruction="x")
    one_line_error(err, "a.hdf5", "images/cam_high")

    def frames_then_crash():
        yield [0, 1], ex.images["cam_high"][0]
        raise RuntimeError("decoder failed")

    with pytest.raises(RuntimeError, match="decoder failed"):
        write_episode(tmp_path / "b.hdf5", ex.qpos, ex.qvel, ex.actions, {"cam_high": FrameStream(frames_then_crash())},
                      success=True, task="toy", instruction="x")
    with pytest.raises(EpisodeFormatError) as err:
        write_episode(tmp_path / "c.hdf5", ex.qpos, ex.qvel, ex.actions[:5], {}, success=True, task="t", instruction="")
    one_line_error(err, "c.hdf5", "/action has 5 steps")
    assert not list(tmp_path.iterdir())


def test_extra_attrs_cannot_overwrite_the_writers_own(tmp_path):
    ex = make_episode()
    with pytest.raises(ValueError, match="attrs 'success' is written from write_episode's own keyword"):
        write_episode(tmp_path / "a.hdf5", ex.qpos, ex.qvel, ex.actions, {}, success=True, task="t", instruction="",
                      attrs={"success": False})
