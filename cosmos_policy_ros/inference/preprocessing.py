"""How an observation reaches the model: the numerics at the edges, as the checkpoint was trained.

Upstream's released ALOHA deployment (spec sections 4.2, 5, 9.2) does, in this order:

    camera frame --PIL bicubic--> 256x256 --PIL bicubic--> 224x224      (robot client, aloha_utils.py:53-80,
                                                                         run_aloha_eval.py:388-420)
    --> 212-px centre crop --> 224 bilinear, antialias                  (server, cosmos_utils.py:493-525)
    --> uint8 / 127.5 - 1 computed in bf16                              (text2world_model.py:770)
    proprio --min/max--> [-1, 1] --> bf16 --> injected into its frame   (cosmos_utils.py:1040-1043)

A bundle from our trainer (policy.json / checkpoint.json) was trained otherwise: whole frames resized once with
torch's antialiased bicubic, no crop, float32 vectors. So the defaults below are upstream's, used for a
checkpoint without metadata (the released folder, a bare weights file); a bundle with metadata gets the
trainer's (`TRAINER`) unless its `preprocess` mapping (or the older top-level `center_crop`) says otherwise.
"model" dtypes follow the model: on a CPU in float32 they change nothing. A per-camera `crop` (a workspace
crop, config/cameras.yaml) is cut from the camera frame before any resize, in training and in the nodes alike.

No torch here: the bundle resolution reads this before any model is built.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping

from cosmos_policy_ros.config import ConfigError

RESIZES = ("pil_256_224", "torch")
DTYPES = ("model", "float32")

# [x0, y0, x1, y1]: a camera's crop as fractions of the frame's width (x) and height (y), origin top left
Crop = tuple[float, float, float, float]


def check_crop(value, where: str) -> Crop:
    """A crop as 4 floats with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1; else one ConfigError line."""
    if (not isinstance(value, (list, tuple)) or len(value) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"{where}: expected [x0, y0, x1, y1] (4 fractions of the frame), got {value!r}")
    x0, y0, x1, y1 = (float(v) for v in value)
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ConfigError(f"{where}: expected 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {list(value)}")
    return (x0, y0, x1, y1)


def parse_crops(value, where: str) -> dict[str, Crop]:
    """camera -> crop mapping (a recipe's train.crop, a bundle's preprocess.crop), each crop checked."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping camera -> [x0, y0, x1, y1], got {value!r}")
    return {str(c): check_crop(v, f"{where}.{c}") for c, v in value.items()}


def crop_pixels(crop: Crop, width: int, height: int) -> tuple[int, int, int, int]:
    """The crop's pixel box (left, top, right, bottom; right/bottom exclusive) in a width x height frame:
    each edge rounded to the nearest pixel, at least one pixel wide and high."""
    x0, y0 = int(round(crop[0] * width)), int(round(crop[1] * height))
    x1, y1 = int(round(crop[2] * width)), int(round(crop[3] * height))
    return min(x0, width - 1), min(y0, height - 1), max(x1, min(x0, width - 1) + 1), max(y1, min(y0, height - 1) + 1)


def crop_render_side(size: int, crop: Crop | None) -> int:
    """px: the side of a square sim render whose crop spans at least `size` px both ways (the sim renders
    larger so the cropped workspace reaches the model at full resolution); `size` without a crop."""
    if crop is None:
        return size
    return int(math.ceil(size / min(crop[2] - crop[0], crop[3] - crop[1]) - 1e-9))


@dataclass(frozen=True)
class Preprocessing:
    # camera frame -> model size. pil_256_224: PIL bicubic to 256x256, then PIL bicubic to the model size
    # (upstream's ALOHA client; its training data was stored at 256). torch: one antialiased torch bicubic
    # resize straight to the model size, skipped when the frame has it already (our trainer).
    resize: str = "pil_256_224"
    # 90 % area centre crop (int(size * sqrt(0.9)) px) resized back, bilinear antialias: the test-time
    # counterpart of upstream's random-resized-crop augmentation
    center_crop: bool = True
    # the normalised proprio is rounded to the model's dtype before injection (model: bf16 on a GPU, as
    # upstream) or injected in float32
    proprio_dtype: str = "model"
    # uint8 -> [-1, 1] computed in the VAE's dtype (model: bf16 on a GPU, as upstream) or in float32
    frame_dtype: str = "model"
    # camera name -> [x0, y0, x1, y1] fractions of its frame, cut out before the resize (a workspace crop of
    # the primary camera, config/cameras.yaml `crop`); a camera not named is used whole. Bundles record it.
    crop: Mapping[str, Crop] = field(default_factory=dict)

    def __post_init__(self):
        # lists (from JSON) -> tuples, so equal crops compare equal
        object.__setattr__(self, "crop", parse_crops(self.crop, "preprocess.crop"))

    def crop_of(self, camera: str | None) -> Crop | None:
        """The camera's crop, None when its frame is used whole."""
        return self.crop.get(camera) if camera is not None else None

    def square_render_side(self, size: int, cameras) -> int:
        """px: one square render size for all `cameras` of the sim (demos, in-process evaluation, the demo
        graph) so each camera's crop still holds `size` px; `size` when none is cropped."""
        return max((crop_render_side(size, self.crop_of(c)) for c in cameras), default=size)

    def validate(self, where: str = "preprocess") -> None:
        for key, allowed in (("resize", RESIZES), ("proprio_dtype", DTYPES), ("frame_dtype", DTYPES)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{where}.{key}: expected one of {', '.join(allowed)}, got {getattr(self, key)!r}")

    @classmethod
    def from_meta(cls, meta: Mapping, where: str = "checkpoint metadata") -> "Preprocessing":
        """From a bundle's metadata: {} (no metadata) = upstream's; else TRAINER overlaid with what it states."""
        if not meta:
            return cls()
        section = meta.get("preprocess") or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}: preprocess: expected a mapping, got {type(section).__name__}")
        stated = dict(section)
        if "center_crop" in meta:
            stated.setdefault("center_crop", meta["center_crop"])
        train = meta.get("train")
        if "preprocess" not in meta and isinstance(train, Mapping) and train.get("crop"):
            stated["crop"] = train["crop"]     # a training checkpoint (checkpoint.json): its recipe's crop
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in stated.items():
            if key not in known:
                raise ConfigError(f"{where}: preprocess.{key}: unknown key (known: {', '.join(known)})")
            if key == "crop":
                stated["crop"] = parse_crops(value, f"{where}: preprocess.crop")
                continue
            wanted = bool if key == "center_crop" else str
            if not isinstance(value, wanted):
                raise ConfigError(f"{where}: preprocess.{key}: expected {'true/false' if wanted is bool else 'text'}, "
                                  f"got {value!r}")
        out = dataclasses.replace(TRAINER, **stated)
        out.validate(f"{where}: preprocess")
        return out


# What our trainer's bundles were trained with (train/cli.py export, the bundled sim checkpoints).
TRAINER = Preprocessing(resize="torch", center_crop=False, proprio_dtype="float32", frame_dtype="float32")
UPSTREAM = Preprocessing()
