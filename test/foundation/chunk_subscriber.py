"""Subprocess side of test_msgs_pubsub: receive ActionChunks, print what arrived, exit."""
import sys

import rclpy
from rclpy.executors import SingleThreadedExecutor

from cosmos_policy_ros.msg import ActionChunk

want = int(sys.argv[1])
rclpy.init()
node = rclpy.create_node("chunk_subscriber")
got = []
node.create_subscription(ActionChunk, "/test/action_chunk", got.append, 50)
print("READY", flush=True)
ex = SingleThreadedExecutor()
ex.add_node(node)
while len(got) < want:
    ex.spin_once(timeout_sec=0.1)
for m in got:
    t = m.trajectory
    last = t.points[-1]
    print(f"CHUNK seq={m.sequence} src={m.source} joints={len(t.joint_names)} first={t.joint_names[0]} "
          f"points={len(t.points)} last_pos={last.positions[13]:.4f} "
          f"last_t={last.time_from_start.sec}.{last.time_from_start.nanosec:09d} value={m.value:.3f} "
          f"stamp={m.header.stamp.sec} steps={m.num_steps}", flush=True)
node.destroy_node()
rclpy.shutdown()
