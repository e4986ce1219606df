"""How far message stamps lie from this host's clock, per stream, measured from the first messages.

Why: in the usual lab layout the cameras, driver and executor run on the robot PC and the policy on a GPU
workstation. If the two clocks are not synchronised (chrony/PTP), every observation looks stale or stamped in
the future and the policy refuses all of them. `observation_time: arrival` (config/policy.yaml) judges ages
on arrival instead; either way a lab should see the offset once, at start-up, in seconds.
The offset measured is (arrival - stamp): the clock difference plus the transport latency.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class StampOffsets:
    streams: list[str]           # the streams to measure (cameras the model uses, both arms)
    samples: int = 20            # messages per stream before the median is reported
    _seen: dict[str, list[float]] = field(default_factory=dict)
    _reported: bool = False

    def add(self, stream: str, stamp: float, arrival: float) -> dict[str, float] | None:
        """Record one message; once every stream has `samples`, return {stream: median offset s} (once)."""
        if self._reported or stream not in self.streams:
            return None
        seen = self._seen.setdefault(stream, [])
        if len(seen) < self.samples:
            seen.append(arrival - stamp)
        if any(len(self._seen.get(s, ())) < self.samples for s in self.streams):
            return None
        self._reported = True
        return {s: statistics.median(self._seen[s]) for s in self.streams}


def offset_line(offsets: dict[str, float], mode: str, limit_s: float, samples: int) -> str | None:
    """The start-up line: always in arrival mode; in stamp mode only when an offset exceeds `limit_s`."""
    listed = ", ".join(f"{s} {v:+.3f} s" for s, v in offsets.items())
    worst = max(abs(v) for v in offsets.values())
    if mode == "arrival":
        return (f"observation_time: arrival: ages are judged on this host's arrival times; message stamps lie "
                f"behind this host's clock by (median of {samples}, transport latency included): {listed}")
    if worst > limit_s:
        return (f"message stamps differ from this host's clock by up to {worst:.3f} s (median of {samples}, "
                f"transport latency included: {listed}): synchronise the clocks (chrony/PTP) or set "
                f"observation_time: arrival in config/policy.yaml")
    return None
