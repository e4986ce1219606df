"""One typestore for bag I/O: ROS 2 Kilted standard types plus this package's and Interbotix's.

Custom types are registered from their .msg text (the same files rosidl builds from), so the type
hashes (RIHS01) written into bags equal those of the ROS build and ``ros2 bag play`` accepts them.
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from cosmos_policy_ros.config import ConfigError, share_dir

# Types this package records that are not in the standard store: package -> message names.
CUSTOM_MESSAGES: dict[str, tuple[str, ...]] = {
    # ActionChunk before PlanResult (PlanResult nests it).
    "cosmos_policy_ros": ("ActionChunk", "PlanResult", "ExecutorStatus", "EpisodeEvent"),
    "interbotix_xs_msgs": ("JointGroupCommand", "JointSingleCommand"),
}


def _prefixes() -> list[Path]:
    """Install prefixes to search for share/<pkg>/msg (AMENT_PREFIX_PATH on a robot, the venv in dev)."""
    out = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    out.append(Path(sys.prefix))
    return out


def find_msg_file(package: str, name: str) -> Path:
    """The .msg file of ``package/msg/name`` (source checkout first for this package, then installs)."""
    candidates = []
    if package == "cosmos_policy_ros":
        try:
            candidates.append(share_dir() / "msg" / f"{name}.msg")
        except ConfigError:
            pass
    candidates += [p / "share" / package / "msg" / f"{name}.msg" for p in _prefixes()]
    if package == "interbotix_xs_msgs":  # the dev stand-in of the checkout, never used on a robot
        candidates.append(Path(__file__).resolve().parents[2] / "dev" / package / "msg" / f"{name}.msg")
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"message definition {package}/msg/{name} not found "
                      f"(looked in {', '.join(map(str, candidates))})")


@functools.lru_cache(maxsize=1)
def typestore():
    """Kilted typestore with the custom types registered (cached: building it costs ~50 ms)."""
    ts = get_typestore(Stores.ROS2_KILTED)
    for package, names in CUSTOM_MESSAGES.items():
        for name in names:
            try:
                text = find_msg_file(package, name).read_text()
            except ConfigError:
                if package == "cosmos_policy_ros":
                    raise
                continue  # Interbotix types absent: their topics are simply not recordable
            ts.register(get_types_from_msg(text, f"{package}/msg/{name}"))
    return ts


def has_type(msgtype: str) -> bool:
    return msgtype in typestore().fielddefs


def register_from_bag(ts, connections) -> None:
    """Register types a bag brings along (its stored definitions) that the store lacks."""
    for c in connections:
        if c.msgtype in ts.fielddefs or not c.msgdef or not c.msgdef.data:
            continue
        try:
            ts.register(_types_from_definition(c.msgtype, c.msgdef.data))
        except Exception:  # noqa: BLE001 - an undecodable foreign type stays unread, not fatal
            continue


def _types_from_definition(msgtype: str, text: str) -> dict:
    """Types from a rosbag2/MCAP ros2msg definition (main type, then '===' separated dependencies)."""
    types = {}
    parts = text.split("=" * 80 + "\n")
    types.update(get_types_from_msg(parts[0], msgtype))
    for part in parts[1:]:
        head, _, body = part.partition("\n")
        if head.startswith("MSG: "):
            name = head[5:].strip()
            if "/msg/" not in name:
                pkg, _, n = name.partition("/")
                name = f"{pkg}/msg/{n}"
            types.update(get_types_from_msg(body, name))
    return types
