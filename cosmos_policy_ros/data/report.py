"""Human-facing views of episodes: a summary table and a PNG of an episode's joints per arm."""
from __future__ import annotations

from pathlib import Path

import numpy as np

JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")


def table(rows: list[dict], columns: list[str]) -> str:
    """Plain fixed-width table (no dependency; readable in a terminal and in CI logs)."""
    cells = [[str(c) for c in columns]] + [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if np.isnan(v) else f"{v:.3g}"
    return str(v)


def hdf5_summary(path: str | Path) -> dict:
    """One row of the episodes table; EpisodeFormatError naming the file if it is not an ALOHA HDF5 episode."""
    from cosmos_policy_ros.data.aloha_hdf5 import EpisodeFormatError, open_episode

    with open_episode(path) as f:
        if "action" not in f:
            raise EpisodeFormatError(f"{path}: missing dataset /action (not an ALOHA HDF5 episode)")
        T = len(f["action"])
        rate = float(f.attrs.get("rate_hz", 50.0))
        cams = sorted(f["observations/images"]) if "observations/images" in f else []
        shape = f[f"observations/images/{cams[0]}"].shape[1:] if cams else ()
        score = float(f.attrs.get("success_score", float("nan")))
        return {"file": Path(path).name, "episode": int(f.attrs.get("episode_index", -1)),
                "kind": str(f.attrs.get("kind", "")), "task": str(f.attrs.get("task", "")),
                "outcome": str(f.attrs.get("outcome", "")) or "unlabelled", "value": score,
                "steps": T, "seconds": T / rate, "cameras": len(cams),
                "image": "x".join(map(str, shape[:2][::-1])) if shape else "-",
                "actions": str(f.attrs.get("action_source", ""))}


SUMMARY_COLUMNS = ["file", "episode", "kind", "task", "outcome", "value", "steps", "seconds", "cameras", "image",
                   "actions"]


def plot_episode(path: str | Path, png: str | Path) -> Path:
    """qpos (solid) and action (dashed) of every joint, one panel per arm; saved as PNG."""
    import matplotlib

    from cosmos_policy_ros.data.aloha_hdf5 import open_episode

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open_episode(path) as f:  # one line naming the file if it is missing or not HDF5
        qpos, act = f["observations/qpos"][()], f["action"][()]
        rate = float(f.attrs.get("rate_hz", 50.0))
        title = (f"{Path(path).name}: {f.attrs.get('task', '')} {f.attrs.get('kind', '')} "
                 f"{f.attrs.get('outcome', '') or 'unlabelled'}")
    t = np.arange(len(qpos)) / rate
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (ax, side) in enumerate(zip(axes, ("left", "right"))):
        for j, name in enumerate(JOINTS):
            c = colors[j % len(colors)]
            ax.plot(t, qpos[:, 7 * i + j], color=c, lw=1.2, label=name)
            ax.plot(t, act[:, 7 * i + j], color=c, lw=0.9, ls="--")
        ax.set_ylabel(f"{side} arm (rad; gripper 0..1)")
        ax.grid(alpha=0.3)
    axes[0].legend(ncol=7, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 1.18))
    axes[-1].set_xlabel("time (s)   solid: qpos   dashed: action")
    fig.suptitle(title, y=0.995, fontsize=10)
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
