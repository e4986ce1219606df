"""Turn a mode of config/graph.yaml into a launch description for ``ros2 launch``.

launch / launch_ros are imported lazily: they exist on a ROS 2 install, not in the dev venv.
Nodes are resolved inside an OpaqueFunction so ``use_sim:=auto`` and every ``name:=value`` given
on the command line take effect at launch time, through the same resolve() the CLI uses: launch
arguments arrive as text and are checked against their declared types there, so a wrong value stops
``ros2 launch`` with the CLI's one line (``launch argument sim_camera_rate_hz: expected a number (float),
got 'abc'``) before any node starts. The same function refuses a real-robot graph without a policy checkpoint
and a simulated one beside a live robot driver (cosmos_policy_ros/driver_check.py), each in one line.
"""
from __future__ import annotations

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.driver_check import refuse_sim_beside_driver
from cosmos_policy_ros.graph import load_graph, resolve, resolve_mode_arguments


def generate_mode_launch_description(mode: str):
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    from launch import LaunchDescription

    graph = load_graph()
    if mode not in graph.modes:
        raise ConfigError(f"unknown mode {mode!r} (modes: {', '.join(graph.modes)})")
    declared = [
        DeclareLaunchArgument(name, default_value=spec.default_text, description=f"{spec.help} [{spec.describe()}]")
        for name, spec in graph.arguments.items()
    ]

    def make_nodes(context, *args, **kwargs):
        from launch_ros.actions import Node

        given = {k: context.launch_configurations[k] for k in graph.arguments if k in context.launch_configurations}
        args = resolve_mode_arguments(graph, mode, given)
        specs = resolve(mode, args, graph)
        refuse_sim_beside_driver(specs, args, given.get("use_sim", "auto").strip().lower())
        return [
            Node(
                package=spec.package,
                executable=spec.executable,
                name=spec.name,
                arguments=list(spec.arguments),
                parameters=[dict(spec.parameters)],
                remappings=list(spec.remappings),
                output="screen",
                emulate_tty=True,
            )
            for spec in specs
        ]

    return LaunchDescription([*declared, OpaqueFunction(function=make_nodes)])
