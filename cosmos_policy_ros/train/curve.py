"""Success rate vs training time: evaluate a run's checkpoints on the same seeds and plot the curve.

    python -m cosmos_policy_ros.train.curve RUN_DIR -n 20 --every 2 --out docs/figures/train_success_curve.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from cosmos_policy_ros.evaluation.in_process import engine_from_dir, engine_policy, evaluate

from . import checkpointing as ck


def success_curve(run: str | Path, n: int, first_seed: int = 0, every: int = 1, execute: int = 50,
                  only: list[str] | None = None) -> list[dict]:
    ckpts = sorted((Path(run) / "checkpoints").glob("step_*"))
    if only:
        ckpts = [c for c in ckpts if c.name in only]
    else:
        ckpts = ckpts[::-1][::every][::-1]  # always include the newest
    points = []
    for d in ckpts:
        meta = json.loads((d / ck.META_FILE).read_text())
        eng, _ = engine_from_dir(d)
        lay = eng.cfg.layout
        res = evaluate(engine_policy(eng), n, range(first_seed, first_seed + n), task=meta["train"]["task"],
                       cameras=lay.cameras, size=eng.preprocessing.square_render_side(lay.image_size, lay.cameras),
                       instruction=meta["instruction"], execute=execute, progress=False)
        points.append({"checkpoint": d.name, "step": meta["step"], "train_minutes": meta["elapsed_s"] / 60,
                       "n": res.n, "successes": res.successes, "ci95": list(res.ci95),
                       "mean_stage": res.mean_stage, "latency_s_median": res.latency_s_median})
        print(json.dumps(points[-1]), flush=True)
    return points


def plot_curve(points: list[dict], path: str | Path, marks: list[tuple[float, str]] = ()) -> None:
    """marks: (minute, label) vertical lines, e.g. where a fine-tune on new data started."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x = [p["train_minutes"] for p in points]
    y = [100 * p["successes"] / p["n"] for p in points]
    lo = [100 * p["ci95"][0] for p in points]
    hi = [100 * p["ci95"][1] for p in points]
    st = [p["mean_stage"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.fill_between(x, lo, hi, alpha=0.2, label="95 % Wilson CI")
    ax.plot(x, y, "o-", label="success rate")
    ax.set_xlabel("training time (min, 1 CPU thread)")
    ax.set_ylabel("success %")
    ax.set_ylim(-2, 102)
    ax2 = ax.twinx()
    ax2.plot(x, st, "s--", color="gray", label="mean max stage")
    ax2.set_ylim(0, 4)
    ax2.set_ylabel("mean max stage (0-4)")
    ax.set_title(f"transfer-cube, {points[-1]['n']} seeded episodes per point")
    for minute, label in marks:
        ax.axvline(minute, color="k", lw=0.8, ls=":")
        ax.text(minute, 95, " " + label, fontsize=8, va="top")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import torch
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--only", nargs="*")
    p.add_argument("--execute", type=int, default=50)
    p.add_argument("--out", required=True, help="PNG path (a .json with the points is written beside it)")
    ns = p.parse_args(argv)
    torch.set_num_threads(1)
    pts = success_curve(ns.run, ns.n, ns.first_seed, ns.every, ns.execute, ns.only)
    Path(ns.out).with_suffix(".json").write_text(json.dumps(pts, indent=1))
    plot_curve(pts, ns.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
