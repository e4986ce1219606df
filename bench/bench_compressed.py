"""Bytes per observation on the wire, raw vs JPEG (as realsense2_camera's image_transport publishes it), and
what decoding costs the policy host: for the lab layout where the cameras sit on the robot PC and the
policy on a GPU workstation (docs/deployment.md "Lab layout").

Frames are the simulated ALOHA's three cameras at the RealSense size (480x640) over an episode of the
scripted demonstrator, so the content (table, arms, cube) is camera-like; JPEG at the quality given
(compressed_image_transport's default 95). Decode = perception.image_codec.compressed_to_rgb (Pillow), the
function the policy node runs per frame.

    MUJOCO_GL=egl .venv/bin/python bench/bench_compressed.py [--frames 20] [--qualities 95 80] [--rate-hz 25]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cosmos_policy_ros.sim.gl import ensure_gl_backend  # noqa: E402

ensure_gl_backend()

import numpy as np  # noqa: E402

from cosmos_policy_ros.perception.image_codec import compressed_to_rgb, fill_compressed  # noqa: E402
from cosmos_policy_ros.sim.demonstrator import ScriptedDemonstrator  # noqa: E402
from cosmos_policy_ros.sim.sim_aloha import SimAloha  # noqa: E402

CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")


class _Compressed:
    """The two fields of sensor_msgs/CompressedImage that the codec reads and writes."""

    format = ""
    data = b""


def episode_frames(n: int, width: int, height: int) -> list[dict[str, np.ndarray]]:
    """`n` observations (three cameras each) spread over a scripted transfer_cube episode."""
    with SimAloha("transfer_cube") as sim:
        steps = sim.tasks_cfg["transfer_cube"].episode_steps
        sim.reset("transfer_cube", 0)
        demo = ScriptedDemonstrator(sim.model, "transfer_cube", sim.wc.arm_prefix)
        demo.reset(sim.qpos14(), sim.object_poses())
        every = max(1, steps // n)
        out = []
        for i in range(steps):
            if i % every == 0 and len(out) < n:
                out.append(sim.render(CAMERAS, width=width, height=height))
            sim.step(demo.act(sim.qpos14(), sim.object_poses()))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20, help="observations (x3 cameras)")
    ap.add_argument("--qualities", type=int, nargs="+", default=[95, 80])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--rate-hz", type=float, default=25.0, help="camera rate for the bandwidth line")
    args = ap.parse_args()
    observations = episode_frames(args.frames, args.width, args.height)
    raw = np.mean([sum(f.nbytes for f in obs.values()) for obs in observations])
    print(f"{len(observations)} observations of {len(CAMERAS)} cameras at {args.width}x{args.height} (simulated ALOHA)")
    print(f"raw rgb8: {raw / 1e6:6.2f} MB per observation, {raw * args.rate_hz * 8 / 1e6:7.1f} Mbit/s at "
          f"{args.rate_hz:g} Hz")
    for q in args.qualities:
        sizes, enc_s, dec_s, err = [], [], [], []
        for obs in observations:
            total = 0
            for frame in obs.values():
                t0 = time.perf_counter()
                msg = fill_compressed(_Compressed(), frame, quality=q)
                t1 = time.perf_counter()
                back = compressed_to_rgb(msg)
                t2 = time.perf_counter()
                total += len(msg.data)
                enc_s.append(t1 - t0)
                dec_s.append(t2 - t1)
                err.append(np.abs(back.astype(np.int16) - frame).mean())
            sizes.append(total)
        size = float(np.mean(sizes))
        print(f"JPEG q{q}: {size / 1e3:7.1f} kB per observation (x{raw / size:5.1f} smaller), "
              f"{size * args.rate_hz * 8 / 1e6:6.1f} Mbit/s | decode {np.median(dec_s) * 1e3:5.1f} ms per frame "
              f"({np.median(dec_s) * len(CAMERAS) * 1e3:5.1f} ms per observation) | encode "
              f"{np.median(enc_s) * 1e3:5.1f} ms per frame | mean abs error {np.mean(err):.2f} grey levels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
