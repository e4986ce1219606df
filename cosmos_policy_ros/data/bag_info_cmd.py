"""``cosmos-aloha bag-info``: what a bag holds (topics, counts, labels), recovery, the ros2 equivalent.

    cosmos-aloha bag-info bags/episode_0003          # like `ros2 bag info`, plus episode labels
    cosmos-aloha bag-info --recover bags/episode_0004   # a bag whose recorder was killed (convert does it too)
    cosmos-aloha bag-info --ros2-command             # the `ros2 bag record -s mcap` line for a robot PC
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cosmos_policy_ros.data.bag_reader import open_bag
from cosmos_policy_ros.data.report import table
from cosmos_policy_ros.data.session import repair_bag
from cosmos_policy_ros.errors import EXPECTED_ERRORS, one_line, run_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cosmos-aloha bag-info", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bags", nargs="*")
    p.add_argument("--recover", action="store_true",
                   help="rewrite incomplete bags as complete ones (the manifest then says interrupted)")
    p.add_argument("--ros2-command", action="store_true", help="print the equivalent ros2 bag record command")
    p.add_argument("--config", default="recorder.yaml")
    p.add_argument("--robot-config", default="robot/aloha_interbotix.yaml")
    ns = p.parse_args(argv)
    try:
        if ns.ros2_command:
            from cosmos_policy_ros.data.recording_config import (
                load_recorder_config,
                recorded_topics,
                ros2_bag_record_command,
            )
            from cosmos_policy_ros.perception.cameras import load_cameras
            from cosmos_policy_ros.robot.aloha import AlohaRobot

            topics = recorded_topics(AlohaRobot.from_yaml(ns.robot_config), load_cameras(),
                                     load_recorder_config(ns.config).record)
            print(ros2_bag_record_command(topics))
        for path in ns.bags:
            folder = Path(path).parent if Path(path).is_file() else Path(path)  # metadata.yaml or .mcap given
            if ns.recover and folder.is_dir() and repair_bag(folder) is None:
                print(f"{path}: nothing to repair (already complete)")
            bag = open_bag(path, allow_incomplete=True)
            span = (bag.end_ns - bag.start_ns) / 1e9
            print(f"{bag.path}  storage {bag.storage}  {'complete' if bag.complete else 'INCOMPLETE'}  "
                  f"{bag.message_count} messages  {span:.2f} s")
            labels = {k: v for k, v in bag.custom_data.items() if k != "robot"}
            if labels:
                print("  " + "  ".join(f"{k}={v}" for k, v in labels.items()))
            rows = [{"topic": t, "type": i.msgtype, "count": i.count,
                     "rate_hz": i.count / span if span > 0 else float("nan")} for t, i in sorted(bag.topics.items())]
            print(table(rows, ["topic", "type", "count", "rate_hz"]))
    except EXPECTED_ERRORS as exc:  # BagError, ManifestError, ConfigError, OSError
        print(f"cosmos-aloha bag-info: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="cosmos-aloha bag-info"))
