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
"model" dtypes follow the model: on a CPU in float32 they change nothing.

No torch here: the bundle resolution reads this before any model is built.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from cosmos_policy_ros.config import ConfigError

RESIZES = ("pil_256_224", "torch")
DTYPES = ("model", "float32")


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
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in stated.items():
            if key not in known:
                raise ConfigError(f"{where}: preprocess.{key}: unknown key (known: {', '.join(known)})")
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
