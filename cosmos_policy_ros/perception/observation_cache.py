"""Latest sample per stream, and a synchronised observation only when every stream is fresh.

A policy that acts on a frozen camera or on a joint state from a second ago is worse than one
that waits, so :meth:`ObservationCache.build` refuses (and says why) when any required stream is
older than ``max_age_s``, stamped more than ``max_future_s`` ahead of now (a frozen frame stamped in
the future would otherwise count as fresh for as long as its stamp lies ahead), or the frames are further
apart than ``max_skew_s``. Times are seconds on
one clock chosen by the caller (the node uses message stamps, or arrival times where the camera/driver
host's clock is not synchronised with this one; tests use plain numbers). Each sample may also carry its
message stamp (``msg_stamp``), reported as ``Observation.msg_stamp``: the time the chunk is stamped with, on
the clock of the robot PC that executes it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cosmos_policy_ros.perception.stream_stats import StreamStats


@dataclass
class Observation:
    stamp: float                      # newest sample time among the streams used
    images: dict[str, np.ndarray]     # camera name -> HxWx3 uint8 RGB
    qpos: np.ndarray                  # 14-D [left 6 rad, left gripper 0..1, right 6, right gripper]
    ages: dict[str, float] = field(default_factory=dict)
    skew_s: float = 0.0
    msg_stamp: float | None = None    # newest message stamp among the streams used (None: = stamp)


@dataclass
class NotReady:
    reason: str


class ObservationCache:
    def __init__(self, cameras: list[str], required_cameras: list[str], max_age_s: float = 0.5,
                 max_skew_s: float = 0.1, arms: tuple[str, ...] = ("left", "right"), max_future_s: float = 0.05):
        unknown = set(required_cameras) - set(cameras)
        if unknown:
            raise ValueError(f"required cameras {sorted(unknown)} are not among the cameras {cameras}")
        self.cameras = list(cameras)
        self.required = list(required_cameras)
        self.arms = arms
        self.max_age_s = max_age_s
        self.max_skew_s = max_skew_s
        self.max_future_s = max_future_s
        self._images: dict[str, tuple[float, np.ndarray]] = {}
        self._arms: dict[str, tuple[float, np.ndarray]] = {}
        self._msg_stamps: dict[str, float] = {}   # stream -> message stamp of its latest sample
        self.stats = {name: StreamStats(name) for name in [*self.cameras, *arms]}
        self.rejected = 0

    def put_image(self, camera: str, stamp: float, rgb: np.ndarray, now: float, msg_stamp: float | None = None) -> None:
        if camera not in self.stats:
            raise ValueError(f"unknown camera {camera!r}")
        self._images[camera] = (stamp, rgb)
        self._msg_stamps[camera] = stamp if msg_stamp is None else msg_stamp
        self.stats[camera].tick(now)

    def put_arm(self, side: str, stamp: float, state7: np.ndarray, now: float, msg_stamp: float | None = None) -> None:
        state7 = np.asarray(state7, dtype=float)
        if state7.shape != (7,) or not np.all(np.isfinite(state7)):
            self.rejected += 1
            raise ValueError(f"{side} arm state must be 7 finite numbers, got {state7.tolist()}")
        self._arms[side] = (stamp, state7)
        self._msg_stamps[side] = stamp if msg_stamp is None else msg_stamp
        self.stats[side].tick(now)

    def build(self, now: float) -> Observation | NotReady:
        """The synchronised observation, or NotReady naming the first stream at fault."""
        stamps: dict[str, float] = {}
        for side in self.arms:
            if side not in self._arms:
                return NotReady(f"no joint states yet from the {side} arm")
            stamps[side] = self._arms[side][0]
        images = {}
        for cam in self.cameras:
            if cam not in self._images:
                if cam in self.required:
                    return NotReady(f"no image yet from {cam}")
                continue
            stamps[cam] = self._images[cam][0]
            images[cam] = self._images[cam][1]
        ages = {k: now - t for k, t in stamps.items()}
        for name, age in ages.items():
            if -age > self.max_future_s:
                return NotReady(f"{name} is stamped {-age:.2f} s in the future (limit {self.max_future_s:.2f} s): "
                                f"are the clocks of camera/driver host and this host in sync?")
            if age > self.max_age_s and (name in self.arms or name in self.required):
                return NotReady(f"{name} is stale: newest sample {age:.2f} s old (limit {self.max_age_s:.2f} s)")
        fresh = {k: t for k, t in stamps.items() if ages[k] <= self.max_age_s}
        images = {k: v for k, v in images.items() if k in fresh}
        cam_times = [t for k, t in fresh.items() if k in self.cameras]
        skew = (max(cam_times) - min(cam_times)) if len(cam_times) > 1 else 0.0
        if skew > self.max_skew_s:
            return NotReady(f"camera frames are {skew * 1000:.0f} ms apart (limit {self.max_skew_s * 1000:.0f} ms)")
        qpos = np.concatenate([self._arms[s][1] for s in self.arms])
        return Observation(max(fresh.values()), images, qpos, ages, skew,
                           msg_stamp=max(self._msg_stamps[k] for k in fresh))
