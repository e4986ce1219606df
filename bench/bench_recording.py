"""Recording throughput and loss: 4 cameras x 30 Hz x 640x480 rgb8 (+ 2 x 100 Hz joint states).

1. writer: the bag writer alone (raw CDR into MCAP, flushed every 0.5 s of data) -> images/s, MB/s.
2. live:   a publisher in this process and the recorder node as a separate process over DDS
           (loopback, the package's shared-memory Fast DDS profile) for --seconds; published vs
           recorded per topic -> dropped messages, images/s, MB/s, recorder CPU.

    .venv/bin/python bench/bench_recording.py [--seconds 10] [--image-transport raw|jpeg] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CAMS = ["cam_high", "cam_left_wrist", "cam_right_wrist", "cam_low"]
W, H, CAM_HZ, JS_HZ = 640, 480, 30.0, 100.0


def bench_writer(tmp: Path, n_images: int = 300) -> dict:
    from cosmos_policy_ros.data.bag_writer import BagWriter
    from cosmos_policy_ros.data.msg_types import typestore

    ts = typestore()
    T = ts.types
    rgb = np.random.default_rng(0).integers(0, 255, H * W * 3, dtype=np.uint8)
    raw = ts.serialize_cdr(T["sensor_msgs/msg/Image"](
        T["std_msgs/msg/Header"](T["builtin_interfaces/msg/Time"](0, 0), "f"), H, W, "rgb8", 0, W * 3, rgb),
        "sensor_msgs/msg/Image")
    w = BagWriter(tmp / "writer_bench")
    for c in CAMS:
        w.add_topic(f"/{c}/camera/color/image_rect_raw", "sensor_msgs/msg/Image")
    t0 = time.perf_counter()
    for i in range(n_images):
        w.write(f"/{CAMS[i % 4]}/camera/color/image_rect_raw", i * 8_333_333, raw)
        if i % 60 == 59:  # 0.5 s of 4 x 30 Hz
            w.flush()
    w.close()
    dt = time.perf_counter() - t0
    return {"images": n_images, "seconds": dt, "images_per_s": n_images / dt,
            "MB_per_s": n_images * len(raw) / dt / 1e6}


def _scene(seed: int) -> np.ndarray:
    """A camera-like frame (smooth shading, edges, sensor noise): JPEG cost close to real images."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([(x * 255 // W), (y * 255 // H), ((x + y) * 127 // (W + H)) + 64], axis=2).astype(np.int16)
    for _ in range(12):
        x0, y0 = rng.integers(0, W - 80), rng.integers(0, H - 80)
        img[y0:y0 + rng.integers(20, 120), x0:x0 + rng.integers(20, 120)] = rng.integers(0, 255, 3)
    img += rng.integers(-6, 7, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _cpu_s(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def bench_live(tmp: Path, seconds: float, image_transport: str) -> dict:
    from cosmos_policy_ros.ros_env import apply_local_ros_env

    apply_local_ros_env(int(os.environ.get("ROS_DOMAIN_ID", str(50 + os.getpid() % 40))))
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from cosmos_policy_ros.data.bag_reader import open_bag
    from cosmos_policy_ros.perception.image_codec import fill_image
    from cosmos_policy_ros.srv import EpisodeCommand

    bag_dir = tmp / "live"
    rec = subprocess.Popen([sys.executable, "-m", "cosmos_policy_ros.nodes.recorder_node", "--ros-args",
                            "-p", f"bag_dir:={bag_dir}", "-p", "auto_record:=false", "-p", "backend:=rosbags",
                            "-p", f"image_transport:={image_transport}"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    rclpy.init()
    node = rclpy.create_node("bench_recording_publisher")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    status: list[dict] = []
    node.create_subscription(String, "/recorder/status", lambda m: status.append(json.loads(m.data)),
                             QoSProfile(depth=5, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    img_pubs = {c: node.create_publisher(Image, f"/{c}/camera/color/image_rect_raw", QoSProfile(depth=10))
                for c in CAMS}
    js_pubs = {s: node.create_publisher(JointState, f"/follower_{s}/joint_states", 100) for s in ("left", "right")}
    client = node.create_client(EpisodeCommand, "/recorder/episode")
    images = {c: fill_image(Image(), _scene(i)) for i, c in enumerate(CAMS)}
    js = JointState(name=["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper",
                          "left_finger", "right_finger"], position=[0.0] * 9, velocity=[0.0] * 9, effort=[0.0] * 9)

    def spin_until(pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not pred():
            ex.spin_once(timeout_sec=0.05)
        return pred()

    def call(cmd):
        fut = client.call_async(EpisodeCommand.Request(command=cmd))
        assert spin_until(fut.done, 20), f"recorder did not answer {cmd}"
        return fut.result()

    published = {}
    try:
        topics = {f"/{c}/camera/color/image_rect_raw" for c in CAMS} | {f"/follower_{s}/joint_states" for s in js_pubs}
        if not spin_until(lambda: status and topics <= set(status[-1]["subscribed"]), 60):
            raise RuntimeError(f"recorder did not subscribe: {status[-1:] if status else 'no status'}")
        pubs = list(img_pubs.values()) + list(js_pubs.values())
        spin_until(lambda: all(p.get_subscription_count() for p in pubs), 10)
        assert client.wait_for_service(timeout_sec=20)
        assert call("start").success
        cpu0, t0 = _cpu_s(rec.pid), time.monotonic()
        next_cam = next_js = t0
        late = 0
        while time.monotonic() - t0 < seconds:
            now = time.monotonic()
            if now >= next_js:
                for s, p in js_pubs.items():
                    js.header.stamp = node.get_clock().now().to_msg()
                    p.publish(js)
                    published[f"/follower_{s}/joint_states"] = published.get(f"/follower_{s}/joint_states", 0) + 1
                next_js += 1 / JS_HZ
            if now >= next_cam:
                for c, p in img_pubs.items():
                    images[c].header.stamp = node.get_clock().now().to_msg()
                    p.publish(images[c])
                    t = f"/{c}/camera/color/image_rect_raw"
                    published[t] = published.get(t, 0) + 1
                next_cam += 1 / CAM_HZ
                if now - next_cam > 0.1:
                    late += 1
            ex.spin_once(timeout_sec=max(0.0, min(next_js, next_cam) - time.monotonic()))
        elapsed = time.monotonic() - t0
        time.sleep(1.0)  # let the recorder drain its queues before stopping
        cpu = _cpu_s(rec.pid) - cpu0
        assert call("stop").success
    finally:
        node.destroy_node()
        rclpy.shutdown()
        rec.send_signal(signal.SIGINT)
        try:
            rec.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            rec.kill()
    bag = open_bag(bag_dir / "episode_0000")
    bag_topic = (lambda t: t + "/compressed") if image_transport == "jpeg" else (lambda t: t)
    per_topic = {}
    for t, n in published.items():
        bt = bag_topic(t) if "camera" in t else t
        per_topic[t] = {"published": n, "recorded": bag.topics[bt].count if bt in bag.topics else 0}
    img_rec = sum(v["recorded"] for t, v in per_topic.items() if "camera" in t)
    img_pub = sum(v["published"] for t, v in per_topic.items() if "camera" in t)
    size = sum(p.stat().st_size for p in (bag_dir / "episode_0000").iterdir())
    return {"seconds": elapsed, "image_transport": image_transport,
            "images_published": img_pub, "images_recorded": img_rec,
            "images_per_s": img_rec / elapsed, "publish_rate_hz_per_cam": img_pub / 4 / elapsed,
            "MB_per_s": size / elapsed / 1e6, "bag_MB": size / 1e6,
            "dropped": sum(v["published"] - v["recorded"] for v in per_topic.values()),
            "per_topic": per_topic, "recorder_cpu_percent_of_one_core": 100 * cpu / elapsed,
            "publisher_late_frames": late, "load_average": os.getloadavg()[0]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--image-transport", choices=["raw", "jpeg"], default="raw")
    p.add_argument("--json", action="store_true")
    ns = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_recording_") as d:
        writer = bench_writer(Path(d))
        live = bench_live(Path(d), ns.seconds, ns.image_transport)
    if ns.json:
        print(json.dumps({"writer": writer, "live": live}, indent=1))
        return 0
    print(f"writer (bag writer alone, 640x480 rgb8): {writer['images_per_s']:.0f} images/s, "
          f"{writer['MB_per_s']:.0f} MB/s")
    print(f"live over DDS, 4 cams x {CAM_HZ:g} Hz + 2 x {JS_HZ:g} Hz joint states, {live['seconds']:.1f} s, "
          f"images {live['image_transport']}:")
    print(f"  recorded {live['images_recorded']}/{live['images_published']} images "
          f"({live['images_per_s']:.1f} images/s; publisher reached {live['publish_rate_hz_per_cam']:.1f} Hz/cam), "
          f"{live['MB_per_s']:.1f} MB/s to disk, dropped {live['dropped']} messages, "
          f"recorder CPU {live['recorder_cpu_percent_of_one_core']:.0f}% of a core "
          f"(load average {live['load_average']:.1f})")
    for t, v in live["per_topic"].items():
        print(f"    {t:45s} published {v['published']:5d}  recorded {v['recorded']:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
