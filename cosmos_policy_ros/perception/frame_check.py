"""Is a camera frame usable? Degenerate frames are refused; another resolution is used, said once.

Why: a 1x1 or 32x24 frame (a driver fault, a wrong topic) used to be upscaled to the model's input and
acted on without a word. A frame at another resolution than config/cameras.yaml (the sim renders at the
checkpoint's size) is fine to use, but a lab should see it once, not every frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FrameVerdict:
    usable: bool
    line: str = ""   # one line to log ("" = nothing new to say)


@dataclass
class FrameChecker:
    width: int                # configured frame size (config/cameras.yaml)
    height: int
    min_side_px: int          # frames with a side below this are refused
    _said: set[tuple[str, int, int]] = field(default_factory=set)

    def check(self, camera: str, height: int, width: int) -> FrameVerdict:
        """Refusals return a line every time (the caller throttles); size notes only once per size."""
        if min(height, width) < self.min_side_px:
            return FrameVerdict(False, f"{camera}: {width}x{height} frame refused (degenerate: a side is below "
                                       f"min_side_px {self.min_side_px}; expected {self.width}x{self.height})")
        key = (camera, height, width)
        if (width, height) != (self.width, self.height) and key not in self._said:
            self._said.add(key)
            return FrameVerdict(True, f"{camera}: {width}x{height} frames, configured {self.width}x{self.height} "
                                      f"(config/cameras.yaml); using them, resized to the model's input")
        return FrameVerdict(True)
