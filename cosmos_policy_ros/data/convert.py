"""Bag -> ALOHA HDF5 episode (the layout ACT and Cosmos Policy's ALOHA loader read).

Per 50 Hz step t_k (from the episode's start marker, once every required stream has data, to its
stop marker) each stream contributes its latest message at or before t_k, as ALOHA's
record_episodes does live ("latest frame at step time"): values are copied, never interpolated, so
the HDF5 holds exactly what was published. Units follow ALOHA (robot config constants):
qpos gripper = follower left-finger position normalised, action gripper = leader gripper joint
normalised (teleop) or the follower gripper command normalised (policy rollouts), qvel gripper =
finger velocity / position range, effort = the 7 motor currents.

Written to a temporary file and renamed at the end: a bad bag leaves no HDF5 behind.
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cosmos_policy_ros.data.bag_reader import Bag, BagError, open_bag
from cosmos_policy_ros.data.manifest import find_manifest_record
from cosmos_policy_ros.data.recording_config import (COMPRESSED, EVENT, IMAGE, JOINT_STATE,
                                                     ConvertSettings)
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


def _episode_window(bag: Bag, streams: dict[str, _Stream]) -> tuple[int, int]:
    """From the last start marker to the stop marker of the same episode (a latched marker of the
    previous episode, as `ros2 bag record` may pick up, is ignored); bag bounds otherwise."""
    start, stop = bag.start_ns, bag.end_ns
    events = streams.get("__events__")
    if events is not None:
        starts = [(int(t), e.episode_index) for t, e in zip(events.log_times, events.values) if e.event == "start"]
        if starts:
            start, index = starts[-1]
            stops = [int(t) for t, e in zip(events.log_times, events.values)
                     if e.event == "stop" and e.episode_index == index and t >= start]
            if stops:
                stop = stops[0]
    return start, stop


def _label(bag: Bag, events: list) -> dict:
    """Outcome/value/kind/task: manifest (latest word) > metadata custom_data > markers in the bag."""
    info = {"kind": "", "task": "", "instruction": "", "outcome": "", "value": None, "index": None}
    for e in events:
        info.update(kind=e.kind or info["kind"], task=e.task or info["task"],
                    instruction=e.instruction or info["instruction"], index=int(e.episode_index))
        if e.event in ("stop", "label") and e.outcome:
            info.update(outcome=e.outcome, value=None if math.isnan(e.value) else float(e.value))
    cd = bag.custom_data
    if cd.get("outcome") is not None and "episode_index" in cd:
        info.update(kind=cd.get("kind") or info["kind"], task=cd.get("task") or info["task"],
                    instruction=cd.get("instruction") or info["instruction"], index=int(cd["episode_index"]))
        if cd.get("outcome"):
            info.update(outcome=cd["outcome"], value=float(cd["value"]) if cd.get("value") else None)
    rec = find_manifest_record(bag.path)
    if rec is not None:
        info.update(kind=rec.kind, task=rec.task, instruction=rec.instruction, outcome=rec.outcome, value=rec.value,
                    index=rec.index)
        if rec.status == "discarded":
            raise BagError(f"{bag.path}: episode {rec.index} was discarded by the operator")
    info["robot"] = cd.get("robot") or (json.dumps(rec.robot, sort_keys=True) if rec is not None else "")
    return info


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


def _index_of(msg, names: list[str], what: str) -> list[int]:
    have = list(msg.name)
    try:
        return [have.index(n) for n in names]
    except ValueError:
        missing = next(n for n in names if n not in have)
        raise BagError(f"{what}: joint_states lacks joint {missing!r} (has {have})") from None


def _decode_image(msg, msgtype: str) -> np.ndarray:
    from cosmos_policy_ros.perception.image_codec import image_to_rgb

    if msgtype == COMPRESSED:
        from PIL import Image as PILImage

        return np.asarray(PILImage.open(io.BytesIO(bytes(msg.data))).convert("RGB"))
    return image_to_rgb(msg)


def convert_bag(path: str | Path, out_path: str | Path, spec: EpisodeSpec, settings: ConvertSettings,
                progress: bool = False) -> EpisodeInfo:
    """Convert one episode bag into ``out_path`` (.hdf5); nothing is left behind on error."""
    import h5py

    bag = check_bag(path, spec, settings)
    r = spec.robot
    arms = r.config.arms
    cam_topics = spec.camera_topics(bag, settings.cameras)
    action_src, action_topics = _action_topics(bag, spec, settings)
    topics = {r.follower_topic(s, "joint_states"): JOINT_STATE for s in arms}
    for ts in action_topics.values():
        for t in ts:
            topics[t] = bag.topics[t].msgtype
    topics.update({t: bag.topics[t].msgtype for t in cam_topics.values()})
    event_topics = [t for t, i in bag.topics.items() if i.msgtype == EVENT]
    streams = _read_streams(bag, topics, set(cam_topics.values()), settings.time_source)
    events = [bag.deserialize(m) for m in bag.messages(event_topics)] if event_topics else []
    if events:
        ev_times = [m.t_ns for m in bag.messages(event_topics)]
        streams["__events__"] = _Stream("events", EVENT, np.asarray(ev_times), np.asarray(ev_times), events)
    label = _label(bag, events)

    # ---- the 50 Hz grid ---------------------------------------------------------------------
    start, stop = _episode_window(bag, streams)
    data_streams = [s for k, s in streams.items() if k != "__events__"]
    t0 = max([start] + [int(s.times[0]) for s in data_streams])
    t1 = min([stop] + [int(s.times[-1]) for s in data_streams])
    dt = int(round(1e9 / settings.rate_hz))
    if t1 < t0:
        raise BagError(f"{bag.path}: the episode has no interval where every stream has data "
                       f"(streams start {(t0 - start) / 1e9:.2f} s after the start marker, end before it)")
    grid = np.arange(t0, t1 + 1, dt, dtype=np.int64)
    T = len(grid)
    state_age, image_age = settings.max_state_age_s * 1e9, settings.max_image_age_s * 1e9

    # ---- proprio ------------------------------------------------------------------------------
    g = r.config.gripper
    names7 = list(r.config.arm_joints) + [r.config.gripper_joint]
    finger = r.config.finger_joints[0]
    qpos = np.zeros((T, 14))
    qvel = np.zeros((T, 14))
    effort = np.zeros((T, 14))
    action = np.zeros((T, 14))
    for i, side in enumerate(arms):
        topic = r.follower_topic(side, "joint_states")
        pick = _Picker(streams[topic], grid, state_age, topic, bag.path)
        cols = slice(7 * i, 7 * i + 7)
        cache: dict[tuple, list[int]] = {}
        for k, j in enumerate(pick.idx):
            msg = pick.stream.values[j]
            key = tuple(msg.name)
            if key not in cache:
                cache[key] = _index_of(msg, names7 + [finger], f"{bag.path}: {topic}")
            ix = cache[key]
            pos, vel, eff = np.asarray(msg.position), np.asarray(msg.velocity), np.asarray(msg.effort)
            qpos[k, cols] = np.append(pos[ix[:6]], r.follower_finger_to_normalized(pos[ix[7]]))
            if vel.size:
                qvel[k, cols] = np.append(vel[ix[:6]], vel[ix[7]] / (g.follower_position_open - g.follower_position_close))
            if eff.size:
                effort[k, cols] = eff[ix[:7]]
        # ---- actions --------------------------------------------------------------------------
        if action_src == "leader":
            lt = action_topics[side][0]
            lp = _Picker(streams[lt], grid, state_age, lt, bag.path)
            lcache: dict[tuple, list[int]] = {}
            for k, j in enumerate(lp.idx):
                msg = lp.stream.values[j]
                key = tuple(msg.name)
                if key not in lcache:
                    lcache[key] = _index_of(msg, names7, f"{bag.path}: {lt}")
                pos = np.asarray(msg.position)[lcache[key]]
                action[k, cols] = np.append(pos[:6], r.leader_joint_to_normalized(pos[6]))
        else:
            gt, st = action_topics[side]
            gp = _Picker(streams[gt], grid, state_age, gt, bag.path)
            sp = _Picker(streams[st], grid, state_age, st, bag.path)
            for k in range(T):
                arm = np.asarray(gp.stream.values[gp.idx[k]].cmd, dtype=float)
                if arm.size != 6:
                    raise BagError(f"{bag.path}: {gt}: expected 6 joint commands, got {arm.size}")
                action[k, cols] = np.append(arm, r.follower_joint_to_normalized(float(sp.stream.values[sp.idx[k]].cmd)))

    # ---- write: tmp file, images streamed in pass 2, rename ---------------------------------------
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    shape = None
    try:
        with h5py.File(tmp, "w", rdcc_nbytes=1024 ** 2 * 2) as f:
            f.attrs.update({
                "sim": "/sim/status" in bag.topics, "compress": False, "rate_hz": settings.rate_hz,
                "task": label["task"], "task_description": label["instruction"] or label["task"],
                "instruction": label["instruction"], "kind": label["kind"], "outcome": label["outcome"],
                # Unlabelled teleop episodes are demonstrations (upstream: R = 1 for demos); an
                # unlabelled rollout is not a success. "labelled" tells the two cases apart.
                "success": label["outcome"] == "success" or (label["outcome"] == "" and label["kind"] != "policy"),
                "labelled": label["outcome"] in ("success", "failure"),
                "success_score": float("nan") if label["value"] is None else float(label["value"]),
                "episode_index": -1 if label["index"] is None else int(label["index"]),
                "source_bag": str(bag.path), "action_source": action_src, "time_source": settings.time_source,
                "robot": label["robot"], "gripper_constants": json.dumps(
                    {k: getattr(g, k) for k in g.__dataclass_fields__}, sort_keys=True),
            })
            obs = f.create_group("observations")
            obs.create_dataset("qpos", data=qpos)
            obs.create_dataset("qvel", data=qvel)
            obs.create_dataset("effort", data=effort)
            f.create_dataset("action", data=action)
            f.create_dataset("timestamps", data=grid)  # ns, bag clock (not in ALOHA files; ignored by loaders)
            images = obs.create_group("images")
            pickers = {cam: _Picker(streams[t], grid, image_age, f"camera {cam}", bag.path)
                       for cam, t in cam_topics.items()}
            comp = None if settings.image_compression == "none" else settings.image_compression
            for cam, topic in cam_topics.items():
                pick = pickers[cam]
                # ordinal (file order within the topic) -> the steps that use it
                wanted: dict[int, list[int]] = {}
                for k, j in enumerate(pick.idx):
                    wanted.setdefault(int(pick.stream.values[j]), []).append(k)
                ds = None
                bar = _progress(T, f"{bag.path.name} {cam}", progress)
                for ordinal, m in enumerate(bag.messages([topic])):
                    steps = wanted.get(ordinal)
                    if not steps:
                        continue
                    rgb = _decode_image(bag.deserialize(m), m.msgtype)
                    if ds is None:
                        shape = rgb.shape
                        ds = images.create_dataset(cam, shape=(T, *shape), dtype=np.uint8, chunks=(1, *shape),
                                                   compression=comp)
                    elif rgb.shape != shape:
                        raise BagError(f"{bag.path}: camera {cam}: frame size changed from {shape} to {rgb.shape}")
                    for k in steps:
                        ds[k] = rgb
                    bar.update(len(steps))
                bar.close()
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return EpisodeInfo(out_path, bag.path, -1 if label["index"] is None else int(label["index"]), label["kind"],
                       label["task"], label["outcome"], label["value"], T, (grid[-1] - grid[0]) / 1e9,
                       list(cam_topics), action_src, shape)


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
