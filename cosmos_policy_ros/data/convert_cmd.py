"""``cosmos-aloha convert``: episode bags -> ALOHA HDF5 episodes + dataset_statistics.json.

    cosmos-aloha convert bags/ -o data/my_task            # every episode bag of a recorder bag_dir
    cosmos-aloha convert bags/episode_0003 -o data/x --plot

A bag whose recorder was killed (no MCAP summary, episode still "recording") is repaired first, with
one line saying so, and converts as an interrupted episode labelled failure; a bag still being
recorded is refused. All bags are then validated; a truncated or foreign bag stops the run with one
error line and nothing converted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cosmos_policy_ros.data.manifest import find_manifest_record
from cosmos_policy_ros.data.session import repair_bag
from cosmos_policy_ros.errors import EXPECTED_ERRORS, one_line, run_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cosmos-aloha convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bags", nargs="+", help="bag folders or recorder bag_dirs")
    p.add_argument("-o", "--output", required=True, help="output folder for episode_<i>.hdf5")
    p.add_argument("--config", default="recorder.yaml", help="recorder/converter YAML (section convert)")
    p.add_argument("--robot-config", default="robot/aloha_interbotix.yaml")
    p.add_argument("--camera-config", default="cameras.yaml")
    p.add_argument("--cameras", default="", help="comma-separated cameras (default: convert.cameras / all in the bag)")
    p.add_argument("--action-source", choices=["auto", "leader", "commands"], default=None)
    p.add_argument("--max-state-age", type=float, default=None,
                   help="seconds a joint stream may go silent (default: config)")
    p.add_argument("--max-image-age", type=float, default=None, help="seconds a camera may go silent (default: config)")
    p.add_argument("--plot", action="store_true", help="also write episode_<i>.png (joints per arm)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    from cosmos_policy_ros.data.convert import EpisodeSpec, convert_bags, find_bags  # h5py, numpy
    from cosmos_policy_ros.data.recording_config import load_recorder_config
    from cosmos_policy_ros.data.report import SUMMARY_COLUMNS, hdf5_summary, plot_episode, table
    from cosmos_policy_ros.perception.cameras import load_cameras
    from cosmos_policy_ros.robot.aloha import AlohaRobot

    try:
        settings = load_recorder_config(ns.config).convert
        if ns.cameras:
            settings.cameras = [c for c in ns.cameras.split(",") if c]
        if ns.action_source:
            settings.action_source = ns.action_source
        if ns.max_state_age:
            settings.max_state_age_s = ns.max_state_age
        if ns.max_image_age:
            settings.max_image_age_s = ns.max_image_age
        spec = EpisodeSpec(AlohaRobot.from_yaml(ns.robot_config), load_cameras(ns.camera_config))
        repair_interrupted_bags(find_bags(ns.bags))
        infos = convert_bags(ns.bags, ns.output, spec, settings, progress=not ns.no_progress)
    except EXPECTED_ERRORS as exc:  # BagError, ManifestError, ConfigError, EpisodeFormatError, OSError
        print(f"cosmos-aloha convert: {one_line(exc)}", file=sys.stderr)
        return 1
    print(table([hdf5_summary(i.path) for i in infos], SUMMARY_COLUMNS))
    if ns.plot:
        for i in infos:
            print(f"plot: {plot_episode(i.path, i.path.with_suffix('.png'))}")
    print(f"{len(infos)} episodes -> {ns.output} (dataset_statistics.json written)")
    return 0


def repair_interrupted_bags(bags: list[Path]) -> None:
    """Repair every bag (or manifest entry) left behind by a killed recorder, one printed line each.

    Why before converting: the converter reads complete bags only, and a killed recording should not
    need `bag-info --recover` by hand. A bag still being recorded raises RecordingInProgress (a BagError).
    """
    for bag in bags:
        rec = find_manifest_record(bag)
        stuck = rec is not None and rec.status == "recording"
        if stuck or (bag.is_dir() and not (bag / "metadata.yaml").exists()):
            repair_bag(bag)


if __name__ == "__main__":
    sys.exit(run_main(main, prog="cosmos-aloha convert"))
