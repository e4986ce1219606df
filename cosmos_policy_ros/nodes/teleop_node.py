"""Scripted teleoperator: plays the leader arms from the sim's demonstrator and drives the followers.

First, as Interbotix's teleop opening ceremony does, the follower drivers are set up for radian
gripper commands (robot/backends/xs_driver_client.py: gripper reboot, current_based_position).
Per episode: reset the sim (topics.SIM_RESET, task + seed), plan on a private world, squeeze both
leader grippers (the recorder's auto-record starts the episode; or call the recorder's episode
service, start), stream leader joint states and follower commands at 50 Hz, then stop the episode
labelled from topics.SIM_STATUS (success when the task's final stage was reached).
Logic: cosmos_policy_ros.data.scripted_operator. Parameters episodes, seed, steps and start_mode
override config/teleop.yaml when set.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Literal

from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros import topics
from cosmos_policy_ros.data.recording_config import RecordSettings
from cosmos_policy_ros.data.scripted_operator import ScriptedOperator
from cosmos_policy_ros.msg import EpisodeEvent
from cosmos_policy_ros.nodes.common import config_overrides, declare, field_types, run_node
from cosmos_policy_ros.robot.aloha import AlohaRobot
from cosmos_policy_ros.robot.backends.xs_driver_client import XsDriverClient
from cosmos_policy_ros.robot.executor_config import InterbotixConfig
from cosmos_policy_ros.srv import EpisodeCommand, ResetEpisode


@dataclass
class TeleopConfig:
    episodes: int = 1
    seed: int = 0
    steps: int = 0
    rate_hz: float = 50.0
    start_mode: Literal["grippers", "service"] = "grippers"
    squeeze_s: float = 0.6
    start_timeout_s: float = 5.0
    pause_s: float = 1.0
    settle_s: float = 0.3

    def validate(self) -> None:
        if self.episodes < 0 or self.steps < 0 or self.seed < 0:
            raise cfg.ConfigError("episodes, steps and seed must be >= 0")
        if self.rate_hz <= 0 or self.squeeze_s < 0 or self.start_timeout_s <= 0:
            raise cfg.ConfigError("rate_hz and start_timeout_s must be positive, squeeze_s >= 0")


class TeleopNode(Node):
    def __init__(self):
        super().__init__("scripted_teleop")
        overrides = config_overrides(self, field_types(TeleopConfig, "episodes", "seed", "steps", "start_mode"))
        self.cfg = cfg.load(TeleopConfig, declare(self, "config", "teleop.yaml"), overrides)
        self.robot = AlohaRobot.from_yaml(declare(self, "robot_config", "robot/aloha_interbotix.yaml"))
        self.task = declare(self, "task", "transfer_cube")
        self.operator = ScriptedOperator(self.robot, self.task)
        arms = self.robot.config.arms
        self.leader_pubs = {s: self.create_publisher(JointState, self.robot.leader_topic(s, "joint_states"), 100)
                            for s in arms}
        self.group_pubs = {s: self.create_publisher(JointGroupCommand, self.robot.follower_topic(s, "joint_group"), 100)
                           for s in arms}
        self.single_pubs = {s: self.create_publisher(JointSingleCommand, self.robot.follower_topic(s, "joint_single"),
                                                     100) for s in arms}
        self.reset_client = self.create_client(ResetEpisode, topics.SIM_RESET)
        self.driver = XsDriverClient(self, self.robot, InterbotixConfig())
        recorder = RecordSettings()  # the recorder's service and marker topic, as it names them by default
        self.episode_client = self.create_client(EpisodeCommand, recorder.service)
        self.sim_status: dict = {}
        self.create_subscription(String, topics.SIM_STATUS, self._on_status,
                                 QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self._started_index: int | None = None
        self.create_subscription(EpisodeEvent, recorder.event_topic, self._on_event, 10)

        self.state = "wait"
        self.episode = 0
        self.plan = None
        self.k = 0
        self.t_state = time.monotonic()
        self._future = None
        self.done_episodes: list[dict] = []
        self.create_timer(1.0 / self.cfg.rate_hz, self._tick)
        self.get_logger().info(f"scripted teleop: task {self.task}, {self.cfg.episodes or 'unlimited'} episode(s), "
                               f"start by {self.cfg.start_mode}")

    # ---- inputs -------------------------------------------------------------------------------
    def _on_status(self, msg) -> None:
        try:
            self.sim_status = json.loads(msg.data)
        except ValueError:
            pass

    def _on_event(self, msg) -> None:
        if msg.event == "start":
            self._started_index = int(msg.episode_index)

    # ---- output -------------------------------------------------------------------------------
    def _publish(self, action14, squeeze: bool = False) -> None:
        stamp = self.get_clock().now().to_msg()
        for side in self.robot.config.arms:
            pos = self.operator.leader_positions(action14, side, squeeze)
            js = JointState(name=self.robot.driver_joint_names, position=pos.tolist(),
                            velocity=[0.0] * 9, effort=[0.0] * 9)
            js.header.stamp = stamp
            self.leader_pubs[side].publish(js)
            arm, grip = self.operator.follower_command(pos)
            self.group_pubs[side].publish(JointGroupCommand(name=self.robot.config.arm_group_name, cmd=arm))
            self.single_pubs[side].publish(JointSingleCommand(name=self.robot.config.gripper_joint, cmd=grip))

    def _goto(self, state: str) -> None:
        self.state, self.t_state = state, time.monotonic()

    def _elapsed(self) -> float:
        return time.monotonic() - self.t_state

    def _episode_call(self, command: str, **kw):
        return self.episode_client.call_async(EpisodeCommand.Request(command=command, **kw))

    # ---- state machine (50 Hz) ------------------------------------------------------------------
    def _tick(self) -> None:
        c = self.cfg
        if self.state == "wait":
            if (self.reset_client.service_is_ready() and self.episode_client.service_is_ready()
                    and self.driver.driver_ready()):
                for line in self.driver.prepare(starting=True):
                    self.get_logger().warning(line)
                self.get_logger().info("follower drivers set up: gripper current_based_position")
                self._goto("reset")
        elif self.state == "reset":
            seed = c.seed + self.episode
            self._future = self.reset_client.call_async(ResetEpisode.Request(task=self.task, seed=seed))
            self._goto("resetting")
        elif self.state == "resetting":
            if self._future.done():
                res = self._future.result()
                if not res.success:
                    raise ValueError(f"sim reset failed: {res.message}")
                seed = c.seed + self.episode
                t = time.monotonic()
                self.plan = self.operator.plan(seed, c.steps or None)
                self.get_logger().info(f"episode {self.episode}: seed {seed}, planned {len(self.plan.actions)} steps "
                                       f"in {time.monotonic() - t:.1f} s; squeezing leader grippers")
                self._started_index = None
                self._goto("squeeze")
        elif self.state == "squeeze":
            self._publish(self.plan.actions[0], squeeze=True)
            if c.start_mode == "service" and self._elapsed() >= c.squeeze_s and self._future is not None:
                self._future = None
                self._episode_call("start", kind="teleop", task=self.task)
            if self._started_index is not None and self._elapsed() >= c.squeeze_s:
                self.k = 0
                self._goto("run")
            elif c.start_mode == "grippers" and self._elapsed() > c.squeeze_s + c.start_timeout_s:
                self.get_logger().warning("no start marker after squeezing the grippers (recorder auto-record off?); "
                                          "calling the start service")
                self._episode_call("start", kind="teleop", task=self.task)
                self.t_state = time.monotonic() - c.squeeze_s  # wait for the marker once more
        elif self.state == "run":
            self._publish(self.plan.actions[self.k])
            self.k += 1
            if self.k >= len(self.plan.actions):
                self._goto("settle")
        elif self.state == "settle":
            self._publish(self.plan.actions[-1])
            if self._elapsed() >= c.settle_s:
                success = bool(self.sim_status.get("success", False))
                self._future = self._episode_call("stop", outcome="success" if success else "failure", value=math.nan)
                self.done_episodes.append({"episode": self.episode, "success": success})
                self.get_logger().info(f"episode {self.episode} finished: {'success' if success else 'failure'} "
                                       f"(sim stage {self.sim_status.get('stage')})")
                self.episode += 1
                self._goto("pause")
        elif self.state == "pause":
            self._publish(self.plan.actions[-1])
            if self._elapsed() >= c.pause_s:
                if c.episodes and self.episode >= c.episodes:
                    self.get_logger().info(f"done: {len(self.done_episodes)} episode(s) recorded "
                                           f"({sum(e['success'] for e in self.done_episodes)} successful)")
                    self._goto("done")
                else:
                    self._goto("reset")
        elif self.state == "done":
            self._publish(self.plan.actions[-1])

    def close(self) -> None:
        self.operator.close()
        self.driver.close()


def main(args: list[str] | None = None) -> int:
    return run_node(TeleopNode, args, name="scripted_teleop")


if __name__ == "__main__":
    sys.exit(main())
