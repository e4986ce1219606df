"""An episode as an animated GIF: the viewer's frames, each captioned with seed, simulated time and stage.

Why: a success rate says whether the policy solved the task, not how it failed; a strip of 64x64 policy
inputs is too small to see a grasp. The GIF plays the viewer (sim/viewer.py, rendered large) at the
simulated pace and ends on a frame that says the outcome. Written with Pillow (no video encoder needed).

    frame 320x240  +  caption band:  "seed 1000   t 3.2 s   stage 2/4 lifted"
    ...
    last frame, held:                "seed 1000   SUCCESS at 6.4 s   stage 4/4 success"
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

# sim.tasks' staged reward (gym-aloha's transfer cube): what each stage means
STAGE_NAMES = ("none", "touch", "lifted", "both grippers", "success")
# px, the caption band under each frame (the default bitmap font is 11 px high)
CAPTION_PX = 14
# s, how long the closing outcome frame stays
HOLD_LAST_S = 1.5


def stage_label(stage: int) -> str:
    stage = int(stage)
    name = STAGE_NAMES[stage] if 0 <= stage < len(STAGE_NAMES) else "?"
    return f"stage {stage}/{len(STAGE_NAMES) - 1} {name}"


def caption(seed: int, t: float, stage: int) -> str:
    """The caption of a frame at simulated time t (s since the reset), `stage` the highest reached so far."""
    return f"seed {seed}   t {t:4.1f} s   {stage_label(stage)}"


def outcome_caption(seed: int, t: float, stage: int, success: bool) -> str:
    """The caption of the closing frame: how the episode ended and when."""
    return f"seed {seed}   {'SUCCESS' if success else 'failure'} at {t:.1f} s   {stage_label(stage)}"


def captioned(frame: np.ndarray, text: str) -> np.ndarray:
    """The frame (HxWx3 uint8) above a black band holding `text`: (H + CAPTION_PX) x W x 3."""
    frame = np.asarray(frame, dtype=np.uint8)
    canvas = Image.new("RGB", (frame.shape[1], frame.shape[0] + CAPTION_PX), (0, 0, 0))
    canvas.paste(Image.fromarray(frame), (0, 0))
    ImageDraw.Draw(canvas).text((3, frame.shape[0] + 1), text, fill=(255, 255, 255))
    return np.asarray(canvas)


def save_gif(frames: Sequence[np.ndarray], path: Path, fps: float, hold_last_s: float = HOLD_LAST_S) -> None:
    """Frames as a looping GIF at `fps`; the last one stays `hold_last_s`. One adaptive palette per frame
    (the scene is grey with a red cube: 255 colours lose nothing that matters)."""
    if not frames:
        raise ValueError("save_gif: no frames")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE, colors=255)
              for f in frames]
    step_ms = max(20, round(1000 / fps))  # browsers play faster delays as 100 ms
    durations = [step_ms] * (len(images) - 1) + [max(step_ms, round(1000 * hold_last_s))]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False)


class EpisodeAnimation:
    """One episode's captioned viewer frames, in the order added; `write` makes the GIF."""

    def __init__(self, seed: int, fps: float):
        self.seed, self.fps = seed, fps
        self.frames: list[np.ndarray] = []

    def add(self, frame: np.ndarray, t: float, stage: int) -> None:
        self.frames.append(captioned(frame, caption(self.seed, t, stage)))

    def close(self, frame: np.ndarray, t: float, stage: int, success: bool) -> None:
        """The closing frame: the episode's last view, captioned with its outcome."""
        self.frames.append(captioned(frame, outcome_caption(self.seed, t, stage, success)))

    def write(self, path: Path) -> bool:
        """The GIF at `path`; False (nothing written) when no frame was added."""
        if not self.frames:
            return False
        save_gif(self.frames, path, self.fps)
        return True


class StageTimeline:
    """The highest task stage the sim had reported by each simulated time.

    Through the graph the stage comes with the sim's status a few times a second, the frames more often:
    a frame is captioned with the stage reported at or before its time (it may lag by a status period).
    """

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []

    def add(self, t: float, max_stage: int) -> None:
        self.points.append((float(t), int(max_stage)))

    def at(self, t: float) -> int:
        return max((s for pt, s in self.points if pt <= t + 1e-9), default=0)
