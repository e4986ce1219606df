"""``cosmos-aloha``: the package's own front end where the ROS 2 CLI is not installed.

    cosmos-aloha up direct [--sim|--real] [name:=value ...]   start a launch mode's node graph
    cosmos-aloha graph planning [name:=value ...]            show what `up` would start
    cosmos-aloha <tool> ...                                  other tools (see --help)

`up` starts exactly the nodes `ros2 launch cosmos_policy_ros aloha_<mode>.launch.py` starts
(both read config/graph.yaml), forwards Ctrl-C/SIGTERM and exits non-zero if a node dies.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import shlex
import shutil
import sys

from cosmos_policy_ros import config as cfg
from cosmos_policy_ros import graph as graph_mod
from cosmos_policy_ros.driver_check import refuse_sim_beside_driver
from cosmos_policy_ros.errors import EXPECTED_ERRORS, one_line, run_main
from cosmos_policy_ros.ros_env import local_ros_env
from cosmos_policy_ros.supervisor import Supervisor, python_module_argv

# Further tools, loaded only when called: name -> (module, help).
TOOLS: dict[str, tuple[str, str]] = {
    "demo": ("cosmos_policy_ros.demo", "run the simulated ALOHA demo and report what it measured"),
    "gen-demos": ("cosmos_policy_ros.train.demos", "write scripted sim demonstrations as ALOHA HDF5 episodes"),
    "train": ("cosmos_policy_ros.train.cli",
              "train / resume / export a Cosmos Policy checkpoint (policy, world, value)"),
    "t5-embed": ("cosmos_policy_ros.train.t5_embed",
                 "T5 encoder embeddings of new instructions, added to an upstream-format pickle"),
    "eval": ("cosmos_policy_ros.evaluation.cli",
             "seeded in-process sim evaluation: success rate + Wilson CI + PNG strips"),
    "convert": ("cosmos_policy_ros.data.convert_cmd", "episode bags -> ALOHA HDF5 episodes + dataset statistics"),
    "bag-info": ("cosmos_policy_ros.data.bag_info_cmd", "topics, counts and labels of bags; recover killed recordings"),
    "episodes": ("cosmos_policy_ros.data.episodes_cmd", "list, label and plot recorded or converted episodes"),
}


def _parse_assignments(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if ":=" not in item:
            raise cfg.ConfigError(f"expected name:=value, got {item!r}")
        k, v = item.split(":=", 1)
        out[k] = v
    return out


def _resolve(ns) -> tuple[list[graph_mod.NodeSpec], dict[str, str]]:
    given = _parse_assignments(ns.assignments)
    if getattr(ns, "sim", False):
        given["use_sim"] = "true"
    if getattr(ns, "real", False):
        given["use_sim"] = "false"
    graph = graph_mod.load_graph(ns.graph)
    args = graph_mod.resolve_mode_arguments(graph, ns.mode, given)
    return graph_mod.resolve(ns.mode, args, graph), args


def _requested_use_sim(ns) -> str:
    """use_sim as the person gave it (auto unless --sim/--real or use_sim:= said otherwise), for messages."""
    given = _parse_assignments(ns.assignments)
    if ns.sim or ns.real:
        return "true" if ns.sim else "false"
    return given.get("use_sim", "auto").strip().lower()


def cmd_graph(ns) -> int:
    specs, args = _resolve(ns)
    print(f"mode {ns.mode}: use_sim={args['use_sim']}")
    for s in specs:
        print(f"  {s.key:10s} {s.name:20s} ros2 run {s.package} {s.executable} "
              f"{shlex.join([*s.arguments, *s.ros_args()])}")
    return 0


def cmd_up(ns) -> int:
    specs, args = _resolve(ns)
    missing = [s for s in specs if s.module and importlib.util.find_spec(s.module) is None]
    if missing:
        s = missing[0]
        print(f"cosmos-aloha: node '{s.key}' needs {s.module}, which this version does not provide yet",
              file=sys.stderr)
        return 2
    sim = args["use_sim"] == "true"
    # The simulated graph stays on this machine; a real robot keeps the lab's environment.
    env = local_ros_env(domain_id=ns.domain_id, force=sim)
    if ns.domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(ns.domain_id)
    # never a sim beside a live robot driver (a short discovery in the graph's own domain)
    refuse_sim_beside_driver(specs, args, _requested_use_sim(ns), env)
    print(f"cosmos-aloha: mode {ns.mode} ({'simulated ALOHA' if sim else 'real robot'}), "
          f"ROS_DOMAIN_ID={env.get('ROS_DOMAIN_ID', '0')}, "
          f"discovery={env.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'default')}",
          flush=True)
    sup = Supervisor([(s.key, _argv(s)) for s in _installed(specs)], env=env, grace_s=ns.grace)
    result = sup.run(timeout=ns.duration)
    return result.exit_code


def _installed(specs: list[graph_mod.NodeSpec]) -> list[graph_mod.NodeSpec]:
    """The nodes that can start here: another package's executable (rviz2) that is not on PATH is left out with
    one line saying so, and the rest of the graph starts."""
    kept = []
    for s in specs:
        if s.module or shutil.which(s.executable):
            kept.append(s)
        else:
            print(f"cosmos-aloha: {s.executable} is not installed (package {s.package}, not on PATH); "
                  f"starting the graph without node '{s.key}'", file=sys.stderr, flush=True)
    return kept


def _argv(s: graph_mod.NodeSpec) -> list[str]:
    """A node's command line: ours through python -m, another package's executable from PATH."""
    if s.module:
        return python_module_argv(s.module, [*s.arguments, *s.ros_args()])
    return [shutil.which(s.executable) or s.executable, *s.arguments, *s.ros_args()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cosmos-aloha", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, func, help_ in (("up", cmd_up, "start a mode's node graph"),
                              ("graph", cmd_graph, "print a mode's resolved node graph")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("mode", help="direct | planning | sim | record (config/graph.yaml)")
        sp.add_argument("assignments", nargs="*", metavar="name:=value", help="launch arguments")
        which = sp.add_mutually_exclusive_group()
        which.add_argument("--sim", action="store_true", help="use the simulated ALOHA (use_sim:=true)")
        which.add_argument("--real", action="store_true", help="use the real robot (use_sim:=false)")
        sp.add_argument("--graph", default=graph_mod.GRAPH_CONFIG, help="graph YAML (default: config/graph.yaml)")
        sp.set_defaults(func=func)
        if name == "up":
            sp.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for the graph")
            sp.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
            sp.add_argument("--grace", type=float, default=5.0, help="seconds nodes get to exit after Ctrl-C")
    for name, (module, help_) in TOOLS.items():
        sp = sub.add_parser(name, help=help_, add_help=False)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
        sp.set_defaults(func=lambda ns, module=module: importlib.import_module(module).main(ns.rest))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOLS:  # tools parse their own arguments (options first included)
        # a project or OS error a tool does not report itself: one line naming the file, exit 2
        tool = importlib.import_module(TOOLS[argv[0]][0])
        return run_main(tool.main, argv[1:], prog=f"cosmos-aloha {argv[0]}", code=2)
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    if extra:  # name:=value after an option lands here (argparse does not intermix positionals)
        if not hasattr(ns, "assignments") or any(":=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        ns.assignments = list(ns.assignments) + extra
    try:
        return int(ns.func(ns) or 0)
    except EXPECTED_ERRORS as exc:
        print(f"cosmos-aloha: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
