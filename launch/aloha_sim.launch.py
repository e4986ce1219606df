"""ros2 launch cosmos_policy_ros aloha_sim.launch.py [use_sim:=auto task:=... ...]

The nodes and arguments are those of mode 'sim' in config/graph.yaml
(same graph as `cosmos-aloha up sim`; list them with `cosmos-aloha graph sim`).
"""
from cosmos_policy_ros.launch_support import generate_mode_launch_description


def generate_launch_description():
    return generate_mode_launch_description("sim")
