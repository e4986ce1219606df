"""Episode manifest: the small JSON sidecar beside the bags (`<bag_dir>/episodes.json`).

Why a sidecar: labels often arrive after an episode's bag is closed (the operator judges success
after the arm stops), and a dataset tool wants every episode's kind, outcome and status without
opening gigabytes of bags. Rewritten atomically (tmp + rename), so a crash never leaves half a file.

Beside it, ``<bag>.lock`` exists while an episode records (:class:`EpisodeLock`): it is how a later
process tells a recording that is still going from one whose recorder died (status "recording" in
both cases), so that only the dead one is repaired and marked "interrupted".
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cosmos_policy_ros.errors import CosmosError

MANIFEST_NAME = "episodes.json"
FORMAT = "cosmos_policy_ros.episodes/1"
KINDS = ("teleop", "policy")
OUTCOMES = ("success", "failure", "")
# recording: being written, or its recorder died and nobody has repaired it yet (EpisodeLock tells which)
# interrupted: the recorder died mid-episode; the bag was repaired and holds everything up to its last flush
STATUSES = ("recording", "complete", "discarded", "interrupted")


class ManifestError(CosmosError, ValueError):
    """The manifest is unreadable or an episode command is invalid (one line)."""


@dataclass
class EpisodeRecord:
    index: int
    bag: str                     # folder name relative to the bag_dir
    kind: str = "teleop"
    task: str = ""
    instruction: str = ""
    status: str = "recording"    # one of STATUSES
    outcome: str = ""
    value: float | None = None   # None = unlabelled (NaN on the wire)
    start_ns: int = 0
    stop_ns: int = 0
    stop_reason: str = ""
    message_counts: dict[str, int] = field(default_factory=dict)
    robot: dict = field(default_factory=dict)   # robot config name and gripper constants

    @property
    def labelled(self) -> bool:
        return self.outcome in ("success", "failure")


def normalise_label(outcome: str, value: float) -> tuple[str, float | None]:
    """Outcome and value target: success -> value in (0, 1] (default 1), failure -> 0, '' -> unlabelled."""
    if outcome not in OUTCOMES:
        raise ManifestError(f"outcome must be success, failure or empty, got {outcome!r}")
    if outcome == "success":
        v = float(value)
        return outcome, v if math.isfinite(v) and 0.0 < v <= 1.0 else 1.0
    if outcome == "failure":
        return outcome, 0.0
    return "", None


class Manifest:
    """All episodes recorded into one bag_dir."""

    def __init__(self, bag_dir: str | Path):
        self.dir = Path(bag_dir)
        self.path = self.dir / MANIFEST_NAME
        self.episodes: list[EpisodeRecord] = []
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") != FORMAT:
                raise ManifestError(f"{self.path}: unknown manifest format {data.get('format')!r} (expected {FORMAT})")
            self.episodes = [EpisodeRecord(**e) for e in data["episodes"]]
        except ManifestError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ManifestError(f"{self.path}: unreadable episode manifest: {exc}") from None

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "episodes": [asdict(e) for e in self.episodes]}, indent=1))
        os.replace(tmp, self.path)

    def next_index(self) -> int:
        """One past the highest index used in this folder (manifest or bag folders), so sessions resume."""
        used = [e.index for e in self.episodes]
        for p in self.dir.glob("episode_*"):
            tail = p.name.split("_", 1)[1].split(".")[0]
            if tail.isdigit():
                used.append(int(tail))
        return max(used, default=-1) + 1

    def get(self, index: int) -> EpisodeRecord:
        for e in self.episodes:
            if e.index == index:
                return e
        raise ManifestError(f"{self.path}: no episode {index}")

    def by_bag(self, bag_name: str) -> EpisodeRecord | None:
        return next((e for e in self.episodes if e.bag == bag_name), None)

    def add(self, record: EpisodeRecord) -> None:
        self.episodes.append(record)
        self.save()

    def last_finished(self) -> EpisodeRecord | None:
        """The episode a label or discard after the fact applies to (an interrupted one counts: it is on disk)."""
        done = [e for e in self.episodes if e.status in ("complete", "interrupted")]
        return done[-1] if done else None


def find_manifest_record(bag_path: str | Path) -> EpisodeRecord | None:
    """The manifest entry of a bag folder, if the folder sits in a recorder bag_dir."""
    p = Path(bag_path)
    if not (p.parent / MANIFEST_NAME).exists():
        return None
    return Manifest(p.parent).by_bag(p.name)


class EpisodeLock:
    """``<bag_dir>/<bag>.lock``, flock-ed by the recorder for as long as the episode records.

    Why flock and not a PID file: the kernel drops the lock when its process dies, however it dies
    (SIGKILL, OOM killer, power loss), and a reused PID cannot make a dead recorder look alive. The
    file holds ``pid@host`` for people; only the lock decides. A lock that can be taken means that
    whoever recorded the episode is gone.
    """

    def __init__(self, bag_dir: str | Path, bag: str):
        self.path = Path(bag_dir) / f"{bag}.lock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False while another live process (or open file) holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode())
        self._fd = fd
        return True

    def held(self) -> bool:
        """Whether a live process holds the lock now: a look only, nothing is created or written."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # drops the shared lock taken to look

    def holder(self) -> str:
        """``pid@host`` of the process that wrote the lock file last ('' if unreadable)."""
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def release(self) -> None:
        """Delete the file, then drop the lock. Callers change the manifest before this, so a process
        that takes the lock next (on this file or a new one) reads the final status."""
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
