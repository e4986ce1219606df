"""Success-rate curve over training time (train/curve.py)."""
from __future__ import annotations

import matplotlib.image as mpimg

from cosmos_policy_ros.train.curve import plot_curve


def test_success_curve_plot_marks_where_a_fine_tune_started(tmp_path):
    """The curve figure is written with a marker line; success % and stage come from the points."""
    points = [{"train_minutes": m, "successes": s, "n": 10, "ci95": [0.0, 0.3], "mean_stage": st}
              for m, s, st in [(5, 0, 0.2), (10, 1, 0.8), (15, 3, 1.5)]]
    plain, marked = tmp_path / "plain.png", tmp_path / "marked.png"
    plot_curve(points, plain)
    plot_curve(points, marked, marks=[(10.0, "fine-tune")])
    a, b = mpimg.imread(plain), mpimg.imread(marked)
    assert a.shape == b.shape and a.shape[0] > 100
    assert (a != b).any()  # the mark is drawn
