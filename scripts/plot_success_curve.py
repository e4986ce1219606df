"""docs/figures/sim_crop_success.png from docs/figures/sim_crop_success.json: success per training step.

Each row of the JSON is one `cosmos-aloha eval` of one checkpoint of the sim_crop run: {"step", "minutes" (training
time), "seeds", "successes", "n", "mean_stage", "setting", optional "data" (a fine-tune on other demos)}. The figure
shows success with its Wilson 95 % interval and the mean max stage per step: one colour per seed set, one line per
setting; a fine-tune's points are stars, joined by a dashed line to the parent checkpoint's point of the same seeds.

    .venv/bin/python scripts/plot_success_curve.py [docs/figures/sim_crop_success.json] [OUT.png]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cosmos_policy_ros.evaluation.report import wilson_interval  # noqa: E402

GOAL = 60.0
COLORS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def main(argv: list[str]) -> int:
    src = Path(argv[0] if argv else "docs/figures/sim_crop_success.json")
    out = Path(argv[1]) if len(argv) > 1 else src.with_suffix(".png")
    rows = json.loads(src.read_text())["rows"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    colors = dict(zip(dict.fromkeys(r["seeds"] for r in rows), COLORS))
    settings = [r["setting"] for r in rows]
    main_setting = max(set(settings), key=settings.count)  # named once, in the title
    def series(r: dict) -> tuple[str, str, str]:
        return r["setting"], r["seeds"], r.get("data", "")

    for setting, seeds, data in dict.fromkeys(map(series, rows)):
        pts = sorted((r for r in rows if series(r) == (setting, seeds, data)), key=lambda r: r["step"])
        style = "o-" if setting == main_setting else "s:"
        if data:  # a fine-tune: start its line at the parent's last point of the same setting and seeds
            parent = [r for r in rows if series(r) == (setting, seeds, "") and r["step"] < pts[0]["step"]]
            pts = sorted(parent, key=lambda r: r["step"])[-1:] + pts
            style = "*--"
        label = f"seeds {seeds}" + (f", {data}" if data else "") + ("" if setting == main_setting else f", {setting}")
        steps = [r["step"] for r in pts]
        rate = np.array([100 * r["successes"] / r["n"] for r in pts])
        lo_hi = 100 * np.array([wilson_interval(r["successes"], r["n"]) for r in pts])
        a1.errorbar(steps, rate, yerr=[rate - lo_hi[:, 0], lo_hi[:, 1] - rate], fmt=style, color=colors[seeds],
                    capsize=4, label=label, markersize=9 if data else 6)
        a2.plot(steps, [r["mean_stage"] for r in pts], style, color=colors[seeds], label=label)
        for r, y in zip(pts, rate) if seeds == "0-49" else ():
            a1.annotate(f"{r['minutes']:.0f} min", (r["step"], y), textcoords="offset points", xytext=(6, -12),
                        fontsize=7, color="gray")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    a1.legend(fontsize=7, loc="lower right")
    a1.axhline(GOAL, color="k", ls="--", lw=1)
    a1.text(a1.get_xlim()[0], GOAL + 1, f" goal {GOAL:.0f} %", fontsize=8, ha="left")
    a1.set(xlabel="training step (batch 24); labels: training time on 2 CPU cores",
           ylabel="success (%, Wilson 95 %), 50 episodes", ylim=(0, 100))
    a2.set(xlabel="training step", ylabel="mean max stage (0-4)", ylim=(0, 4))
    fig.suptitle(f"sim_crop run: transfer-cube success through the SafetyFilter, in process ({main_setting})",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
