"""Seeded in-process evaluation in SimAloha: success rate with a Wilson interval; per episode a PNG strip,
an animated GIF of the viewer (sim/viewer.py: the view the demo shows) and a plot of the executed chunks.

`evaluate(policy_fn, n, seeds)` is the clean entry point: policy_fn(obs) -> (chunk, 14) actions in
robot units, obs = {"images": {camera: HxWx3 uint8}, "proprio": (14,), "instruction": str}. The
first `execute` actions of each chunk run open loop at the sim's 50 Hz, then the policy is queried
again. Every action passes the executor's SafetyFilter, as in the ROS graph, so the numbers of the two
compare (`evaluation.graph` runs the same seeds through the nodes).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from cosmos_policy_ros.data.aloha_hdf5 import write_episode
from cosmos_policy_ros.deploy.bundle import META_FILE, build_engine, check_gripper_convention, resolve_bundle
from cosmos_policy_ros.evaluation.animation import EpisodeAnimation
from cosmos_policy_ros.evaluation.chunk_plot import ChunkTrace, plot_chunk_trace
from cosmos_policy_ros.evaluation.report import EpisodeResult, EvalResult, save_strip
from cosmos_policy_ros.inference.planning import PlanConfig, plan
from cosmos_policy_ros.robot.aloha import DEFAULT_ROBOT_CONFIG, AlohaRobot
from cosmos_policy_ros.robot.safety import SafetyFilter
from cosmos_policy_ros.sim.sim_aloha import SimAloha
from cosmos_policy_ros.sim.viewer import ViewerConfig, ViewerSchedule, load_viewer_config, render_view

PolicyFn = Callable[[Mapping], np.ndarray]


@dataclass(frozen=True)
class EpisodeSettings:
    """What every episode of one evaluation shares."""
    task: str
    cameras: tuple[str, ...]
    # px, square renders
    size: int
    instruction: str
    # actions of each chunk run before the policy is queried again
    execute: int
    # sim steps per episode (50 Hz)
    horizon: int
    stop_on_success: bool
    safety: bool
    record: bool
    # the view for the episode's GIF and plot (EpisodeMedia); None: neither is made
    viewer: ViewerConfig | None = None


class Rollout:
    """What one episode saw and sent, per sim step: an ALOHA HDF5 episode to fine-tune on."""

    def __init__(self, cameras: Sequence[str]):
        self.images: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
        self.qpos: list[np.ndarray] = []
        self.qvel: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []

    def add(self, images: Mapping[str, np.ndarray], qpos: np.ndarray, qvel: np.ndarray, action: np.ndarray) -> None:
        for c, frames in self.images.items():
            frames.append(images[c])
        self.qpos.append(qpos)
        self.qvel.append(qvel)
        self.actions.append(np.asarray(action, dtype=float))

    def write(self, path: Path, *, success: bool, task: str, instruction: str, seed: int) -> None:
        write_episode(path, self.qpos, self.qvel, self.actions, {c: np.stack(f) for c, f in self.images.items()},
                      success=success, task=task, instruction=instruction, seed=seed)


class EpisodeMedia:
    """What people look at afterwards: viewer frames for the GIF, the executed chunks for the plot."""

    def __init__(self, sim: SimAloha, viewer: ViewerConfig, seed: int):
        self.sim, self.viewer = sim, viewer
        self.animation = EpisodeAnimation(seed, fps=viewer.rate_hz)
        self.due = ViewerSchedule(viewer.rate_hz)
        self.trace = ChunkTrace()

    def frame(self) -> None:
        """A viewer frame, if one is due at the sim's time."""
        if self.due.due(self.sim.time):
            self.animation.add(render_view(self.sim, self.viewer), self.sim.time, self.sim.max_stage)

    def chunk(self, chunk: np.ndarray) -> None:
        """A chunk the policy returned now: action i is due i steps later."""
        t = self.sim.time
        self.trace.add_chunk(t, t + self.sim.dt * np.arange(len(chunk)), chunk)

    def step(self, action: np.ndarray, command: np.ndarray, reason: str) -> None:
        """The command about to be sent for `action` (reason: why the filter changed it, "" if it did not)."""
        t = self.sim.time
        self.trace.measured.add(t, self.sim.qpos14())
        self.trace.commanded.add(t, command)
        if reason:
            changed = np.flatnonzero(~np.isfinite(action) | (np.abs(command - action) > 1e-9))
            self.trace.add_intervention(t, 1, reason.split(":", 1)[0], changed)

    def close(self, success: bool) -> None:
        self.animation.close(render_view(self.sim, self.viewer), self.sim.time, self.sim.max_stage, success)

    def write(self, out: Path, stem: str, title: str) -> tuple[str, str]:
        """The GIF and the chunk plot in `out`: their file names."""
        gif, plot = f"{stem}.gif", f"{stem}_chunks.png"
        self.animation.write(out / gif)
        plot_chunk_trace(self.trace, out / plot, title)
        return gif, plot


class Episode:
    """One seeded episode in the sim: query the policy, run `execute` actions of its chunk, repeat."""

    def __init__(self, sim: SimAloha, settings: EpisodeSettings, seed: int):
        sim.reset(settings.task, seed)
        self.sim, self.settings = sim, settings
        self.result = EpisodeResult(seed=seed, success=False, max_stage=0, steps=0, queries=0)
        self.filter = SafetyFilter(sim.robot, dt=sim.dt) if settings.safety else None
        self.rollout = Rollout(settings.cameras) if settings.record else None
        self.media = EpisodeMedia(sim, settings.viewer, seed) if settings.viewer is not None else None
        # the primary camera at every query and at the end: the episode's strip
        self.frames: list[np.ndarray] = []
        self._prev = sim.qpos14()

    def run(self, policy_fn: PolicyFn) -> EpisodeResult:
        sim, s, ep = self.sim, self.settings, self.result
        t0 = time.monotonic()
        if self.media is not None:
            self.media.frame()
        while ep.steps < s.horizon:
            images = self._render(s.cameras)
            self.frames.append(images[s.cameras[0]])
            self._execute(self._query(policy_fn, images), images)
            if s.stop_on_success and sim.success():
                break
        ep.success, ep.max_stage = bool(sim.success()), int(sim.max_stage)
        ep.sim_time_s, ep.wall_s = ep.steps * sim.dt, time.monotonic() - t0
        if self.filter is not None:
            ep.safety_kinds = dict(self.filter.kinds)
        self.frames.append(self._render(s.cameras[:1])[s.cameras[0]])
        if self.media is not None:
            self.media.close(ep.success)
        return ep

    def _render(self, cameras: Sequence[str]) -> dict[str, np.ndarray]:
        return self.sim.render(list(cameras), width=self.settings.size, height=self.settings.size)

    def _query(self, policy_fn: PolicyFn, images: dict[str, np.ndarray]) -> np.ndarray:
        obs = {"images": images, "proprio": self.sim.qpos14(), "instruction": self.settings.instruction}
        t0 = time.perf_counter()
        chunk = np.asarray(policy_fn(obs), dtype=np.float64)
        self.result.policy_s.append(time.perf_counter() - t0)
        self.result.queries += 1
        if chunk.ndim != 2 or chunk.shape[1] != 14:
            raise ValueError(f"policy returned shape {chunk.shape}, expected (chunk, 14)")
        if self.media is not None:
            self.media.chunk(chunk)
        return chunk

    def _execute(self, chunk: np.ndarray, images: dict[str, np.ndarray]) -> None:
        """The first `execute` actions open loop; the camera images were rendered before the first."""
        for i, action in enumerate(chunk[:self.settings.execute]):
            command, reason = self._safe(action) if self.filter is not None else (action, "")
            if self.rollout is not None:
                now = images if i == 0 else self._render(self.settings.cameras)
                self.rollout.add(now, self.sim.qpos14(), self.sim.qvel14(), command)
            if self.media is not None:
                self.media.step(action, command, reason)
            self.sim.step(command, driver=True)   # as the executor's command reaches the driver (float32)
            self._prev = np.asarray(command, dtype=float)
            self.result.steps += 1
            if self.media is not None:
                self.media.frame()
            if self.result.steps >= self.settings.horizon:
                break

    def _safe(self, action: np.ndarray) -> tuple[np.ndarray, str]:
        """The command the executor would send and why the filter changed it ("" if it did not), counting
        how often and how far the filter moved it."""
        res = self.filter.filter(action, self._prev, measured=self.sim.qpos14())
        if res.intervened:
            r = self.result
            r.safety_interventions += 1
            change = np.abs(res.command - action)
            grip = change[list(self.sim.robot.gripper_indices)]
            arm = np.delete(change, self.sim.robot.gripper_indices)
            if np.isfinite(arm).all() and not arm.any():    # a non-finite action (rejected) is not gripper-only
                r.safety_gripper_only += 1
            grip, arm = grip[np.isfinite(grip)], arm[np.isfinite(arm)]  # a rejected non-finite one: in the kinds
            if grip.size:
                r.safety_max_gripper_change = max(r.safety_max_gripper_change, float(grip.max()))
            if arm.size:
                r.safety_max_arm_change_rad = max(r.safety_max_arm_change_rad, float(arm.max()))
        return res.command, (res.reason or "filter") if res.intervened else ""


def evaluate(policy_fn: PolicyFn, n: int, seeds: Sequence[int] | None = None, *, task: str = "transfer_cube",
             cameras: Sequence[str] = ("cam_high",), size: int = 64, instruction: str = "",
             execute: int = 50, steps: int | None = None, out_dir: str | Path | None = None,
             stop_on_success: bool = True, safety: bool = True, progress: bool = True,
             record_dir: str | Path | None = None, media: bool = True) -> EvalResult:
    """Run n seeded episodes in-process; returns success statistics (and writes strips if out_dir).

    safety: pass every action through the executor's SafetyFilter (joint limits, per-step velocity
    cap, relative-target cap), as the ROS graph does, so in-process and graph numbers compare.
    record_dir: also write every rollout (success or failure, the commands actually sent) as an
    ALOHA HDF5 episode, the data the planning model's world/value objectives are fine-tuned on.
    media: with out_dir, also per episode an animated GIF of the viewer (config/sim_node.yaml `viewer`,
    the demo's view) and a plot of the executed chunks (evaluation.chunk_plot).
    """
    seeds = list(range(n)) if seeds is None else list(seeds)[:n]
    if len(seeds) < n:
        raise ValueError(f"{n} episodes requested but only {len(seeds)} seeds given")
    out = Path(out_dir) if out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    sim = SimAloha(task, width=size, height=size)
    settings = EpisodeSettings(task=task, cameras=tuple(cameras), size=size, instruction=instruction,
                               execute=execute, horizon=int(steps or sim.tasks_cfg[task].episode_steps),
                               stop_on_success=stop_on_success, safety=safety, record=bool(record_dir),
                               viewer=load_viewer_config() if out and media else None)
    results: list[EpisodeResult] = []
    t_wall = time.time()
    try:
        for seed in seeds:
            episode = Episode(sim, settings, seed)
            results.append(episode.run(policy_fn))
            _write_episode_files(episode, out, Path(record_dir) if record_dir else None)
            if progress:
                ep, k = results[-1], sum(r.success for r in results)
                print(f"seed {seed}: {'success' if ep.success else 'fail'} (stage {ep.max_stage}), "
                      f"{k}/{len(results)} so far", flush=True)
    finally:
        sim.close()
    res = EvalResult.from_episodes(task, results, time.time() - t_wall)
    if out:
        # what ran, beside what it measured (the episodes' seeds are in each episode)
        ran = {"execute": execute, "safety": safety, "cameras": list(cameras), "size": size,
               "horizon": settings.horizon}
        (out / "results.json").write_text(json.dumps({**asdict(res), "settings": ran}, indent=1))
    return res


def _write_episode_files(episode: Episode, out: Path | None, record_dir: Path | None) -> None:
    """The rollout as an HDF5 episode (record_dir) and the strip PNG (out), each where asked for."""
    ep, s = episode.result, episode.settings
    if episode.rollout is not None and record_dir is not None:
        episode.rollout.write(record_dir / f"rollout_{ep.seed:05d}.hdf5", success=ep.success, task=s.task,
                              instruction=s.instruction, seed=ep.seed)
    if out:
        ep.strip = f"episode_{ep.seed:04d}.png"
        label = f"seed {ep.seed} {'SUCCESS' if ep.success else 'fail'} stage {ep.max_stage}"
        save_strip(episode.frames, out / ep.strip, label)
        if episode.media is not None:
            filtered = "every action through the SafetyFilter" if s.safety else "no safety filter"
            ep.animation, ep.chunk_plot = episode.media.write(
                out, f"episode_{ep.seed:04d}", f"{label}: executed chunks, in process ({filtered})")


def engine_from_dir(path: str | Path, device: str | None = None, planning: str | Path | None = None,
                    robot_config: str = DEFAULT_ROBOT_CONFIG, warn: Callable[[str], None] | None = None,
                    sampler: Mapping[str, float] | None = None):
    """(PolicyEngine, metadata) from an exported bundle, a training checkpoint or a run folder (its latest).

    Resolved, checked and built exactly as the nodes do (deploy.bundle): a bundle whose gripper convention is
    not that of `robot_config` (the sim's) is refused in one line, other findings go to `warn` (default:
    stderr). The one difference: a training checkpoint is evaluated on its EMA weights, as the trainer means
    it to be (exported bundles say so themselves). planning: a second bundle whose world model / value
    function the planner uses (same statistics, refused otherwise). sampler: fields of the policy model's sampler
    config to override, e.g. {"camera_guidance": 1.0, "action_smoothing": 9} (validated; None: the bundle's).
    """
    warn = warn or (lambda line: print(f"warning: {line}", file=sys.stderr))
    robot = AlohaRobot.from_yaml(robot_config)
    paths = resolve_bundle(path)  # a bare weights file is refused there: it names no model config
    if paths.meta_file.name == META_FILE:
        paths = replace(paths, ema=True)
    planning_paths = resolve_bundle(planning) if planning else None
    for bundle in (paths, planning_paths):
        for line in check_gripper_convention(bundle, robot) if bundle is not None else ():
            warn(line)
    eng = build_engine(paths, planning_paths, device=device or "cpu")
    if sampler:
        cfg = eng.model.cfg
        new = replace(cfg.sampler, **sampler)
        new.validate()
        eng.model.cfg = eng.cfg = replace(cfg, sampler=new)
    return eng, paths.meta


class EnginePolicy:
    """A PolicyEngine as policy_fn; query k uses sampler seed seed + k (reproducible episodes)."""

    def __init__(self, engine, seed: int = 0, steps: int | None = None):
        self.engine, self.seed, self.steps = engine, seed, steps
        self.queries = 0

    def __call__(self, obs: Mapping) -> np.ndarray:
        out = self.engine.act(obs, seed=self.seed + self.queries, steps=self.steps)
        self.queries += 1
        return out.actions


class PlannerPolicy:
    """Best-of-N planning as policy_fn: query k plans with base seed base_seed + k * N (fresh candidates).

    log: where each plan's candidate scores, chosen candidate and seconds are appended (None: not kept).
    """

    def __init__(self, engine, plan_cfg: PlanConfig, log: list | None = None):
        self.engine, self.plan_cfg, self.log = engine, plan_cfg, log
        self.queries = 0

    def __call__(self, obs: Mapping) -> np.ndarray:
        cfg = replace(self.plan_cfg, base_seed=self.plan_cfg.base_seed + self.queries * self.plan_cfg.num_candidates)
        self.queries += 1
        r = plan(self.engine, obs, cfg)
        if self.log is not None:
            self.log.append({"scores": [float(x) for x in r.scores], "best": int(r.best),
                             "seconds": float(r.timings["total_s"])})
        return r.actions


def engine_policy(engine, seed: int = 0, steps: int | None = None) -> PolicyFn:
    return EnginePolicy(engine, seed, steps)


def planner_policy(engine, plan_cfg: PlanConfig, log: list | None = None) -> PolicyFn:
    return PlannerPolicy(engine, plan_cfg, log)
