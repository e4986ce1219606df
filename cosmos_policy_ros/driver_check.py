"""Is a real Interbotix driver already on this ROS graph? Asked before a launch graph starts the simulated ALOHA.

Why: the sim publishes joint states and takes commands on the real robot's topic names
(/follower_left/joint_states, .../commands/joint_group). ``use_sim:=auto`` means "sim unless
/dev/ttyDXL_follower_* exists", and a GPU workstation beside the robot PC has no such device: without this
check it started a sim whose joint states mixed with the real arm's, in the robot's domain. So before a graph
with the sim node starts, a short discovery (DISCOVERY_S) looks for a node named ``xs_sdk`` or a publisher of
a follower joint_states topic other than our own sim node, and the graph refuses to start with one line.

Only graphs that would start the sim ask (a real-robot graph wants the driver there). The sim demo and the
tests run in a private ROS_DOMAIN_ID on loopback, where no real driver can be seen.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.graph import NodeSpec
from cosmos_policy_ros.robot.aloha import DEFAULT_ROBOT_CONFIG, AlohaRobot

# The Interbotix driver's node name (one per arm, in the arm's namespace: /follower_left/xs_sdk).
DRIVER_NODE = "xs_sdk"
# s: how long to look before deciding there is no driver (the look ends as soon as one is seen). Measured here
# (Fast DDS, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, 22 fresh processes): an existing publisher showed up after
# 0.05-2.97 s, often only with the other participant's periodic announcement (every 3 s); 1.5 s missed it in
# about half the tries. Only a graph that starts the sim pays this, once.
DISCOVERY_S = 3.5
SIM_NODE_KEY = "sim"
UNKNOWN_NAME = "_NODE_NAME_UNKNOWN_"   # what rmw reports for an endpoint whose participant is not yet discovered


@dataclass(frozen=True)
class DriverSighting:
    node: str    # fully qualified node name (/follower_left/xs_sdk)
    topic: str   # the follower joint_states topic it publishes; "" when found by its name alone

    def describe(self) -> str:
        return f"node {self.node} publishes {self.topic}" if self.topic else f"node {self.node} is running"


def find_driver(topics: Sequence[str], ours: Sequence[str], wait_s: float = DISCOVERY_S,
                env: dict[str, str] | None = None) -> DriverSighting | None:
    """The first node named DRIVER_NODE or publishing one of ``topics`` whose name is not in ``ours``, seen
    within ``wait_s``; None if there is none. ``env``: the environment the graph will run in (domain, range)."""
    import rclpy  # heavy, and only graphs that start the sim ask
    from rclpy.context import Context

    ctx = Context()
    with _environ(env):
        rclpy.init(context=ctx)
    try:
        node = rclpy.create_node("cosmos_driver_check", context=ctx, enable_rosout=False,
                                 start_parameter_services=False)
        deadline = time.monotonic() + wait_s
        while True:
            last = time.monotonic() >= deadline
            found = _look(node, topics, set(ours), last)
            if found or last:
                return found
            time.sleep(0.05)
    finally:
        rclpy.shutdown(context=ctx)


def _look(node, topics: Sequence[str], ours: set[str], last: bool) -> DriverSighting | None:
    """A driver seen now. A publisher whose node name discovery has not delivered yet counts only on the
    ``last`` look (safety first: an unnamed publisher on the robot's topic is not known to be ours)."""
    for topic in topics:
        for info in node.get_publishers_info_by_topic(topic):
            if info.node_name == UNKNOWN_NAME and not last:
                continue
            name = _qualified(info.node_namespace, info.node_name)
            if info.node_name not in ours and name not in ours:
                return DriverSighting(name, topic)
    for name, namespace in node.get_node_names_and_namespaces():
        if name == DRIVER_NODE:
            return DriverSighting(_qualified(namespace, name), "")
    return None


def _qualified(namespace: str, name: str) -> str:
    return f"{namespace.rstrip('/')}/{name}"


@contextlib.contextmanager
def _environ(env: dict[str, str] | None) -> Iterator[None]:
    """os.environ is ``env`` for the block (rcl reads ROS_DOMAIN_ID and the discovery range at init)."""
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def refuse_sim_beside_driver(specs: Sequence[NodeSpec], args: dict[str, str], requested_use_sim: str,
                             env: dict[str, str] | None = None, wait_s: float | None = None) -> None:
    """ConfigError (one line) when the graph ``specs`` would start the sim while a real driver is on the graph.

    requested_use_sim: use_sim as given (auto / true), for the message; ``args``: the resolved arguments.
    """
    sim = [s for s in specs if s.key == SIM_NODE_KEY]
    if args.get("use_sim") != "true" or not sim:
        return
    robot = AlohaRobot.from_yaml(args.get("robot_config") or DEFAULT_ROBOT_CONFIG)
    topics = [robot.follower_topic(side, "joint_states") for side in robot.config.arms]
    found = find_driver(topics, [s.name for s in sim], DISCOVERY_S if wait_s is None else wait_s, env)
    if found is None:
        return
    domain = (env if env is not None else os.environ).get("ROS_DOMAIN_ID", "0")
    if requested_use_sim == "auto":
        raise ConfigError(f"use_sim:=auto: a real robot driver is on this ROS graph ({found.describe()}, "
                          f"ROS_DOMAIN_ID={domain}): not starting the simulated ALOHA on its topics; give "
                          f"use_sim:=false (--real) to drive it, or run the sim in another ROS_DOMAIN_ID")
    raise ConfigError(f"use_sim:=true but a real robot driver is on this ROS graph ({found.describe()}, "
                      f"ROS_DOMAIN_ID={domain}): the sim would publish on the robot's topics; run it in another "
                      f"ROS_DOMAIN_ID (cosmos-aloha up --domain-id N, or export ROS_DOMAIN_ID=N)")
