"""An episode's executed action chunks as a plot: what was predicted, what was commanded, what the arms did.

Why: a GIF shows that an arm missed the cube, not why. Plotted per joint over simulated time, one sees
whether the policy predicted the wrong motion (the chunks), the executor changed it (the SafetyFilter's
interventions, blending at chunk boundaries), or the arm did not follow the command (measured vs
commanded). `ChunkTrace` collects an episode from either runner; `plot_chunk_trace` draws it.

    per arm (columns) and joint (rows: waist, shoulder, elbow, wrist_angle, gripper):
      dashed, one colour per chunk   each chunk as the policy predicted it (before the filter)
      solid, the colour of the chunk received last: the command sent (after the SafetyFilter); through the
                                     graph a chunk the executor rejected (stale) keeps its colour and boundary
      black                          the measured joint position
      dotted vertical lines          chunk boundaries (a new chunk arrived)
      red x / red triangles          safety interventions on that joint / counted by the executor (joint unknown)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

# the joints plotted for each arm: the ones a transfer visibly depends on
PLOT_JOINTS = ("waist", "shoulder", "elbow", "wrist_angle", "gripper")
SIDES = ("left", "right")
# joints per arm in the 14-D order: waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate, gripper
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
# rad (gripper: normalised units), the smallest y range of a joint's plot
MIN_SPAN = 0.1
# one colour per chunk, in turn (matplotlib's tab10 without its red: red marks the safety filter)
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")


@dataclass
class JointSeries:
    """Samples of some of the 14 joints over time: per joint index, times (s) and values."""
    t: dict[int, list[float]] = field(default_factory=dict)
    v: dict[int, list[float]] = field(default_factory=dict)

    def add(self, t: float, values: Sequence[float], joints: Sequence[int] = range(14)) -> None:
        for j, x in zip(joints, values):
            self.t.setdefault(j, []).append(float(t))
            self.v.setdefault(j, []).append(float(x))

    def of(self, joint: int) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.t.get(joint, []), float), np.asarray(self.v.get(joint, []), float)


@dataclass
class PlannedChunk:
    # s, when it took over (the executor could start playing it): a chunk boundary
    start: float
    # s, when each action was due (the policy's timing: observation time + i * period)
    times: np.ndarray
    # (n, 14) actions as predicted, before the safety filter
    actions: np.ndarray


@dataclass
class Intervention:
    # s, when the filter acted (through the graph: when the executor's counter was seen to grow)
    t: float
    # interventions it stands for
    count: int
    # what acted: "step", "relative", "limit", ... or "step 3, collision 1"
    kind: str
    # joint indices the filter changed; () = not known (the graph's executor counts per tick)
    joints: tuple[int, ...] = ()


class ChunkTrace:
    """One episode's executed chunks over simulated time (s since the reset), joints in the 14-D order."""

    def __init__(self) -> None:
        self.measured = JointSeries()
        self.commanded = JointSeries()
        self.chunks: list[PlannedChunk] = []
        self.interventions: list[Intervention] = []

    def add_chunk(self, start: float, times: Sequence[float], actions: np.ndarray) -> None:
        self.chunks.append(PlannedChunk(start=float(start), times=np.asarray(times, float),
                                        actions=np.asarray(actions, float)))

    def add_intervention(self, t: float, count: int, kind: str, joints: Sequence[int] = ()) -> None:
        self.interventions.append(Intervention(t=float(t), count=int(count), kind=kind, joints=tuple(joints)))

    def __bool__(self) -> bool:
        return bool(self.chunks or self.measured.t or self.commanded.t)


def joint_index(side: str, joint: str) -> int:
    return 7 * SIDES.index(side) + ARM_JOINTS.index(joint)


def plot_chunk_trace(trace: ChunkTrace, path: Path, title: str, joints: Sequence[str] = PLOT_JOINTS) -> None:
    """The trace as a PNG: one row per joint, one column per arm (module docstring: what each line is)."""
    from matplotlib.figure import Figure  # heavy, and only needed when a plot is written (no pyplot: no GUI state)

    fig = Figure(figsize=(12, 1.9 * len(joints) + 0.8))
    axes = fig.subplots(len(joints), 2, sharex=True, squeeze=False)
    for col, side in enumerate(SIDES):
        for row, joint in enumerate(joints):
            ax = axes[row][col]
            _plot_joint(ax, trace, joint_index(side, joint))
            ax.set_ylabel(f"{joint}\n({'0 closed..1 open' if joint == 'gripper' else 'rad'})", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[0][col].set_title(f"{side} arm", fontsize=10)
        axes[-1][col].set_xlabel("simulated time since the reset (s)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.legend(handles=_legend(), loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    fig.savefig(path, dpi=80)


def _plot_joint(ax, trace: ChunkTrace, j: int, colors=COLORS) -> None:
    starts = [c.start for c in trace.chunks]
    for k, chunk in enumerate(trace.chunks):
        ax.plot(chunk.times, chunk.actions[:, j], "--", color=colors[k % len(colors)], lw=0.8, alpha=0.6)
        ax.axvline(chunk.start, color="0.6", ls=":", lw=0.8)
    t, v = trace.commanded.of(j)
    active = np.searchsorted(starts, t, side="right") - 1 if starts else np.zeros(len(t), int)
    for k in np.unique(active):
        sel = active == k
        ax.plot(t[sel], v[sel], "-", color=colors[max(k, 0) % len(colors)], lw=1.6)
    tm, vm = trace.measured.of(j)
    ax.plot(tm, vm, "-", color="black", lw=0.9)
    _plot_interventions(ax, trace, j, t, v)
    lo, hi = ax.get_ylim()
    if hi - lo < MIN_SPAN:  # a joint that hardly moved looks flat, not like noise blown up
        mid = 0.5 * (lo + hi)
        ax.set_ylim(mid - MIN_SPAN / 2, mid + MIN_SPAN / 2)


def _plot_interventions(ax, trace: ChunkTrace, j: int, t: np.ndarray, v: np.ndarray) -> None:
    """Red x on the command where the filter changed this joint; red triangles at the top for counts of
    interventions whose joints are not known."""
    on_joint = [i.t for i in trace.interventions if j in i.joints]
    if on_joint and len(t):
        ax.plot(on_joint, np.interp(on_joint, t, v), "x", color="red", ms=4, mew=1.0)
    unknown = [i.t for i in trace.interventions if not i.joints]
    if unknown:
        ax.plot(unknown, np.full(len(unknown), 0.97), "v", color="red", ms=4, transform=ax.get_xaxis_transform())


def _legend() -> list:
    from matplotlib.lines import Line2D as line  # heavy, as above

    colors = COLORS
    return [line([], [], ls="--", color=colors[0], label="chunk as predicted (one colour per chunk)"),
            line([], [], ls="-", lw=1.6, color=colors[0],
                 label="commanded after the safety filter (newest chunk's colour)"),
            line([], [], ls="-", color="black", label="measured"),
            line([], [], ls=":", color="0.6", label="chunk boundary"),
            line([], [], ls="", marker="x", color="red", label="safety intervention (v: joint not known)")]
