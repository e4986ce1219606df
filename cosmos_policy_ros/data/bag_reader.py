"""Read rosbag2 bags (MCAP or sqlite3, ours or `ros2 bag record`'s) and recover killed recordings.

A complete bag is read with rosbags. A bag whose recorder died (no metadata.yaml, no MCAP summary)
is read by scanning its MCAP records up to the last complete chunk: every message flushed before
the crash. :func:`open_bag` refuses such a bag (one error line) unless asked for it, so training data
never silently comes from a half-written file; :func:`recover_bag` rewrites it as a complete bag
(``data/session.py:repair_bag`` does that, and marks the episode interrupted, when the next recording
session or ``cosmos-aloha convert`` finds one whose recorder is gone).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from cosmos_policy_ros.data.bag_writer import BagWriter
from cosmos_policy_ros.data.msg_types import register_from_bag, typestore
from cosmos_policy_ros.errors import CosmosError, file_head, looks_like, one_line

MCAP_MAGIC = b"\x89MCAP0\r\n"


class BagError(CosmosError, ValueError):
    """The path is not a readable rosbag2 bag (foreign, truncated or corrupt); message is one line."""


@dataclass
class TopicInfo:
    msgtype: str
    count: int


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    t_ns: int          # bag log time (receive time at the recorder)
    data: bytes        # CDR


@dataclass
class _Def:
    """Stand-in for rosbags' Connection where only type and definition are needed."""

    msgtype: str
    msgdef: object


@dataclass
class _MsgDef:
    data: str


@dataclass
class Bag:
    path: Path
    complete: bool
    storage: str
    topics: dict[str, TopicInfo]
    custom_data: dict[str, str] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    _files: list[Path] = field(default_factory=list, repr=False)

    @property
    def message_count(self) -> int:
        return sum(t.count for t in self.topics.values())

    def messages(self, topics: list[str] | None = None) -> Iterator[BagMessage]:
        """Messages in file order (log time within a topic); ``topics`` filters."""
        wanted = set(topics) if topics is not None else None
        if self.complete:
            yield from _complete_messages(self, wanted)
        else:
            for m in _scan_mcap(self._files[0]).messages:
                if wanted is None or m.topic in wanted:
                    yield m

    def deserialize(self, msg: BagMessage):
        """Decode a message into a rosbags object (numpy arrays for numeric sequences)."""
        try:
            return typestore().deserialize_cdr(msg.data, msg.msgtype)
        except Exception as exc:  # noqa: BLE001
            raise BagError(f"{self.path}: cannot decode a {msg.msgtype} message on {msg.topic}: {exc}") from None


def _resolve_dir(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_file() and (p.name == "metadata.yaml" or p.suffix in (".mcap", ".db3")):
        p = p.parent
    if not p.exists():
        raise BagError(f"{p}: no such bag")
    if not p.is_dir():
        raise BagError(f"{p}: not a rosbag2 bag (expected a folder with metadata.yaml and .mcap/.db3 files)")
    return p


def open_bag(path: str | Path, allow_incomplete: bool = False) -> Bag:
    """Open a bag folder. Incomplete (crashed) bags raise BagError unless ``allow_incomplete``."""
    p = _resolve_dir(path)
    if (p / "metadata.yaml").is_file():
        return _open_complete(p)
    mcaps = sorted(p.glob("*.mcap"))
    if not mcaps:
        raise BagError(f"{p}: not a rosbag2 bag (no metadata.yaml and no .mcap file)")
    scan = _scan_mcap(mcaps[0])
    if not allow_incomplete:
        raise BagError(
            f"{p}: incomplete bag (no metadata.yaml; the recorder was killed or is still running): "
            f"{len(scan.messages)} messages are readable up to byte {scan.good_bytes}; "
            f"`cosmos-aloha convert` repairs it, or run `cosmos-aloha bag-info --recover {p}`")
    topics: dict[str, TopicInfo] = {}
    for m in scan.messages:
        topics.setdefault(m.topic, TopicInfo(m.msgtype, 0)).count += 1
    for topic, msgtype in scan.channels.values():
        topics.setdefault(topic, TopicInfo(msgtype, 0))
    times = [m.t_ns for m in scan.messages]
    return Bag(p, False, "mcap", topics, {}, min(times, default=0), max(times, default=0), [mcaps[0]])


def _open_complete(p: Path) -> Bag:
    from rosbags.rosbag2 import Reader

    meta = _metadata(p)
    reader = Reader(p)
    try:
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types; one line either way
        reason = one_line(exc)
        if "magic" in reason.lower() or "footer" in reason.lower():
            files = [p / Path(str(f)).name for f in meta.get("relative_file_paths") or []]
            foreign = [(f, looks_like(file_head(f))) for f in files if f.suffix == ".mcap"
                       and not file_head(f).startswith(MCAP_MAGIC[:5])]
            if foreign:
                raise BagError(f"{foreign[0][0]}: not an MCAP file (it looks like {foreign[0][1]})") from None
            reason = f"truncated or corrupt storage file ({reason})"
        raise BagError(f"{p}: cannot read bag: {reason}") from None
    try:
        register_from_bag(typestore(), reader.connections)
        topics: dict[str, TopicInfo] = {}
        for c in reader.connections:
            info = topics.setdefault(c.topic, TopicInfo(c.msgtype, 0))
            info.count += c.msgcount
        custom = {str(k): str(v) for k, v in (meta.get("custom_data") or {}).items()}
        start, end = (reader.start_time, reader.end_time) if reader.message_count else (0, 0)
        files = [p / Path(f).name for f in meta.get("relative_file_paths", [])]
        return Bag(p, True, str(meta.get("storage_identifier", "")), topics, custom, start, end, files)
    finally:
        reader.close()


def _metadata(p: Path) -> dict:
    """metadata.yaml's rosbag2_bagfile_information; BagError naming the file if it is not rosbag2 metadata."""
    import yaml

    meta = p / "metadata.yaml"
    try:
        data = yaml.safe_load(meta.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BagError(f"{meta}: not rosbag2 metadata (it looks like {looks_like(file_head(meta))})") from None
    except yaml.YAMLError as exc:
        raise BagError(f"{meta}: not valid YAML ({one_line(str(getattr(exc, 'problem', None) or exc))})") from None
    info = data.get("rosbag2_bagfile_information") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        raise BagError(f"{meta}: not rosbag2 metadata (no rosbag2_bagfile_information mapping)")
    return info


def _complete_messages(bag: Bag, wanted: set[str] | None) -> Iterator[BagMessage]:
    from rosbags.rosbag2 import Reader

    with Reader(bag.path) as reader:
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        try:
            for c, t, raw in reader.messages(connections=conns):
                yield BagMessage(c.topic, c.msgtype, t, bytes(raw))
        except BagError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BagError(f"{bag.path}: corrupt bag while reading messages: {exc}") from None


@dataclass
class _Scan:
    messages: list[BagMessage]
    channels: dict[int, tuple[str, str]]
    schemas: dict[int, tuple[str, str]]
    good_bytes: int


def _scan_mcap(path: Path) -> _Scan:
    """Every message in complete MCAP records, stopping at the first truncated/corrupt one."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    with open(path, "rb") as f:
        if f.read(8) != MCAP_MAGIC:
            raise BagError(f"{path}: not an MCAP file (bad magic)")
        f.seek(0)
        reader = StreamReader(f, skip_magic=False)
        schemas: dict[int, tuple[str, str]] = {}
        channels: dict[int, tuple[str, str]] = {}
        messages: list[BagMessage] = []
        good = 8
        pending: list[BagMessage] = []
        try:
            for rec in reader.records:
                if isinstance(rec, Schema):
                    schemas[rec.id] = (rec.name, rec.data.decode("utf-8", "replace"))
                elif isinstance(rec, Channel):
                    name = schemas.get(rec.schema_id, ("", ""))[0]
                    channels[rec.id] = (rec.topic, name)
                elif isinstance(rec, Message):
                    topic, msgtype = channels.get(rec.channel_id, ("", ""))
                    pending.append(BagMessage(topic, msgtype, rec.log_time, bytes(rec.data)))
                # Records inside a chunk are yielded only once the whole chunk has been read.
                messages.extend(pending)
                pending.clear()
                good = f.tell()
        except Exception:  # noqa: BLE001 - truncated tail: keep what was complete
            pass
    register_from_bag(typestore(), [_Def(t, _MsgDef(d)) for t, d in schemas.values()])
    return _Scan([m for m in messages if m.topic], channels, schemas, good)


def recover_bag(path: str | Path, keep_original: bool = False) -> Bag:
    """Rewrite an incomplete bag as a complete one holding every readable message; returns it.

    The result is an ordinary rosbag2 bag (MCAP with summary and footer, metadata.yaml with counts and
    duration), so stock readers (rosbags, the mcap package, `ros2 bag`) open it.
    """
    bag = open_bag(path, allow_incomplete=True)
    if bag.complete:
        return bag
    tmp = bag.path.with_name(bag.path.name + ".recovering")
    if tmp.exists():
        shutil.rmtree(tmp)
    # The new MCAP must carry the bag's name (rosbag2 layout): write to tmp/<name>, then swap.
    work = tmp / bag.path.name
    tmp.mkdir()
    writer = BagWriter(work)
    try:
        for topic, info in bag.topics.items():
            if info.count:
                writer.add_topic(topic, info.msgtype)
        for m in bag.messages():
            writer.write(m.topic, m.t_ns, m.data)
        writer.set_custom_data("recovered_from_incomplete_bag", "true")
        writer.close()
    except Exception as exc:  # noqa: BLE001
        shutil.rmtree(tmp, ignore_errors=True)
        raise BagError(f"{bag.path}: recovery failed: {exc}") from None
    old = bag.path.with_name(bag.path.name + ".incomplete")
    bag.path.rename(old)
    work.rename(bag.path)
    tmp.rmdir()
    if not keep_original:
        shutil.rmtree(old)
    return open_bag(bag.path)
