"""The package's own topic and service names, stated once.

Why: the policy/planner -> executor contract was spelled in four places and had started to drift.
Nodes create their publishers, subscriptions and services with these names; a lab that wants other
names remaps them at launch (`remappings:` of a node in config/graph.yaml, or `--ros-args -r`), as
ROS 2 intends (ros2/demos `talker_qos.py` fixes 'chatter' in code). The robot's own topics (joint
states, commands, cameras) are not here: they come from config/robot/*.yaml and config/cameras.yaml,
because they differ between robots.
"""
from __future__ import annotations

from pathlib import Path

from cosmos_policy_ros import config as cfg

# policy / planner -> executor
ACTION_CHUNK = "/cosmos/action_chunk"          # cosmos_policy_ros/ActionChunk
CHUNK_REQUEST = "/cosmos/chunk_request"        # std_msgs/Header: the executor wants the next chunk now
PLAN_RESULT = "/cosmos/plan_result"            # cosmos_policy_ros/PlanResult (planner)
PLAN_SCORES = "/cosmos/plan/scores"            # std_msgs/Float32MultiArray: candidate scores (plot-friendly)
PLAN_CHOSEN_TRAJECTORY = "/cosmos/plan/chosen_trajectory"  # trajectory_msgs/JointTrajectory (planner)
POLICY_VALUE = "/cosmos/policy/value"          # std_msgs/Float32 per chunk (plot-friendly)
POLICY_STATUS = "/cosmos/policy/status"        # std_msgs/String: "ok ..." or why nothing was published

# executor
ESTOP = "/cosmos/estop"                        # std_msgs/Bool: true latches ESTOP, false releases to IDLE
EXECUTOR_STATUS = "/cosmos/executor/status"    # cosmos_policy_ros/ExecutorStatus
EXECUTOR_SERVICES = "/cosmos/executor"         # std_srvs/Trigger: <prefix>/{start,stop,home,sleep}

# safety markers (rviz:=true)
SAFETY_MARKERS = "/cosmos/safety/markers"      # visualization_msgs/MarkerArray: guard capsules, closest pair, paths

# simulated ALOHA
SIM_STATUS = "/sim/status"                     # std_msgs/String (JSON): seed, step, time, stage, success
SIM_RESET = "/sim/reset"                       # cosmos_policy_ros/srv/ResetEpisode
# sensor_msgs/Image rgb8, for people (the demo's GIFs), not the policy: the viewer view (sim/viewer.py), when
# enabled; header.stamp = simulated time since the episode's reset, frame_id "viewer"
SIM_VIEWER = "/sim/viewer/image"


def refuse_topics_section(path: str | Path) -> None:
    """A node config file that still names topics (a ``topics:`` section) fails with one line saying where they went."""
    p = cfg.config_path(path)
    if "topics" in cfg.read_yaml(p):
        raise cfg.ConfigError(
            f"{p}: topics: topic names are no longer set in config files; they are fixed in "
            "cosmos_policy_ros/topics.py and renamed by remapping: delete this section and add the node's "
            "`remappings:` in config/graph.yaml (or --ros-args -r /cosmos/action_chunk:=/lab/chunk)")
