"""``cosmos-aloha episodes``: list recorded or converted episodes, label/discard offline, plot one.

    cosmos-aloha episodes bags/                      # the recorder's manifest (episodes.json)
    cosmos-aloha episodes data/my_task               # converted HDF5 episodes
    cosmos-aloha episodes bags/ --label 3 success    # label episode 3 after the fact
    cosmos-aloha episodes data/my_task/episode_3.hdf5 --plot ep3.png

Status of a recorded episode: recording, complete, discarded, interrupted (its recorder died; the bag
was repaired and holds everything up to the last flush; labelled failure), or "recorder died" for one
not repaired yet (the next recording session in that bag_dir or `cosmos-aloha convert` repairs it).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from cosmos_policy_ros.config import ConfigError
from cosmos_policy_ros.data.manifest import (
    MANIFEST_NAME,
    EpisodeLock,
    EpisodeRecord,
    Manifest,
    normalise_label,
)
from cosmos_policy_ros.data.report import SUMMARY_COLUMNS, hdf5_summary, plot_episode, table
from cosmos_policy_ros.errors import EXPECTED_ERRORS, one_line, run_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cosmos-aloha episodes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="recorder bag_dir, folder of .hdf5 episodes, or one .hdf5")
    p.add_argument("--label", nargs=2, metavar=("INDEX", "OUTCOME"), help="set success|failure|'' on an episode")
    p.add_argument("--value", type=float, default=math.nan, help="success score in (0, 1] with --label success")
    p.add_argument("--plot", metavar="PNG", help="plot one .hdf5 episode's joints per arm")
    ns = p.parse_args(argv)
    path = Path(ns.path)
    try:
        if ns.plot:
            print(f"plot: {plot_episode(path, ns.plot)}")
            return 0
        if (path / MANIFEST_NAME).exists():
            m = Manifest(path)
            if ns.label:
                rec = m.get(int(ns.label[0]))
                rec.outcome, rec.value = normalise_label(ns.label[1], ns.value)
                m.save()
            print_manifest(m)
            return 0
        files = [path] if path.suffix in (".hdf5", ".h5") else sorted(path.glob("*.hdf5"))
        if not files:
            raise ConfigError(f"{path}: neither a recorder bag_dir ({MANIFEST_NAME}) nor HDF5 episodes")
        print(table([hdf5_summary(f) for f in files], SUMMARY_COLUMNS))
    except (KeyError, *EXPECTED_ERRORS) as exc:  # ManifestError, ConfigError, EpisodeFormatError, OSError
        print(f"cosmos-aloha episodes: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def status_of(bag_dir: Path, e: EpisodeRecord) -> str:
    """The manifest status, except that "recording" is checked against the episode lock."""
    if e.status == "recording" and not EpisodeLock(bag_dir, e.bag).held():
        return "recorder died"
    return e.status


def print_manifest(m: Manifest) -> None:
    rows = [{"episode": e.index, "bag": e.bag, "kind": e.kind, "task": e.task, "status": status_of(m.dir, e),
             "outcome": e.outcome or "unlabelled", "value": e.value,
             "seconds": (e.stop_ns - e.start_ns) / 1e9 if e.stop_ns else None,
             "messages": sum(e.message_counts.values()) or None} for e in m.episodes]
    print(table(rows, ["episode", "bag", "kind", "task", "status", "outcome", "value", "seconds", "messages"]))
    dead = [r["episode"] for r in rows if r["status"] == "recorder died"]
    if dead:
        print(f"episodes {dead}: recorder died mid-episode; the next recording session in {m.dir} "
              f"or `cosmos-aloha convert` repairs them (status interrupted)")


if __name__ == "__main__":
    sys.exit(run_main(main, prog="cosmos-aloha episodes"))
