"""rosbag2 bag writer (MCAP storage, metadata v9) fed with raw CDR bytes, flushed on demand.

Why our own flush: rosbags' MCAP writer keeps messages in an in-memory chunk until 1 MiB and writes
the summary only on close, so a killed recorder would lose the open chunk. ``flush()`` closes the
chunk and pushes it to the OS (optionally fsync), so everything written before the last flush
survives SIGKILL as complete MCAP chunks that :mod:`bag_reader` can read and :func:`recover_bag`
can turn back into a regular bag.
"""
from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer

from cosmos_policy_ros.data.msg_types import typestore
from cosmos_policy_ros.errors import CosmosError

_ZERO = QosTime(0, 0)


@dataclass(frozen=True)
class OfferedQos:
    """The QoS a topic's publisher offered (stored so `ros2 bag play` republishes it the same way)."""

    reliable: bool = True
    transient_local: bool = False
    depth: int = 10

    def to_rosbags(self) -> Qos:
        return Qos(QosHistory.KEEP_LAST, self.depth,
                   QosReliability.RELIABLE if self.reliable else QosReliability.BEST_EFFORT,
                   QosDurability.TRANSIENT_LOCAL if self.transient_local else QosDurability.VOLATILE,
                   _ZERO, _ZERO, QosLiveliness.AUTOMATIC, _ZERO, False)


class BagWriterError(CosmosError, RuntimeError):
    """The bag cannot be created or written."""


class BagWriter:
    """One rosbag2 directory (``<path>/metadata.yaml`` + ``<path>/<name>.mcap``). Thread-safe."""

    def __init__(self, path: str | Path, *, fsync: bool = False):
        self.path = Path(path)
        if self.path.exists():
            raise BagWriterError(f"{self.path}: already exists; a bag is never overwritten")
        self.fsync = fsync
        self._ts = typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._lock = threading.Lock()
        self._conns: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.flushed_counts: dict[str, int] = {}
        self.bytes_written = 0
        self.flushes = 0
        try:
            self._writer.open()
        except Exception as exc:  # noqa: BLE001 - one line for the operator
            raise BagWriterError(f"{self.path}: cannot create bag: {exc}") from None
        self.closed = False

    @property
    def mcap_path(self) -> Path:
        return self.path / f"{self.path.name}.mcap"

    def add_topic(self, topic: str, msgtype: str, qos: OfferedQos | None = None) -> None:
        """Declare a topic (idempotent). The type must be known to the typestore."""
        with self._lock:
            if topic in self._conns:
                return
            if msgtype not in self._ts.fielddefs:
                raise BagWriterError(f"{topic}: message type {msgtype} is unknown to the bag typestore")
            qos_list = [qos.to_rosbags()] if qos is not None else []
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self._ts,
                                                             offered_qos_profiles=qos_list)
            self.counts[topic] = 0
            self.flushed_counts[topic] = 0

    def has_topic(self, topic: str) -> bool:
        return topic in self._conns

    def write(self, topic: str, t_ns: int, data: bytes | memoryview) -> None:
        """Append one serialized (CDR) message received at ``t_ns`` (bag log time, ns)."""
        with self._lock:
            if self.closed:
                raise BagWriterError(f"{self.path}: write after close")
            self._writer.write(self._conns[topic], int(t_ns), data)
            self.counts[topic] += 1
            self.bytes_written += len(data)

    def write_message(self, topic: str, t_ns: int, msg, msgtype: str) -> None:
        """Serialize a rosbags message object (events the recorder itself creates) and write it."""
        self.write(topic, t_ns, self._ts.serialize_cdr(msg, msgtype))

    def flush(self) -> None:
        """Make every message written so far survive a crash of this process (SIGKILL)."""
        with self._lock:
            if self.closed:
                return
            storage = self._writer.storage
            if storage.chunk.bio.tell():
                storage.close_chunk()
            storage.bio.flush()
            if self.fsync:
                os.fsync(storage.bio.fileno())
            self.flushed_counts = dict(self.counts)
            self.flushes += 1

    def set_custom_data(self, key: str, value: str) -> None:
        """Key/value stored in metadata.yaml (episode labels; shown by `ros2 bag info`)."""
        with self._lock:
            self._writer.set_custom_data(key, str(value))

    def close(self) -> None:
        """Write the MCAP summary and metadata.yaml: the bag is then complete."""
        with self._lock:
            if self.closed:
                return
            self._writer.close()
            self.closed = True
            self.flushed_counts = dict(self.counts)

    def discard(self) -> None:
        """Abandon the bag and delete its directory (operator discarded the episode)."""
        with self._lock:
            if not self.closed:
                self._writer.abort()
                self.closed = True
        shutil.rmtree(self.path, ignore_errors=True)
