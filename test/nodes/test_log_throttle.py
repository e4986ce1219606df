"""ThrottledLog: a flood becomes one line per period per kind, each counting what it held back."""
from cosmos_policy_ros.nodes.log_throttle import ThrottledLog


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_flood_is_one_line_per_period_with_the_count_held_back():
    said, clock = [], FakeClock()
    log = ThrottledLog(said.append, period_s=1.0, clock=clock)
    for i in range(2439):                      # 2,439 rejections in ~5 s
        clock.t = i * 0.002
        log("chunk rejected: non-finite", kind="nan")
    assert len(said) == 5
    assert said[0] == "chunk rejected: non-finite"
    assert said[1] == "chunk rejected: non-finite (+499 more like it in the last 1.0 s)"
    assert log.total["nan"] == 2439 and log.suppressed_total == 2439 - 5


def test_kinds_are_throttled_apart():
    said, clock = [], FakeClock()
    log = ThrottledLog(said.append, period_s=1.0, clock=clock)
    log("a", kind="stale")
    log("b", kind="future")
    log("c", kind="stale")
    assert said == ["a", "b"] and log.suppressed["stale"] == 1
