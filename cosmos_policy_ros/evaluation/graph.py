"""Seeded episodes through the running ROS node graph: sim -> policy/planner -> executor -> sim.

In-process evaluation calls the policy itself; here the same seeds go through DDS, the nodes and the
executor's 50 Hz loop, and the runner touches the graph only where an operator could: the sim's reset
service and status topic, the executor's start/stop services, the published action chunks, the primary
camera, the sim's viewer (for the GIF), the followers' joint states and the commands the executor sends
them (for the chunk plot). Each episode comes back as the in-process `EpisodeResult` (queries = chunks published during
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
from cosmos_policy_ros.evaluation.animation import EpisodeAnimation, StageTimeline
from cosmos_policy_ros.evaluation.chunk_plot import ChunkTrace, plot_chunk_trace
from cosmos_policy_ros.evaluation.report import EpisodeResult, save_strip
from cosmos_policy_ros.perception.cameras import load_cameras
from cosmos_policy_ros.perception.image_codec import image_to_rgb
from cosmos_policy_ros.robot.aloha import DEFAULT_ROBOT_CONFIG, AlohaRobot
from cosmos_policy_ros.sim.viewer import load_viewer_config
from cosmos_policy_ros.topics import (
    ACTION_CHUNK,
    EXECUTOR_SERVICES,
    EXECUTOR_STATUS,
    SIM_RESET,
    SIM_STATUS,
    SIM_VIEWER,
)

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

    def episode_over(self, seed: int, episode_s: float, started_s: float = 0.0, lockstep: bool = False) -> bool:
        """Episode `seed` succeeded or ran episode_s simulated seconds after ``started_s`` (sim time).

        lockstep: the sim ends the episode itself, at the exact step (its horizon or success), and says so."""
        st = self.latest
        if lockstep:
            return st is not None and st["seed"] == seed and bool(st.get("done"))
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


class ViewerCollector:
    """The running episode's viewer frames (topics.SIM_VIEWER, stamped with simulated time) for its GIF.

    Frames of the previous episode can still arrive after the reset: the episode's frames start with the
    first one stamped within `first_within_s` of the reset, and go on in stamp order (an earlier stamp
    means another reset: the collection starts again). Captions take the stage from the sim's status.
    to_rgb turns what `offer` gets into an HxWx3 array; it runs only on the frames kept.
    """

    def __init__(self, fps: float, to_rgb: Callable[[object], np.ndarray] = np.asarray, first_within_s: float = 1.0):
        self.fps, self.to_rgb, self.first_within_s = fps, to_rgb, first_within_s
        self.seed: int | None = None
        self.frames: list[tuple[float, np.ndarray]] = []
        self.stages = StageTimeline()

    def begin(self, seed: int) -> None:
        self.seed, self.frames, self.stages = seed, [], StageTimeline()

    def status(self, status: dict) -> None:
        if self.seed is not None and status["seed"] == self.seed:
            self.stages.add(status["time"], status["max_stage"])

    def offer(self, image, t: float) -> None:
        """A viewer image of simulated time t arrived."""
        if self.seed is None:
            return
        if self.frames and t < self.frames[-1][0]:
            self.frames = []
        if self.frames or t <= self.first_within_s:
            self.frames.append((t, self.to_rgb(image)))

    def finish(self, status: dict) -> EpisodeAnimation:
        """The episode's GIF frames, closed by its last frame captioned with the outcome in `status`."""
        animation = EpisodeAnimation(self.seed, self.fps)
        self.stages.add(status["time"], status["max_stage"])
        for t, frame in self.frames:
            animation.add(frame, t, self.stages.at(t))
        if self.frames:
            animation.close(self.frames[-1][1], float(status["time"]), int(status["max_stage"]),
                            bool(status["success"]))
        self.seed = None
        return animation


class GraphChunkTrace:
    """The running episode's executed chunks from what the graph publishes, as a ChunkTrace.

    measured   the followers' joint states (their stamps);  commanded  the executor's commands to the
    followers (after its SafetyFilter), timed by the latest joint state;  chunks  the ActionChunks (their
    own stamps; the boundary when one arrived);  interventions  growth of the executor's counters (its
    status, a few Hz: the joints are not known).
    Times are simulated seconds since the reset. A stamp within SAME_CLOCK_S of the sim's time when the
    episode began is one already (fast and lockstep time count from the reset); any other clock (wall time;
    strict lockstep's, which goes on across resets) is shifted so that the episode's first joint state
    falls at that time: exact in strict lockstep (time stands still until the executor starts), within a
    status period (0.2 s) in wall time, where the sim keeps real time within its 0.25 s catch-up window.
    """

    # s, a first stamp this close to the episode's start time counts from the reset
    SAME_CLOCK_S = 2.0

    def __init__(self, robot: AlohaRobot):
        self.robot = robot
        self.trace = ChunkTrace()
        self.active = False
        self._offset: float | None = None
        self._start_s = 0.0
        self._now: float | None = None
        self._counts: dict[str, int] | None = None

    def begin(self, start_s: float) -> None:
        """Collect from now on; start_s: the sim's time (s since the reset) as the episode begins."""
        self.trace, self.active, self._offset, self._start_s, self._now = ChunkTrace(), True, None, start_s, None
        self._counts = None

    def _episode_time(self, stamp_s: float) -> float:
        if self._offset is None:
            self._offset = 0.0 if abs(stamp_s - self._start_s) < self.SAME_CLOCK_S else stamp_s - self._start_s
        return stamp_s - self._offset

    def joint_state(self, side: int, stamp_s: float, names, positions) -> None:
        if not self.active:
            return
        self._now = self._episode_time(stamp_s)
        self.trace.measured.add(self._now, self.robot.arm_state_from_joint_state(names, positions),
                                range(7 * side, 7 * side + 7))

    def arm_command(self, side: int, positions) -> None:
        if self.active and self._now is not None:
            self.trace.commanded.add(self._now, positions, range(7 * side, 7 * side + 6))

    def gripper_command(self, side: int, motor_rad: float) -> None:
        if self.active and self._now is not None:
            self.trace.commanded.add(self._now, [float(self.robot.follower_joint_to_normalized(motor_rad))],
                                     [7 * side + 6])

    def chunk(self, stamp_s: float, times, actions) -> None:
        """An ActionChunk as robot.scheduler.Chunk fields: observation stamp, absolute due times, actions."""
        if self.active and self._now is not None:
            offset = stamp_s - self._episode_time(stamp_s)
            self.trace.add_chunk(self._now, np.asarray(times, float) - offset, actions)

    def executor_counts(self, kinds: dict[str, int]) -> None:
        """The executor's interventions so far by kind; growth since the last status is one mark."""
        if not self.active or self._now is None:
            return
        if self._counts is not None:
            grown = {k: n - self._counts.get(k, 0) for k, n in kinds.items() if n > self._counts.get(k, 0)}
            if grown:
                self.trace.add_intervention(self._now, sum(grown.values()),
                                            ", ".join(f"{k} {n}" for k, n in grown.items()))
        self._counts = dict(kinds)

    def finish(self) -> ChunkTrace:
        self.active = False
        return self.trace


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
    # folder for the per-episode PNG strips, GIFs and chunk plots
    out: Path
    # the graph runs in lockstep (lockstep:=true): the sim ends each episode at its horizon (episode_s) or
    # on success and waits for the policy, so wall time is unbounded by episode_s (the first episode also
    # waits for the model to load)
    lockstep: bool = False


class GraphEpisodeRunner:
    """Runs seeded episodes through a started node graph; use as a context manager (it owns an rclpy node).

    dead_nodes: names of the graph's processes that have exited; any ends the run with GraphEpisodeError.
    """

    def __init__(self, settings: GraphEpisodeSettings, dead_nodes: Callable[[], list[str]]):
        import rclpy  # heavy, and only for runs through the graph: in-process evaluation needs no ROS
        from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from cosmos_policy_ros.msg import ActionChunk, ExecutorStatus
        from cosmos_policy_ros.nodes.chunk_msgs import chunk_from_msg, seconds
        from cosmos_policy_ros.srv import ResetEpisode

        self.settings, self.dead_nodes = settings, dead_nodes
        self.sim = SimStatusWatch()
        self.strip = StripCollector(settings.strip_every_s, image_to_rgb)
        self.viewer = ViewerCollector(load_viewer_config().rate_hz, image_to_rgb)
        self.robot = AlohaRobot.from_yaml(DEFAULT_ROBOT_CONFIG)
        self.trace = GraphChunkTrace(self.robot)
        self._chunk_from_msg = chunk_from_msg
        self.latencies: list[float] = []       # inference latency of every chunk published, in order
        self.executor_status = None            # latest ExecutorStatus
        self._rclpy, self._trigger, self._reset_request = rclpy, Trigger.Request, ResetEpisode.Request
        rclpy.init()
        self.node = node = rclpy.create_node("cosmos_demo")
        node.create_subscription(String, SIM_STATUS, self._on_sim_status,
                                 QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        node.create_subscription(ActionChunk, ACTION_CHUNK, self._on_chunk, 10)
        node.create_subscription(ExecutorStatus, EXECUTOR_STATUS, self._on_executor_status, 10)
        cams = load_cameras()
        primary = next(n for n, c in cams.cameras.items() if c.role == "primary")
        node.create_subscription(Image, cams.topic(primary), lambda m: self.strip.offer(m, self.sim.latest),
                                 qos_profile_sensor_data)
        node.create_subscription(Image, SIM_VIEWER, lambda m: self.viewer.offer(m, seconds(m.header.stamp)), 10)
        for i, side in enumerate(self.robot.config.arms):  # the executed chunks: measured and commanded
            node.create_subscription(JointState, self.robot.follower_topic(side, "joint_states"), lambda m, i=i:
                                     self.trace.joint_state(i, seconds(m.header.stamp), m.name, m.position), 10)
            node.create_subscription(JointGroupCommand, self.robot.follower_topic(side, "joint_group"),
                                     lambda m, i=i: self.trace.arm_command(i, m.cmd), 10)
            node.create_subscription(JointSingleCommand, self.robot.follower_topic(side, "joint_single"),
                                     lambda m, i=i: self.trace.gripper_command(i, m.cmd), 10)
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
        self.trace.executor_counts(dict(zip(msg.intervention_kinds, msg.intervention_counts)))

    def _on_sim_status(self, msg) -> None:
        status = json.loads(msg.data)
        self.sim.update(status)
        self.viewer.status(status)

    def _on_chunk(self, msg) -> None:
        self.latencies.append(msg.inference_latency_s)
        try:
            chunk = self._chunk_from_msg(msg, self.robot.joint_names)
        except ValueError:
            return  # the executor rejects and counts it; nothing was played
        self.trace.chunk(chunk.stamp, chunk.times, chunk.actions)

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
        if not self._spin(lambda: self.sim.episode_over(seed, self.settings.episode_s, started_s,
                                                        self.settings.lockstep), timeout_s):
            raise GraphEpisodeError(f"seed {seed}: the episode did not end within {timeout_s:.0f} s")
        return self.sim.latest

    def run_episode(self, seed: int) -> EpisodeResult:
        """reset, start, wait; the strip is written to settings.out."""
        s = self.settings
        self.reset(seed)
        first_chunk = len(self.latencies)
        self.strip.begin(seed)
        self.viewer.begin(seed)
        self.trace.begin(float(self.sim.latest["time"]) if self.sim.latest else 0.0)
        started_s = self.start()
        t0 = time.monotonic()
        status = self.wait_until_done(seed, (300 + s.episode_s * 60) if s.lockstep else (60 + s.episode_s * 30),
                                      started_s)
        ep = episode_result(status, self.latencies[first_chunk:], time.monotonic() - t0, f"episode_{seed:05d}.png")
        save_strip(self.strip.finish(), s.out / ep.strip,
                   f"seed {seed} {'SUCCESS' if ep.success else 'fail'} stage {ep.max_stage} "
                   f"(through the ROS graph, {s.strip_every_s:g} s per frame)")
        self._write_media(ep, status)
        return ep

    def _write_media(self, ep: EpisodeResult, status: dict) -> None:
        """The episode's GIF (viewer frames) and chunk plot in settings.out; their names into `ep`."""
        stem = f"episode_{ep.seed:05d}"
        if self.viewer.finish(status).write(self.settings.out / f"{stem}.gif"):
            ep.animation = f"{stem}.gif"
        trace = self.trace.finish()
        if trace:
            ep.chunk_plot = f"{stem}_chunks.png"
            plot_chunk_trace(trace, self.settings.out / ep.chunk_plot,
                             f"seed {ep.seed} {'SUCCESS' if ep.success else 'fail'} stage {ep.max_stage}: executed "
                             "chunks through the ROS graph (commands as the executor sent them)")

    def run(self, seeds: Sequence[int]) -> list[EpisodeResult]:
        """All seeds in order, one progress line each; the executor is stopped at the end."""
        if self.settings.lockstep:  # simulated time waits for the policy's first chunk by itself
            print("demo: lockstep: the sim waits for each chunk (the first one after the model's warm-up)", flush=True)
        else:
            print("demo: waiting for the first action chunk (model warm-up)...", flush=True)
            self.wait_for_policy()
        episodes = []
        for i, seed in enumerate(seeds):
            ep = self.run_episode(seed)
            episodes.append(ep)
            print(f"demo: episode {i + 1}/{len(seeds)} seed {seed}: {'SUCCESS' if ep.success else 'failure'} "
                  f"(stage {ep.max_stage}/4, {ep.sim_time_s:.1f} s simulated in {ep.wall_s:.1f} s wall, "
                  f"{ep.queries} chunks)", flush=True)
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
