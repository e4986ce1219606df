"""Bag -> ALOHA HDF5 episode (the layout ACT and Cosmos Policy's ALOHA loader read).

Per 50 Hz step t_k (from the episode's start marker, once every required stream has data, to its
stop marker) each stream contributes its latest message at or before t_k, as ALOHA's
record_episodes does live ("latest frame at step time"): values are copied, never interpolated, so
the HDF5 holds exactly what was published. Units follow ALOHA (robot config constants):
qpos gripper = follower left-finger position normalised, action gripper = leader gripper joint
normalised (teleop) or the follower gripper command normalised (policy rollouts), qvel gripper =
finger velocity / position range, effort = the 7 motor currents.

`convert_bag` runs in named steps: read the bag (pass 1: joints and commands decoded, images only
timed), pick the time grid, build proprio, build actions, pick the camera frames, and write the file
through `aloha_hdf5.write_episode` (pass 2 decodes each image it needs once, streaming it into the file).
The writer works on a temporary file and renames it at the end: a bad bag leaves no HDF5 behind.
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cosmos_policy_ros.data.aloha_hdf5 import FrameStream, write_episode
from cosmos_policy_ros.data.bag_reader import Bag, BagError, open_bag
from cosmos_policy_ros.data.manifest import find_manifest_record
from cosmos_policy_ros.data.recording_config import COMPRESSED, EVENT, IMAGE, JOINT_STATE, ConvertSettings
from cosmos_policy_ros.perception.cameras import CameraConfig
from cosmos_policy_ros.robot.aloha import AlohaRobot

HEADER_TYPES = (IMAGE, COMPRESSED, JOINT_STATE)


@dataclass
class _Stream:
    """One topic's messages: log/header times and decoded payloads (images: message ordinals only)."""

    topic: str
    msgtype: str
    times: np.ndarray
    log_times: np.ndarray
    values: list = field(default_factory=list)


@dataclass
class EpisodeInfo:
    """What a converted episode holds (a row of the summary table)."""

    path: Path
    bag: Path
    index: int
    kind: str
    task: str
    outcome: str
    value: float | None
    steps: int
    duration_s: float
    cameras: list[str]
    action_source: str
    image_shape: tuple[int, ...] | None


class EpisodeSpec:
    """Topic names of one robot/camera setup, and which of them a bag has."""

    def __init__(self, robot: AlohaRobot, cameras: CameraConfig):
        self.robot, self.cameras = robot, cameras

    def camera_topics(self, bag: Bag, wanted: list[str]) -> dict[str, str]:
        found = {}
        for cam in self.cameras.names:
            raw = self.cameras.topic(cam)
            for t in (raw, raw + "/compressed"):
                if t in bag.topics and bag.topics[t].count:
                    found.setdefault(cam, t)
        if wanted:
            missing = [c for c in wanted if c not in found]
            if missing:
                raise BagError(f"{bag.path}: camera {missing[0]!r} is not in the bag (cameras found: {sorted(found)})")
            found = {c: found[c] for c in wanted}
        return found


def check_bag(path: str | Path, spec: EpisodeSpec, settings: ConvertSettings) -> Bag:
    """Open and validate a bag before anything is written: complete, ALOHA topics present."""
    bag = open_bag(path)
    r = spec.robot
    need = [r.follower_topic(s, "joint_states") for s in r.config.arms]
    missing = [t for t in need if not bag.topics.get(t) or not bag.topics[t].count]
    if missing:
        raise BagError(f"{bag.path}: not an ALOHA episode bag: no messages on {missing[0]} "
                       f"(topics: {', '.join(sorted(bag.topics)) or 'none'})")
    _action_topics(bag, spec, settings)
    spec.camera_topics(bag, settings.cameras)
    return bag


def _action_topics(bag: Bag, spec: EpisodeSpec, settings: ConvertSettings) -> tuple[str, dict[str, list[str]]]:
    r = spec.robot
    leader = {s: [r.leader_topic(s, "joint_states")] for s in r.config.arms}
    cmds = {s: [r.follower_topic(s, "joint_group"), r.follower_topic(s, "joint_single")] for s in r.config.arms}

    def have(group):
        return all(bag.topics.get(t) and bag.topics[t].count for ts in group.values() for t in ts)

    src = settings.action_source
    if src == "auto":
        src = "leader" if have(leader) else "commands"
    group = leader if src == "leader" else cmds
    if not have(group):
        missing = next(t for ts in group.values() for t in ts if not (bag.topics.get(t) and bag.topics[t].count))
        raise BagError(f"{bag.path}: no actions: {missing} has no messages (action_source {settings.action_source})")
    return src, group


def _stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _read_streams(bag: Bag, topics: dict[str, str], image_topics: set[str], time_source: str) -> dict[str, _Stream]:
    """Pass 1: every non-image message decoded; images only timed. Counts checked against the index."""
    buf: dict[str, dict[str, list]] = {t: {"t": [], "log": [], "v": []} for t in topics}
    for m in bag.messages(list(topics)):
        b = buf[m.topic]
        msg = bag.deserialize(m) if (m.topic not in image_topics or time_source == "header") else None
        b["log"].append(m.t_ns)
        b["t"].append(_stamp_ns(msg) if time_source == "header" and m.msgtype in HEADER_TYPES else m.t_ns)
        b["v"].append(len(b["v"]) if m.topic in image_topics else msg)
    out = {}
    for t, b in buf.items():
        if len(b["log"]) != bag.topics[t].count:
            raise BagError(f"{bag.path}: {t}: index lists {bag.topics[t].count} messages but {len(b['log'])} "
                           f"are readable (truncated or corrupt bag)")
        times = np.asarray(b["t"], dtype=np.int64)
        order = np.argsort(times, kind="stable")
        out[t] = _Stream(t, topics[t], times[order], np.asarray(b["log"], np.int64)[order],
                         [b["v"][i] for i in order])
    if time_source == "header":
        offsets = np.concatenate([s.times - s.log_times for s in out.values() if s.msgtype in HEADER_TYPES])
        if offsets.size and abs(float(np.median(offsets))) > 0.5e9:
            raise BagError(f"{bag.path}: header stamps are {np.median(offsets) / 1e9:+.1f} s from receive times "
                           "(different clocks, e.g. sim time): use convert.time_source: receive")
    return out


@dataclass
class EpisodeLabel:
    """Kind, task, outcome and value of one episode, and the robot it was recorded on."""

    kind: str = ""
    task: str = ""
    instruction: str = ""
    outcome: str = ""
    value: float | None = None
    index: int | None = None
    robot: str = ""

    @property
    def success(self) -> bool:
        """Unlabelled teleop episodes are demonstrations (upstream: R = 1 for demos); an unlabelled rollout is
        not a success. `labelled` tells the two cases apart."""
        return self.outcome == "success" or (self.outcome == "" and self.kind != "policy")

    @property
    def labelled(self) -> bool:
        return self.outcome in ("success", "failure")

    @property
    def episode_index(self) -> int:
        return -1 if self.index is None else int(self.index)


@dataclass
class _Recording:
    """What pass 1 read from a bag: decoded joint/command streams, timed image streams, label and window."""

    bag: Bag
    streams: dict[str, _Stream]
    label: EpisodeLabel
    camera_topics: dict[str, str]           # camera -> image topic
    action_source: str                      # "leader" or "commands"
    action_topics: dict[str, list[str]]     # arm side -> leader joint_states, or [joint_group, joint_single]
    window: tuple[int, int]                 # ns: start marker .. stop marker (bag bounds without markers)


def _read_recording(path: str | Path, spec: EpisodeSpec, settings: ConvertSettings) -> _Recording:
    """Pass 1: check the bag, decode every joint and command message, time every image, read the markers."""
    bag = check_bag(path, spec, settings)
    r = spec.robot
    cam_topics = spec.camera_topics(bag, settings.cameras)
    action_src, action_topics = _action_topics(bag, spec, settings)
    topics = {r.follower_topic(s, "joint_states"): JOINT_STATE for s in r.config.arms}
    topics.update({t: bag.topics[t].msgtype for ts in action_topics.values() for t in ts})
    topics.update({t: bag.topics[t].msgtype for t in cam_topics.values()})
    streams = _read_streams(bag, topics, set(cam_topics.values()), settings.time_source)
    event_topics = [t for t, i in bag.topics.items() if i.msgtype == EVENT]
    marks = [(m.t_ns, bag.deserialize(m)) for m in bag.messages(event_topics)] if event_topics else []
    return _Recording(bag=bag, streams=streams, label=_label(bag, [e for _, e in marks]), camera_topics=cam_topics,
                      action_source=action_src, action_topics=action_topics, window=_episode_window(bag, marks))


def _episode_window(bag: Bag, marks: list[tuple[int, object]]) -> tuple[int, int]:
    """From the last start marker to the stop marker of the same episode (a latched marker of the
    previous episode, as `ros2 bag record` may pick up, is ignored); bag bounds otherwise."""
    start, stop = bag.start_ns, bag.end_ns
    starts = [(int(t), e.episode_index) for t, e in marks if e.event == "start"]
    if starts:
        start, index = starts[-1]
        stops = [int(t) for t, e in marks if e.event == "stop" and e.episode_index == index and t >= start]
        if stops:
            stop = stops[0]
    return start, stop


def _label(bag: Bag, events: list) -> EpisodeLabel:
    """Outcome/value/kind/task: manifest (latest word) > metadata custom_data > markers in the bag."""
    lab = EpisodeLabel()
    for e in events:
        lab.kind, lab.task = e.kind or lab.kind, e.task or lab.task
        lab.instruction, lab.index = e.instruction or lab.instruction, int(e.episode_index)
        if e.event in ("stop", "label") and e.outcome:
            lab.outcome, lab.value = e.outcome, None if math.isnan(e.value) else float(e.value)
    cd = bag.custom_data
    if cd.get("outcome") is not None and "episode_index" in cd:
        lab.kind, lab.task = cd.get("kind") or lab.kind, cd.get("task") or lab.task
        lab.instruction, lab.index = cd.get("instruction") or lab.instruction, int(cd["episode_index"])
        if cd.get("outcome"):
            lab.outcome, lab.value = cd["outcome"], float(cd["value"]) if cd.get("value") else None
    rec = find_manifest_record(bag.path)
    if rec is not None:
        lab.kind, lab.task, lab.instruction = rec.kind, rec.task, rec.instruction
        lab.outcome, lab.value, lab.index = rec.outcome, rec.value, rec.index
        if rec.status == "discarded":
            raise BagError(f"{bag.path}: episode {rec.index} was discarded by the operator")
    lab.robot = cd.get("robot") or (json.dumps(rec.robot, sort_keys=True) if rec is not None else "")
    return lab


class _Picker:
    """Latest message at or before each step, with an age limit."""

    def __init__(self, stream: _Stream, grid: np.ndarray, max_age_ns: float, what: str, bag: Path):
        idx = np.searchsorted(stream.times, grid, side="right") - 1
        if (idx < 0).any():
            k = int(np.argmax(idx < 0))
            raise BagError(f"{bag}: {what}: no message before step {k}")
        age = grid - stream.times[idx]
        if (age > max_age_ns).any():
            k = int(np.argmax(age > max_age_ns))
            raise BagError(f"{bag}: {what}: no message for {age[k] / 1e9:.2f} s at step {k} "
                           f"(t={(grid[k] - grid[0]) / 1e9:.2f} s; limit {max_age_ns / 1e9:.2f} s): stream dropped out")
        self.idx = idx
        self.stream = stream

    def messages(self) -> list:
        """The picked message of every step (the same message repeats while no newer one has arrived)."""
        return [self.stream.values[j] for j in self.idx]


def _index_of(msg, names: list[str], what: str) -> list[int]:
    have = list(msg.name)
    try:
        return [have.index(n) for n in names]
    except ValueError:
        missing = next(n for n in names if n not in have)
        raise BagError(f"{what}: joint_states lacks joint {missing!r} (has {have})") from None


class _JointColumns:
    """Where the wanted joints sit in a JointState's arrays, looked up once per name list (a driver sends
    the same list every time, but nothing guarantees its order)."""

    def __init__(self, names: list[str], what: str):
        self.names, self.what = names, what
        self._cache: dict[tuple, list[int]] = {}

    def __call__(self, msg) -> list[int]:
        key = tuple(msg.name)
        if key not in self._cache:
            self._cache[key] = _index_of(msg, self.names, self.what)
        return self._cache[key]


def _decode_image(msg, msgtype: str) -> np.ndarray:
    from cosmos_policy_ros.perception.image_codec import image_to_rgb

    if msgtype == COMPRESSED:
        from PIL import Image as PILImage

        return np.asarray(PILImage.open(io.BytesIO(bytes(msg.data))).convert("RGB"))
    return image_to_rgb(msg)


def _time_grid(rec: _Recording, rate_hz: float) -> np.ndarray:
    """The steps (ns, bag clock) at ``rate_hz`` from the episode's start, once every stream has data, to its end."""
    start, stop = rec.window
    t0 = max([start] + [int(s.times[0]) for s in rec.streams.values()])
    t1 = min([stop] + [int(s.times[-1]) for s in rec.streams.values()])
    if t1 < t0:
        raise BagError(f"{rec.bag.path}: the episode has no interval where every stream has data "
                       f"(streams start {(t0 - start) / 1e9:.2f} s after the start marker, end before it)")
    return np.arange(t0, t1 + 1, int(round(1e9 / rate_hz)), dtype=np.int64)


@dataclass
class _Proprio:
    """Follower joint readings on the grid in ALOHA units, (T, 14) each, left arm then right arm."""

    qpos: np.ndarray
    qvel: np.ndarray
    effort: np.ndarray


def _build_proprio(rec: _Recording, grid: np.ndarray, robot: AlohaRobot, max_age_ns: float) -> _Proprio:
    """qpos = 6 arm rad + normalised finger position, qvel = finger velocity / position range, effort = 7 currents."""
    c = robot.config
    T = len(grid)
    out = _Proprio(qpos=np.zeros((T, 14)), qvel=np.zeros((T, 14)), effort=np.zeros((T, 14)))
    names = list(c.arm_joints) + [c.gripper_joint, c.finger_joints[0]]
    finger_range = c.gripper.follower_position_open - c.gripper.follower_position_close
    for i, side in enumerate(c.arms):
        topic = robot.follower_topic(side, "joint_states")
        columns = _JointColumns(names, f"{rec.bag.path}: {topic}")
        cols = slice(7 * i, 7 * i + 7)
        for k, msg in enumerate(_Picker(rec.streams[topic], grid, max_age_ns, topic, rec.bag.path).messages()):
            ix = columns(msg)
            pos, vel, eff = np.asarray(msg.position), np.asarray(msg.velocity), np.asarray(msg.effort)
            out.qpos[k, cols] = np.append(pos[ix[:6]], robot.follower_finger_to_normalized(pos[ix[7]]))
            if vel.size:
                out.qvel[k, cols] = np.append(vel[ix[:6]], vel[ix[7]] / finger_range)
            if eff.size:
                out.effort[k, cols] = eff[ix[:7]]
    return out


def _build_actions(rec: _Recording, grid: np.ndarray, robot: AlohaRobot, max_age_ns: float) -> np.ndarray:
    """(T, 14) actions: the leader arms (teleop) or the follower commands (policy rollouts), grippers normalised."""
    actions = np.zeros((len(grid), 14))
    for i, side in enumerate(robot.config.arms):
        topics = rec.action_topics[side]
        pickers = [_Picker(rec.streams[t], grid, max_age_ns, t, rec.bag.path) for t in topics]
        cols = slice(7 * i, 7 * i + 7)
        if rec.action_source == "leader":
            actions[:, cols] = _leader_actions(pickers[0], robot, f"{rec.bag.path}: {topics[0]}")
        else:
            actions[:, cols] = _command_actions(*pickers, robot, f"{rec.bag.path}: {topics[0]}")
    return actions


def _leader_actions(pick: _Picker, robot: AlohaRobot, what: str) -> np.ndarray:
    """(T, 7): the leader's 6 arm joints (rad) and its gripper joint normalised with leader_joint_{open,close}."""
    c = robot.config
    columns = _JointColumns(list(c.arm_joints) + [c.gripper_joint], what)
    out = np.zeros((len(pick.idx), 7))
    for k, msg in enumerate(pick.messages()):
        pos = np.asarray(msg.position)[columns(msg)]
        out[k] = np.append(pos[:6], robot.leader_joint_to_normalized(pos[6]))
    return out


def _command_actions(arm: _Picker, gripper: _Picker, robot: AlohaRobot, what: str) -> np.ndarray:
    """(T, 7): the joint_group arm command and the joint_single gripper command normalised with follower_joint_*."""
    out = np.zeros((len(arm.idx), 7))
    for k, (arm_msg, grip_msg) in enumerate(zip(arm.messages(), gripper.messages())):
        cmd = np.asarray(arm_msg.cmd, dtype=float)
        if cmd.size != 6:
            raise BagError(f"{what}: expected 6 joint commands, got {cmd.size}")
        out[k] = np.append(cmd, robot.follower_joint_to_normalized(float(grip_msg.cmd)))
    return out


class _CameraFrames:
    """Pass 2 over one camera topic: every frame the grid uses is decoded once, in file order, and handed to the
    HDF5 writer with the steps that show it (a minute of 640x480 frames is about 1 GB: never all in memory)."""

    def __init__(self, rec: _Recording, cam: str, grid: np.ndarray, max_age_ns: float, progress: bool):
        self.bag, self.cam, self.topic = rec.bag, cam, rec.camera_topics[cam]
        pick = _Picker(rec.streams[self.topic], grid, max_age_ns, f"camera {cam}", rec.bag.path)
        self.steps: dict[int, list[int]] = {}   # ordinal (file order within the topic) -> the steps that use it
        for k, ordinal in enumerate(pick.messages()):
            self.steps.setdefault(int(ordinal), []).append(k)
        self.num_steps, self.progress = len(grid), progress
        self.shape: tuple[int, ...] | None = None   # (H, W, 3), once the first frame is decoded

    def __iter__(self):
        bar = _progress(self.num_steps, f"{self.bag.path.name} {self.cam}", self.progress)
        try:
            for ordinal, m in enumerate(self.bag.messages([self.topic])):
                steps = self.steps.get(ordinal)
                if not steps:
                    continue
                rgb = _decode_image(self.bag.deserialize(m), m.msgtype)
                if self.shape is None:
                    self.shape = rgb.shape
                elif rgb.shape != self.shape:
                    raise BagError(f"{self.bag.path}: camera {self.cam}: frame size changed "
                                   f"from {self.shape} to {rgb.shape}")
                yield steps, rgb
                bar.update(len(steps))
        finally:
            bar.close()


def _write_hdf5(out_path: Path, rec: _Recording, grid: np.ndarray, proprio: _Proprio, actions: np.ndarray,
                cameras: dict[str, _CameraFrames], robot: AlohaRobot, settings: ConvertSettings) -> None:
    """The episode file; the joint arrays stay float64 as the messages carry them."""
    lab, g = rec.label, robot.config.gripper
    provenance = {
        "compress": False, "rate_hz": settings.rate_hz, "kind": lab.kind, "outcome": lab.outcome,
        "labelled": lab.labelled, "episode_index": lab.episode_index, "source_bag": str(rec.bag.path),
        "action_source": rec.action_source, "time_source": settings.time_source, "robot": lab.robot,
        "gripper_constants": json.dumps({k: getattr(g, k) for k in g.__dataclass_fields__}, sort_keys=True),
    }
    write_episode(out_path, proprio.qpos, proprio.qvel, actions,
                  {cam: FrameStream(frames) for cam, frames in cameras.items()},
                  success=lab.success, task=lab.task, instruction=lab.instruction,
                  sim="/sim/status" in rec.bag.topics, effort=proprio.effort, success_score=lab.value,
                  timestamps=grid,  # ns, bag clock (not in ALOHA files; ignored by loaders)
                  compression=None if settings.image_compression == "none" else settings.image_compression,
                  dtype=np.float64, attrs=provenance)


def convert_bag(path: str | Path, out_path: str | Path, spec: EpisodeSpec, settings: ConvertSettings,
                progress: bool = False) -> EpisodeInfo:
    """Convert one episode bag into ``out_path`` (.hdf5); nothing is left behind on error."""
    rec = _read_recording(path, spec, settings)
    grid = _time_grid(rec, settings.rate_hz)
    state_age, image_age = settings.max_state_age_s * 1e9, settings.max_image_age_s * 1e9
    proprio = _build_proprio(rec, grid, spec.robot, state_age)
    actions = _build_actions(rec, grid, spec.robot, state_age)
    cameras = {cam: _CameraFrames(rec, cam, grid, image_age, progress) for cam in rec.camera_topics}
    out_path = Path(out_path)
    _write_hdf5(out_path, rec, grid, proprio, actions, cameras, spec.robot, settings)
    lab = rec.label
    return EpisodeInfo(path=out_path, bag=rec.bag.path, index=lab.episode_index, kind=lab.kind, task=lab.task,
                       outcome=lab.outcome, value=lab.value, steps=len(grid), duration_s=(grid[-1] - grid[0]) / 1e9,
                       cameras=list(rec.camera_topics), action_source=rec.action_source,
                       image_shape=next(reversed(cameras.values())).shape if cameras else None)


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def find_bags(paths: list[str | Path]) -> list[Path]:
    """Bag folders named by ``paths`` (bags themselves, or recorder bag_dirs holding episode bags)."""
    from cosmos_policy_ros.data.manifest import MANIFEST_NAME, Manifest

    out: list[Path] = []
    for p in map(Path, paths):
        if (p / MANIFEST_NAME).exists() or (p.is_dir() and not (p / "metadata.yaml").exists()
                                            and not list(p.glob("*.mcap")) and not list(p.glob("*.db3"))):
            discarded = set()
            if (p / MANIFEST_NAME).exists():
                discarded = {e.bag for e in Manifest(p).episodes if e.status == "discarded"}
            subs = sorted(d for d in p.iterdir() if d.is_dir() and d.name not in discarded
                          and not d.name.endswith((".recovering", ".incomplete")))
            if not subs:
                raise BagError(f"{p}: no bags in this folder")
            out += subs
        else:
            out.append(p)
    return out


def convert_bags(paths: list[str | Path], out_dir: str | Path, spec: EpisodeSpec, settings: ConvertSettings,
                 progress: bool = True) -> list[EpisodeInfo]:
    """Convert every bag into ``out_dir/episode_<i>.hdf5`` + dataset_statistics.json, all or nothing.

    Every bag is validated before the first file is written, so a truncated or foreign bag in the
    set stops the run with one error and no partial dataset.
    """
    from cosmos_policy_ros.data.stats import statistics_from_files, write_statistics

    bags = find_bags(paths)
    for b in bags:
        check_bag(b, spec, settings)
    out_dir = Path(out_dir)
    written: list[EpisodeInfo] = []
    try:
        for n, b in enumerate(_progress_iter(bags, progress)):
            written.append(convert_bag(b, out_dir / f".pending_{n}.hdf5", spec, settings, progress))
        final = []
        used: set[int] = set()
        for n, info in enumerate(written):
            idx = info.index if info.index >= 0 and info.index not in used else n
            while idx in used:
                idx += 1
            used.add(idx)
            dst = out_dir / f"episode_{idx}.hdf5"
            os.replace(info.path, dst)
            info.path = dst
            final.append(info)
    except BaseException:
        for info in written:
            Path(info.path).unlink(missing_ok=True)
        raise
    write_statistics(out_dir / "dataset_statistics.json", statistics_from_files([i.path for i in final]))
    return final


def _progress_iter(items, enabled):
    if not enabled or len(items) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="episodes", unit="bag")
