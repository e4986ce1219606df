"""ros2 launch cosmos_policy_ros aloha_direct.launch.py [use_sim:=auto task:=... ...]

The nodes and arguments are those of mode 'direct' in config/graph.yaml
(same graph as `cosmos-aloha up direct`; list them with `cosmos-aloha graph direct`).
"""
from cosmos_policy_ros.launch_support import generate_mode_launch_description


def generate_launch_description():
    return generate_mode_launch_description("direct")
