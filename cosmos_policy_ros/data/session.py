"""Episode state machine of the recorder: one bag per episode, markers in the bag and the manifest.

start opens ``<bag_dir>/episode_NNNN/`` and writes a start marker; data arrives as raw CDR through
:meth:`write`; stop writes the stop marker (optionally with the outcome), closes the bag and the
manifest entry; discard deletes the bag (the current one, or the last finished one); label sets
outcome/value on the current episode (marker in the bag) or on the last finished one (manifest and
the bag's metadata.yaml custom_data, since a closed MCAP file is not rewritten). No ROS imports.

Two bag writers: ``rosbags`` (this package's :class:`BagWriter`, fed raw CDR by the recorder node)
and ``ros2bag`` (one `ros2 bag record -s mcap` process per episode, where the ROS 2 CLI exists); the
markers then reach the bag through the event topic, so ``on_marker`` is called before a bag closes.

A recorder that dies mid-episode (SIGKILL, power loss) leaves a bag without MCAP summary and a manifest
entry stuck at "recording". The episode lock (``manifest.EpisodeLock``, held from start to stop) tells
such an episode from one still being recorded: :func:`repair_bag` rewrites the dead one's bag as a
complete bag and marks it "interrupted", labelled failure. A new session does this for its bag_dir, and
``cosmos-aloha convert`` for the bags it is given, so a killed recording needs no manual step.
"""
from __future__ import annotations

import json
import math
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from cosmos_policy_ros.data.bag_reader import Bag, BagError, recover_bag
from cosmos_policy_ros.data.bag_writer import BagWriter, OfferedQos
from cosmos_policy_ros.data.manifest import (
    KINDS,
    MANIFEST_NAME,
    EpisodeLock,
    EpisodeRecord,
    Manifest,
    ManifestError,
    normalise_label,
)
from cosmos_policy_ros.data.msg_types import typestore
from cosmos_policy_ros.data.recording_config import EVENT
from cosmos_policy_ros.data.ros2_bag import Ros2BagProcess


@dataclass
class CommandResult:
    success: bool
    message: str
    episode_index: int = 0
    event: dict | None = None   # the marker written (fields of EpisodeEvent), for the node to publish


class RecordingInProgress(BagError):
    """The bag's episode lock is held: a live process is still recording it (message is one line)."""


class EpisodeSession:
    """One recorder's episodes in ``bag_dir``. Creating it repairs episodes whose recorder died
    (:func:`repair_interrupted`, one ``log`` line each)."""

    def __init__(self, bag_dir: str | Path, *, event_topic: str = "/cosmos/episode_event", fsync: bool = False,
                 robot_info: dict | None = None, default_task: str = "", default_instruction: str = "",
                 backend: str = "rosbags", ros2_topics: list[str] | None = None, ros2_args: list[str] | None = None,
                 on_marker: Callable[[dict], None] | None = None, marker_grace_s: float = 0.5,
                 log: Callable[[str], None] = print):
        if backend not in ("rosbags", "ros2bag"):
            raise ValueError(f"backend must be rosbags or ros2bag, got {backend!r}")
        self.backend = backend
        self.ros2_topics = list(ros2_topics or [])
        self.ros2_args = list(ros2_args or [])
        self.on_marker = on_marker
        self.marker_grace_s = marker_grace_s
        self.bag_dir = Path(bag_dir)
        self.bag_dir.mkdir(parents=True, exist_ok=True)
        self.repaired = repair_interrupted(self.bag_dir, log)
        self.manifest = Manifest(self.bag_dir)
        self.event_topic = event_topic
        self.fsync = fsync
        self.robot_info = dict(robot_info or {})
        self.default_task = default_task
        self.default_instruction = default_instruction
        self.writer: BagWriter | Ros2BagProcess | None = None
        self.current: EpisodeRecord | None = None
        self._episode_lock: EpisodeLock | None = None
        self.received: dict[str, int] = {}
        self._lock = threading.RLock()

    @property
    def recording(self) -> bool:
        return self.writer is not None

    # ---- data ----------------------------------------------------------------------------
    def write(self, topic: str, msgtype: str, t_ns: int, data: bytes, qos: OfferedQos | None = None) -> bool:
        """Write one message if an episode is being recorded; returns whether it was written."""
        with self._lock:
            if not isinstance(self.writer, BagWriter):
                return False
            if not self.writer.has_topic(topic):
                self.writer.add_topic(topic, msgtype, qos)
            self.writer.write(topic, t_ns, data)
            self.received[topic] = self.received.get(topic, 0) + 1
            return True

    def flush(self) -> None:
        with self._lock:
            if isinstance(self.writer, BagWriter):
                self.writer.flush()

    # ---- commands --------------------------------------------------------------------------
    def command(self, command: str, t_ns: int, *, kind: str = "", outcome: str = "", value: float = math.nan,
                task: str = "", instruction: str = "") -> CommandResult:
        """Dispatch an EpisodeCommand; bad requests come back as success=False with one line."""
        try:
            if command == "start":
                return self.start(t_ns, kind or "teleop", task, instruction)
            if command == "stop":
                return self.stop(t_ns, outcome, value)
            if command == "discard":
                return self.discard(t_ns)
            if command == "label":
                return self.label(t_ns, outcome, value)
            return CommandResult(False, f"unknown command {command!r} (start | stop | discard | label)")
        except ManifestError as exc:
            return CommandResult(False, str(exc))

    def start(self, t_ns: int, kind: str = "teleop", task: str = "", instruction: str = "") -> CommandResult:
        with self._lock:
            if self.writer is not None:
                return CommandResult(False, f"episode {self.current.index} is already recording; stop it first",
                                     self.current.index)
            if kind not in KINDS:
                return CommandResult(False, f"kind must be teleop or policy, got {kind!r}")
            index = self.manifest.next_index()
            name = f"episode_{index:04d}"
            failure = self._open_episode(name)
            if failure:
                return CommandResult(False, failure)
            self.received = {}
            self.current = EpisodeRecord(index, name, kind, task or self.default_task,
                                         instruction or self.default_instruction, start_ns=int(t_ns),
                                         robot=self.robot_info)
            self.manifest.add(self.current)
            event = self._marker("start", t_ns)
            self.flush()  # the bag exists on disk with its start marker from the first moment
            return CommandResult(True, f"recording episode {index} into {self.writer.path}", index, event)

    def _open_episode(self, name: str) -> str:
        """Take the episode lock, then open the bag writer; returns '' or why it failed (lock released)."""
        lock = EpisodeLock(self.bag_dir, name)
        if not lock.acquire():
            return f"{lock.path}: held by {lock.holder() or 'another process'}; is another recorder using this bag_dir?"
        try:
            if self.backend == "ros2bag":
                self.writer = Ros2BagProcess(self.bag_dir / name, self.ros2_topics, self.ros2_args)
                self.writer.start()
            else:
                self.writer = BagWriter(self.bag_dir / name, fsync=self.fsync)
                self.writer.add_topic(self.event_topic, EVENT)
        except (OSError, RuntimeError) as exc:  # BagWriterError and ros2 bag's 'already exists' are RuntimeErrors
            self.writer = None
            lock.release()
            what = "cannot start ros2 bag record" if self.backend == "ros2bag" else "cannot open the bag"
            return f"{what}: {exc}"
        self._episode_lock = lock
        return ""

    def _release_episode(self) -> None:
        """After the manifest holds the episode's final status: a later reader of the lock sees it."""
        self.writer, self.current = None, None
        if self._episode_lock is not None:
            self._episode_lock.release()
            self._episode_lock = None

    def stop(self, t_ns: int, outcome: str = "", value: float = math.nan, reason: str = "command") -> CommandResult:
        with self._lock:
            if self.writer is None:
                return CommandResult(False, "no episode is recording")
            rec = self.current
            if outcome:
                rec.outcome, rec.value = normalise_label(outcome, value)
            event = self._marker("stop", t_ns)
            rec.stop_ns, rec.stop_reason = int(t_ns), reason
            if isinstance(self.writer, BagWriter):
                for k, v in episode_custom_data(rec).items():
                    self.writer.set_custom_data(k, v)
                self.writer.close()
                rec.message_counts = dict(self.writer.counts)
            else:
                time.sleep(self.marker_grace_s)  # the stop marker reaches ros2 bag before it closes
                code = self.writer.stop()
                update_custom_data(self.bag_dir / rec.bag, episode_custom_data(rec))
                rec.message_counts = _counts_from_metadata(self.bag_dir / rec.bag)
                if code != 0:
                    rec.stop_reason = f"{reason}; ros2 bag record exited {code} (see {self.writer.log_path.name})"
            rec.status = "complete"
            self.manifest.save()
            self._release_episode()
            n = sum(rec.message_counts.values())
            return CommandResult(True, f"episode {rec.index} stopped: {n} messages in {self.bag_dir / rec.bag}",
                                 rec.index, event)

    def discard(self, t_ns: int) -> CommandResult:
        with self._lock:
            recording = self.writer is not None
            if recording:
                rec = self.current
                self.writer.discard()
            else:
                rec = self.manifest.last_finished()
                if rec is None:
                    return CommandResult(False, "nothing to discard: no episode recorded in this bag_dir")
                shutil.rmtree(self.bag_dir / rec.bag, ignore_errors=True)
            rec.status, rec.stop_ns = "discarded", rec.stop_ns or int(t_ns)
            self.manifest.save()
            if recording:
                self._release_episode()
            return CommandResult(True, f"episode {rec.index} discarded", rec.index,
                                 self._announce(self._event_fields("discard", rec, t_ns)))

    def label(self, t_ns: int, outcome: str, value: float = math.nan) -> CommandResult:
        with self._lock:
            rec = self.current if self.writer is not None else self.manifest.last_finished()
            if rec is None:
                return CommandResult(False, "nothing to label: no episode recorded in this bag_dir")
            rec.outcome, rec.value = normalise_label(outcome, value)
            if self.writer is not None:
                event = self._marker("label", t_ns)
            else:
                event = self._announce(self._event_fields("label", rec, t_ns))
                update_custom_data(self.bag_dir / rec.bag, episode_custom_data(rec))
            self.manifest.save()
            return CommandResult(True, f"episode {rec.index} labelled {rec.outcome or 'unlabelled'}"
                                 f" (value {rec.value})", rec.index, event)

    def close(self, t_ns: int) -> None:
        """Shutdown: an episode still recording is stopped (reason 'shutdown') so its bag is complete."""
        with self._lock:
            if self.writer is not None:
                self.stop(t_ns, reason="shutdown")

    # ---- markers ---------------------------------------------------------------------------
    def _event_fields(self, event: str, rec: EpisodeRecord, t_ns: int) -> dict:
        return {"stamp_ns": int(t_ns), "event": event, "episode_index": rec.index, "kind": rec.kind,
                "outcome": rec.outcome, "value": math.nan if rec.value is None else float(rec.value),
                "task": rec.task, "instruction": rec.instruction}

    def _marker(self, event: str, t_ns: int) -> dict:
        """Write an EpisodeEvent into the open bag (serialized like rclpy would) and publish it."""
        fields = self._event_fields(event, self.current, t_ns)
        if isinstance(self.writer, BagWriter):
            self.writer.write(self.event_topic, t_ns, serialize_event(fields))
        if self.on_marker is not None:
            self.on_marker(fields)
        return fields

    def _announce(self, fields: dict) -> dict:
        if self.on_marker is not None:
            self.on_marker(fields)
        return fields


def episode_custom_data(rec: EpisodeRecord) -> dict[str, str]:
    """The episode's manifest entry as metadata.yaml custom_data: a bag copied away keeps its label."""
    return {"episode_index": str(rec.index), "kind": rec.kind, "task": rec.task,
            "instruction": rec.instruction, "outcome": rec.outcome,
            "value": "" if rec.value is None else repr(float(rec.value)),
            "robot": json.dumps(rec.robot, sort_keys=True)}


def update_custom_data(bag: Path, custom: dict[str, str]) -> None:
    """Merge ``custom`` into a closed bag's metadata.yaml (atomically); the MCAP file is never rewritten."""
    path = bag / "metadata.yaml"
    if not path.exists():
        return
    data = yaml.safe_load(path.read_text())
    info = data["rosbag2_bagfile_information"]
    info["custom_data"] = {**(info.get("custom_data") or {}), **custom}
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, default_flow_style=False, sort_keys=False))
    tmp.replace(path)


def _counts_from_metadata(bag: Path) -> dict[str, int]:
    try:
        info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return {t["topic_metadata"]["name"]: int(t["message_count"]) for t in info["topics_with_message_count"]}
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return {}


def serialize_event(fields: dict) -> bytes:
    """CDR bytes of a cosmos_policy_ros/msg/EpisodeEvent from :meth:`EpisodeSession._event_fields`."""
    ts = typestore()
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    Event = ts.types[EVENT]
    ns = fields["stamp_ns"]
    msg = Event(Header(Time(ns // 1_000_000_000, ns % 1_000_000_000), ""), fields["event"], fields["episode_index"],
                fields["kind"], fields["outcome"], float(fields["value"]), fields["task"], fields["instruction"])
    return ts.serialize_cdr(msg, EVENT)


# ---- episodes whose recorder died ------------------------------------------------------------------------------
def repair_interrupted(bag_dir: Path, log: Callable[[str], None] = print) -> list[EpisodeRecord]:
    """Repair every episode of ``bag_dir`` still "recording" whose recorder is gone (see :func:`repair_bag`).

    Episodes being recorded by a live process are left alone; a bag that cannot be repaired is logged and
    skipped, so one broken folder never stops a recorder from starting.
    """
    if not (bag_dir / MANIFEST_NAME).exists():
        return []
    repaired = []
    for name in [e.bag for e in Manifest(bag_dir).episodes if e.status == "recording"]:
        try:
            rec = repair_bag(bag_dir / name, log)
        except RecordingInProgress as exc:
            log(f"{exc}; left alone")
            continue
        except (BagError, OSError) as exc:
            log(f"{bag_dir / name}: cannot repair this interrupted episode: {exc}")
            continue
        if rec is not None:
            repaired.append(rec)
    return repaired


def repair_bag(path: Path, log: Callable[[str], None] = print) -> EpisodeRecord | None:
    """Recover the bag of an episode whose recorder died and mark it "interrupted"; None if nothing to do.

    Why here and automatic: a killed recorder leaves an MCAP without summary, which stock readers refuse,
    and a manifest entry that says "recording" forever. The episode lock is taken first, so a recording
    that is still going is never touched (RecordingInProgress), and the manifest is read again under the
    lock, so an episode that a live recorder finished meanwhile stays as it finished. A bag outside a
    recorder bag_dir (a killed `ros2 bag record`) is repaired the same way, labelled in its custom_data.
    An interrupted episode is labelled failure (value 0): cut short, it must never count as a
    demonstration; an operator who judges otherwise relabels it (`cosmos-aloha episodes --label`).
    """
    lock = EpisodeLock(path.parent, path.name)
    if not lock.acquire():
        raise RecordingInProgress(f"{path}: still being recorded (lock {lock.path.name} held by "
                                  f"{lock.holder() or 'a live process'})")
    try:
        manifest = Manifest(path.parent) if (path.parent / MANIFEST_NAME).exists() else None
        rec = manifest.by_bag(path.name) if manifest is not None else None
        incomplete = path.is_dir() and not (path / "metadata.yaml").exists()
        if not (rec.status == "recording" if rec is not None else incomplete):
            return None  # finished meanwhile, or a complete bag nobody manages
        bag = recover_bag(path) if path.is_dir() else None
        rec = rec or _record_from_markers(bag)
        _mark_interrupted(rec, bag)
        if bag is not None:
            update_custom_data(bag.path, {**episode_custom_data(rec), "status": "interrupted"})
        if manifest is not None:
            manifest.save()
        what = f"episode {rec.index}" if rec.index >= 0 else "recording"
        log(f"{path}: {what} was interrupted (its recorder died): bag repaired, "
            f"{sum(rec.message_counts.values())} messages kept; status interrupted, labelled failure")
        return rec
    finally:
        lock.release()


def _record_from_markers(bag: Bag) -> EpisodeRecord:
    """What the first episode marker says about a bag without manifest entry (index -1 without one)."""
    rec = EpisodeRecord(-1, bag.path.name)
    events = [t for t, info in bag.topics.items() if info.msgtype == EVENT]
    for m in bag.messages(events):
        e = bag.deserialize(m)
        rec.index, rec.kind = int(e.episode_index), e.kind or rec.kind
        rec.task, rec.instruction, rec.start_ns = e.task, e.instruction, m.t_ns
        break
    return rec


def _mark_interrupted(rec: EpisodeRecord, bag: Bag | None) -> None:
    """Status, counts, end time and failure label of an episode cut short (``bag`` None: nothing on disk)."""
    kept = {t: info.count for t, info in bag.topics.items()} if bag is not None else {}
    dropped = "; its success label was dropped" if rec.outcome == "success" else ""
    rec.status, rec.outcome, rec.value = "interrupted", "failure", 0.0
    rec.message_counts = kept
    rec.stop_ns = max(rec.start_ns, bag.end_ns) if bag is not None and bag.message_count else rec.start_ns
    rec.stop_reason = (f"interrupted: the recorder died; {sum(kept.values())} messages kept "
                       f"(everything up to its last flush){dropped}")
