"""Seeded episodes through the running ROS node graph: sim -> policy/planner -> executor -> sim.

In-process evaluation calls the policy itself; here the same seeds go through DDS, the nodes and the
executor's 50 Hz loop, and the runner touches the graph only where an operator could: the sim's reset
service and status topic, the executor's start/stop services, the published action chunks, the primary
camera. Each episode comes back as the in-process `EpisodeResult` (queries = chunks published during
the episode, policy_s = their observation -> published latency), so both report the same things.

    runner.reset(seed)  ->  runner.start()  ->  runner.wait_until_done(seed)  ->  EpisodeResult
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cosmos_policy_ros.errors import CosmosError
from cosmos_policy_ros.evaluation.report import EpisodeResult, save_strip
from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.perception.image_codec import image_to_rgb
from cosmos_policy_ros.topics import ACTION_CHUNK, EXECUTOR_SERVICES, EXECUTOR_STATUS, SIM_RESET, SIM_STATUS

# a sim status this early in an episode shows the reset took (the sim publishes its status at a few Hz)
RESET_MAX_STEP = 25


class GraphEpisodeError(CosmosError, RuntimeError):
    """The graph did not do what an episode needs: a node exited, a service or the episode timed out."""


class SimStatusWatch:
    """The sim's latest status (JSON on SIM_STATUS: seed, step, time, max_stage, success) read for one seed."""

    def __init__(self) -> None:
        self.latest: dict | None = None

    def update(self, status: dict) -> None:
        self.latest = status

    def is_reset_to(self, seed: int) -> bool:
        st = self.latest
        return st is not None and st["seed"] == seed and st["step"] < RESET_MAX_STEP

    def episode_over(self, seed: int, episode_s: float, started_s: float = 0.0) -> bool:
        """Episode `seed` succeeded or ran episode_s simulated seconds after ``started_s`` (sim time)."""
        st = self.latest
        return st is not None and st["seed"] == seed and (st["success"] or st["time"] - started_s >= episode_s)


def episode_result(status: dict, latencies: Sequence[float], wall_s: float, strip: str = "") -> EpisodeResult:
    """The EpisodeResult of a finished graph episode from the sim's last status and the chunks published."""
    return EpisodeResult(seed=int(status["seed"]), success=bool(status["success"]),
                         max_stage=int(status["max_stage"]), steps=int(status["step"]), queries=len(latencies),
                         policy_s=[float(x) for x in latencies], sim_time_s=float(status["time"]),
                         wall_s=wall_s, strip=strip)


class StripCollector:
    """A frame every `every_s` simulated seconds of the running episode, and its last frame: the PNG strip.

    to_rgb turns what `offer` gets into an HxWx3 array; it runs only on the frames kept.
    """

    def __init__(self, every_s: float, to_rgb: Callable[[object], np.ndarray] = np.asarray):
        self.every_s, self.to_rgb = every_s, to_rgb
        self.seed: int | None = None
        self.next_t = 0.0
        self.frames: list[np.ndarray] = []
        self.last = None

    def begin(self, seed: int) -> None:
        self.seed, self.next_t, self.frames = seed, 0.0, []

    def offer(self, image, status: dict | None) -> None:
        """A camera image arrived while the sim was at `status` (None: no status yet)."""
        self.last = image
        if status is None or status["seed"] != self.seed or status["time"] < self.next_t:
            return
        self.frames.append(self.to_rgb(image))
        self.next_t += self.every_s

    def finish(self) -> list[np.ndarray]:
        """The episode's frames, the last image received appended; later images are not kept."""
        self.seed = None
        if self.last is not None:
            self.frames.append(self.to_rgb(self.last))
        return self.frames


def executor_summary(status) -> dict:
    """The executor's counters of an ExecutorStatus message, as the demo report keeps them."""
    return {"loop_period_mean_s": status.loop_period_mean_s, "loop_period_p99_error_s": status.loop_period_p99_error_s,
            "interventions": status.interventions, "last_intervention": status.last_intervention,
            "intervention_kinds": {k: int(n) for k, n in zip(status.intervention_kinds, status.intervention_counts)},
            "chunks_accepted": status.chunks_accepted, "chunks_rejected": status.chunks_rejected}


@dataclass(frozen=True)
class GraphEpisodeSettings:
    task: str
    # s simulated per episode; it ends earlier on success
    episode_s: float
    # s simulated between strip frames
    strip_every_s: float
    # folder for the per-episode PNG strips
    out: Path


class GraphEpisodeRunner:
    """Runs seeded episodes through a started node graph; use as a context manager (it owns an rclpy node).

    dead_nodes: names of the graph's processes that have exited; any ends the run with GraphEpisodeError.
    """

    def __init__(self, settings: GraphEpisodeSettings, dead_nodes: Callable[[], list[str]]):
        import rclpy  # heavy, and only for runs through the graph: in-process evaluation needs no ROS
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from cosmos_policy_ros.msg import ActionChunk, ExecutorStatus
        from cosmos_policy_ros.srv import ResetEpisode

        self.settings, self.dead_nodes = settings, dead_nodes
        self.sim = SimStatusWatch()
        self.strip = StripCollector(settings.strip_every_s, image_to_rgb)
        self.latencies: list[float] = []       # inference latency of every chunk published, in order
        self.executor_status = None            # latest ExecutorStatus
        self._rclpy, self._trigger, self._reset_request = rclpy, Trigger.Request, ResetEpisode.Request
        rclpy.init()
        self.node = node = rclpy.create_node("cosmos_demo")
        node.create_subscription(String, SIM_STATUS, lambda m: self.sim.update(json.loads(m.data)),
                                 QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        node.create_subscription(ActionChunk, ACTION_CHUNK, lambda m: self.latencies.append(m.inference_latency_s), 10)
        node.create_subscription(ExecutorStatus, EXECUTOR_STATUS, self._on_executor_status, 10)
        cams = load_cameras()
        primary = next(n for n, c in cams.cameras.items() if c.role == "primary")
        node.create_subscription(Image, cams.topic(primary), lambda m: self.strip.offer(m, self.sim.latest),
                                 qos_profile_sensor_data)
        self._reset = node.create_client(ResetEpisode, SIM_RESET)
        self._stop = node.create_client(Trigger, f"{EXECUTOR_SERVICES}/stop")
        self._start = node.create_client(Trigger, f"{EXECUTOR_SERVICES}/start")
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(node)

    def __enter__(self) -> GraphEpisodeRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.node.destroy_node()
        self._rclpy.shutdown()

    def _on_executor_status(self, msg) -> None:
        self.executor_status = msg

    def wait_for_policy(self, timeout_s: float = 300.0) -> None:
        """Until the first action chunk arrives: the policy has loaded and warmed up."""
        if not self._spin(lambda: len(self.latencies) > 0, timeout_s):
            raise GraphEpisodeError(f"no action chunk on {ACTION_CHUNK} within {timeout_s:.0f} s (model warm-up)")

    def reset(self, seed: int) -> None:
        """Stop the executor and reset the sim to `seed`; returns once the sim reports the new episode."""
        self._call(self._stop, self._trigger())
        r = self._call(self._reset, self._reset_request(task=self.settings.task, seed=seed))
        if r is None or not r.success:
            raise GraphEpisodeError(f"reset failed: {r.message if r else 'no answer'}")
        self._spin(lambda: self.sim.is_reset_to(seed), 20.0)

    def start(self) -> float:
        """Start the executor; returns the sim time it started at. A start first reboots the grippers and sets
        the driver's modes (~1 s, as a real robot's reset): that time is not the policy's."""
        r = self._call(self._start, self._trigger())
        if r is None or not r.success:
            raise GraphEpisodeError(f"executor start failed: {r.message if r else 'no answer'}")
        return float(self.sim.latest["time"]) if self.sim.latest else 0.0

    def stop(self) -> None:
        self._call(self._stop, self._trigger())

    def wait_until_done(self, seed: int, timeout_s: float, started_s: float = 0.0) -> dict:
        """Spin until episode `seed` succeeds or runs its simulated time from ``started_s``; the sim's last status."""
        if not self._spin(lambda: self.sim.episode_over(seed, self.settings.episode_s, started_s), timeout_s):
            raise GraphEpisodeError(f"seed {seed}: the episode did not end within {timeout_s:.0f} s")
        return self.sim.latest

    def run_episode(self, seed: int) -> EpisodeResult:
        """reset, start, wait; the strip is written to settings.out."""
        s = self.settings
        self.reset(seed)
        first_chunk = len(self.latencies)
        self.strip.begin(seed)
        started_s = self.start()
        t0 = time.monotonic()
        status = self.wait_until_done(seed, 60 + s.episode_s * 30, started_s)
        ep = episode_result(status, self.latencies[first_chunk:], time.monotonic() - t0, f"episode_{seed:05d}.png")
        save_strip(self.strip.finish(), s.out / ep.strip,
                   f"seed {seed} {'SUCCESS' if ep.success else 'fail'} stage {ep.max_stage} "
                   f"(through the ROS graph, {s.strip_every_s:g} s per frame)")
        return ep

    def run(self, seeds: Sequence[int]) -> list[EpisodeResult]:
        """All seeds in order, one progress line each; the executor is stopped at the end."""
        print("demo: waiting for the first action chunk (model warm-up)...", flush=True)
        self.wait_for_policy()
        episodes = []
        for i, seed in enumerate(seeds):
            ep = self.run_episode(seed)
            episodes.append(ep)
            print(f"demo: episode {i + 1}/{len(seeds)} seed {seed}: {'SUCCESS' if ep.success else 'failure'} "
                  f"(stage {ep.max_stage}/4, {ep.sim_time_s:.1f} s simulated, {ep.queries} chunks)", flush=True)
        self.stop()
        return episodes

    def executor_summary(self) -> dict | None:
        """The executor's counters from its latest status, None if it never published one."""
        return None if self.executor_status is None else executor_summary(self.executor_status)

    def _spin(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Process callbacks until done() (True) or timeout_s (done() then); a graph process exiting raises."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if done():
                return True
            dead = self.dead_nodes()
            if dead:
                raise GraphEpisodeError(f"node(s) {dead} exited")
            self._executor.spin_once(timeout_sec=0.05)
        return done()

    def _call(self, client, request, timeout_s: float = 30.0):
        """The service's response, None if it is not there or does not answer within timeout_s."""
        if not client.wait_for_service(timeout_sec=timeout_s):
            return None
        future = client.call_async(request)
        return future.result() if self._spin(future.done, timeout_s) else None
