"""What an evaluation reports, in one process or through the ROS graph: episodes, success, what to look at.

Both runners return `EpisodeResult`s, so a seed means the same thing in either: success, the highest
task stage reached, how often the policy was queried and how long it took. `EvalResult` summarises
in-process runs (`cosmos-aloha eval`, `results.json`); `graph_report` builds the demo's report
(`cosmos-aloha demo`, `demo_report.json`) from the same episodes.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a binomial proportion (sane at 0 and n, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    # highest task stage reached, 0..4 (4 = success)
    max_stage: int
    # sim steps run (50 Hz)
    steps: int
    # policy queries; through the graph: action chunks published during the episode
    queries: int
    # actions the executor's SafetyFilter changed (in-process only: the graph's executor counts for the run)
    safety_interventions: int = 0
    # s, per query: policy call in-process; through the graph each chunk's observation -> published latency
    policy_s: list[float] = field(default_factory=list)
    # which limit acted (first reason per tick: limit / relative / step / non-finite...) and by how much:
    # a gripper clipped from 1.02 to 1.0 counts like a wrist held back 0.5 rad, the sizes tell them apart
    safety_kinds: dict[str, int] = field(default_factory=dict)
    safety_max_arm_change_rad: float = 0.0
    # of safety_interventions, those that left every arm joint as the policy asked and changed only a gripper
    # (in-process: a normalised gripper command of 1.001 clipped into [0, 1] is most of them), and the largest
    # gripper change (normalised units)
    safety_gripper_only: int = 0
    safety_max_gripper_change: float = 0.0
    # s, simulated time the episode ran
    sim_time_s: float = 0.0
    # s, wall-clock time the episode took
    wall_s: float = 0.0
    # file name of the episode's PNG strip, "" when none was written
    strip: str = ""
    # file name of the episode's animated GIF of the viewer (evaluation.animation), "" when none was written
    animation: str = ""
    # file name of the episode's executed-chunk plot (evaluation.chunk_plot), "" when none was written
    chunk_plot: str = ""


@dataclass
class EvalResult:
    task: str
    n: int
    successes: int
    success_rate: float
    ci95: tuple[float, float]
    mean_stage: float
    latency_s_median: float
    latency_s_p90: float
    wall_s: float
    episodes: list[EpisodeResult]

    @classmethod
    def from_episodes(cls, task: str, episodes: list[EpisodeResult], wall_s: float) -> EvalResult:
        k = sum(e.success for e in episodes)
        lat = np.array([s for e in episodes for s in e.policy_s]) if episodes else np.zeros(1)
        return cls(task=task, n=len(episodes), successes=k, success_rate=k / max(1, len(episodes)),
                   ci95=wilson_interval(k, len(episodes)), mean_stage=float(np.mean([e.max_stage for e in episodes])),
                   latency_s_median=float(np.median(lat)), latency_s_p90=float(np.percentile(lat, 90)),
                   wall_s=wall_s, episodes=episodes)

    def summary(self) -> str:
        text = (f"{self.task}: {self.successes}/{self.n} success = {100 * self.success_rate:.1f} % "
                f"(95 % Wilson CI {100 * self.ci95[0]:.1f}-{100 * self.ci95[1]:.1f} %), mean max stage "
                f"{self.mean_stage:.2f}/4, policy latency median {1000 * self.latency_s_median:.0f} ms "
                f"(p90 {1000 * self.latency_s_p90:.0f} ms) per chunk")
        safety = self.safety_summary()
        return text + (f"\n{safety}" if safety else "")

    def safety_summary(self) -> str:
        """How often and how much the executor's SafetyFilter changed the policy's actions."""
        steps = sum(e.steps for e in self.episodes)
        changed = sum(e.safety_interventions for e in self.episodes)
        if not steps or not changed:
            return ""
        kinds: dict[str, int] = {}
        for e in self.episodes:
            for k, v in e.safety_kinds.items():
                kinds[k] = kinds.get(k, 0) + v
        by_kind = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        worst = max(e.safety_max_arm_change_rad for e in self.episodes)
        gripper_only = sum(e.safety_gripper_only for e in self.episodes)
        if gripper_only:
            grip = max(e.safety_max_gripper_change for e in self.episodes)
            by_kind += f"; {gripper_only} changed only a gripper, by at most {grip:.3g}"
        return (f"safety filter changed {100 * changed / steps:.0f} % of the actions ({by_kind}); "
                f"largest arm-joint change {worst:.3f} rad")


def save_strip(frames: list[np.ndarray], path: Path, label: str) -> None:
    """Frames side by side (small ones doubled) under a one-line label: an episode at a glance."""
    from PIL import Image, ImageDraw  # heavy, and only needed when a strip is written
    if not frames:
        return
    strip = np.concatenate(frames, axis=1)
    k = 2 if strip.shape[0] <= 64 else 1
    img = Image.fromarray(strip).resize((strip.shape[1] * k, strip.shape[0] * k), Image.NEAREST)
    canvas = Image.new("RGB", (img.width, img.height + 14), (0, 0, 0))
    canvas.paste(img, (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), label, fill=(255, 255, 255))
    canvas.save(path)


def graph_report(episodes: list[EpisodeResult], *, note: str, mode: str, chunk_mode: str, checkpoint: str,
                 task: str, executor: dict | None) -> dict:
    """The demo's report (demo_report.json): the episodes run through the graph and the executor's counters."""
    lat = np.array([x for e in episodes for x in e.policy_s] or [math.nan])
    succ = sum(e.success for e in episodes)
    lo, hi = wilson_interval(succ, len(episodes))
    return {"note": note, "mode": mode, "chunk_mode": chunk_mode, "checkpoint": checkpoint, "task": task,
            "episodes": [{"seed": e.seed, "success": bool(e.success), "max_stage": e.max_stage,
                          "sim_time_s": e.sim_time_s, "wall_s": e.wall_s, "chunks": e.queries,
                          "latency_s": list(e.policy_s), "strip": e.strip, "animation": e.animation,
                          "chunk_plot": e.chunk_plot} for e in episodes],
            "success_rate": succ / max(1, len(episodes)), "success_ci95": [lo, hi],
            "chunk_latency_p50_s": float(np.nanpercentile(lat, 50)),
            "chunk_latency_p95_s": float(np.nanpercentile(lat, 95)),
            "executor": executor}


def media_lines(episodes: list[dict], out: Path) -> list[str]:
    """Where to look, one line per episode of a report's episodes: its GIF, chunk plot and strip in `out`."""
    lines = []
    for e in episodes:
        files = [f"{what} {out / e[key]}" for key, what in (("animation", "GIF"), ("chunk_plot", "chunk plot"),
                                                              ("strip", "strip")) if e.get(key)]
        if files:
            lines.append(f"seed {e['seed']}: {', '.join(files)}")
    return lines


def recorded_evaluations(checkpoint: str) -> list[str]:
    """The checkpoint's own evaluation files (written by `cosmos-aloha eval`), one line each."""
    lines = []
    for f in sorted(Path(checkpoint).glob("eval_*.json")):
        try:
            d = json.loads(f.read_text())
            lo, hi = d["ci95"]
            lines.append(f"{f.name}: {d['successes']}/{d['n']} = {d['success_rate']:.0%} "
                         f"(95% CI {lo:.0%}-{hi:.0%}), mean stage {d['mean_stage']:.2f}/4")
        except (OSError, ValueError, KeyError):
            continue
    return lines


def print_graph_report(r: dict) -> None:
    """The demo's report (graph_report's dict) as a table for the terminal."""
    what = "best-of-N planner" if r.get("mode") == "planning" else "direct policy"
    print(f"\n=== cosmos_policy_ros demo: {what} on the simulated ALOHA ===")
    if r["note"]:
        print(f"NOTE: {r['note']}")
    print(f"checkpoint: {r['checkpoint']}   task: {r['task']}")
    for line in recorded_evaluations(r["checkpoint"]):
        print(f"  recorded in-process evaluation of this checkpoint: {line}")
    print(f"{'seed':>6} {'result':>8} {'stage':>6} {'sim s':>6} {'wall s':>7} {'chunks':>7}")
    for e in r["episodes"]:
        print(f"{e['seed']:>6} {'success' if e['success'] else 'failure':>8} {e['max_stage']:>4}/4 "
              f"{e['sim_time_s']:>6.1f} {e['wall_s']:>7.1f} {e['chunks']:>7}")
    n = len(r["episodes"])
    lo, hi = r["success_ci95"]
    print(f"success: {round(r['success_rate'] * n)}/{n} = {r['success_rate']:.0%} (95% CI {lo:.0%}-{hi:.0%})")
    print(f"chunk latency (observation -> published): p50 {r['chunk_latency_p50_s'] * 1000:.0f} ms, "
          f"p95 {r['chunk_latency_p95_s'] * 1000:.0f} ms")
    ex = r["executor"]
    if ex:
        print(f"executor: mean period {ex['loop_period_mean_s'] * 1000:.1f} ms, p99 period error "
              f"{ex['loop_period_p99_error_s'] * 1000:.1f} ms, chunks accepted {ex['chunks_accepted']}, rejected "
              f"{ex['chunks_rejected']}, safety interventions {ex['interventions']}{_by_kind(ex)}")
        if ex.get("last_intervention"):
            print(f"  last intervention: {ex['last_intervention']}")


def _by_kind(executor: dict) -> str:
    """The executor summary's intervention kinds as ' (collision 5, step 820)'; '' when there are none."""
    kinds = executor.get("intervention_kinds") or {}
    return f" ({', '.join(f'{k} {n}' for k, n in kinds.items())})" if kinds else ""
