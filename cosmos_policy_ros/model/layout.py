"""Latent-frame layout of Cosmos Policy: which latent frame holds what, and how vectors enter it.

ALOHA (3 cameras) gives 11 latent frames (spec section 4.1):
  0 blank | 1 proprio | 2..4 cameras | 5 action | 6 future proprio | 7..9 future cameras | 10 value
Each camera image is 4 identical pixel frames -> one latent frame; frame 0 is one blank pixel frame.
Vectors are tiled end-to-end over the whole (C,H,W) latent frame and read back by averaging the
complete copies (the partial tail copy is discarded, as upstream). The same functions serve the
sampler (conditioning frames) and a training loop (targets), so they are public and stateless.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch

from .config import LayoutConfig


class Query(str, Enum):
    """Which frames are given (condition mask 1) and which are generated."""

    POLICY = "policy"            # given: blank, proprio, cameras -> action, future, value
    WORLD = "world"              # given: + action -> future state, value
    VALUE = "value"              # V(s,a,s'): everything but the value frame given
    VALUE_SPRIME = "value_sprime"  # V(s'): current state and action masked out (planning model)
    Q_VALUE = "q_value"          # Q(s,a): future state masked out


@dataclass(frozen=True)
class LatentLayout:
    """Latent frame indices derived from the camera list (K cameras -> 5 + 2K frames)."""

    cameras: tuple[str, ...]
    chunk_len: int
    action_dim: int
    proprio_dim: int

    @classmethod
    def from_config(cls, cfg: LayoutConfig) -> "LatentLayout":
        return cls(tuple(cfg.cameras), cfg.chunk_len, cfg.action_dim, cfg.proprio_dim)

    @property
    def num_cameras(self) -> int:
        return len(self.cameras)

    @property
    def blank(self) -> int:
        return 0

    @property
    def proprio(self) -> int:
        return 1

    def camera(self, name: str) -> int:
        return 2 + self.cameras.index(name)

    @property
    def camera_frames(self) -> tuple[int, ...]:
        return tuple(range(2, 2 + self.num_cameras))

    @property
    def action(self) -> int:
        return 2 + self.num_cameras

    @property
    def future_proprio(self) -> int:
        return self.action + 1

    def future_camera(self, name: str) -> int:
        return self.future_proprio + 1 + self.cameras.index(name)

    @property
    def future_camera_frames(self) -> tuple[int, ...]:
        return tuple(self.future_proprio + 1 + i for i in range(self.num_cameras))

    @property
    def value(self) -> int:
        return self.future_proprio + self.num_cameras + 1

    @property
    def num_frames(self) -> int:
        return self.value + 1

    @property
    def num_pixel_frames(self) -> int:
        return 1 + 4 * (self.num_frames - 1)

    @property
    def num_conditional_frames(self) -> int:
        """Policy query: blank, proprio and the current cameras are given."""
        return self.action

    @property
    def vector_frames(self) -> tuple[int, ...]:
        """Frames whose content is written vectors, not images (replaced before decoding images)."""
        return (self.blank, self.proprio, self.action, self.future_proprio)

    def describe(self) -> dict[int, str]:
        names = {self.blank: "blank", self.proprio: "proprio", self.action: "action",
                 self.future_proprio: "future_proprio", self.value: "value"}
        for c in self.cameras:
            names[self.camera(c)] = c
            names[self.future_camera(c)] = f"future_{c}"
        return dict(sorted(names.items()))


# ---------------------------------------------------------------- vectors <-> latent frames


def tile_to_frame(vec: torch.Tensor, frame_shape: tuple[int, int, int]) -> torch.Tensor:
    """(B, N) -> (B, C, H, W): the vector repeated end-to-end in C-order, last copy truncated."""
    B, N = vec.shape
    C, H, W = frame_shape
    total = C * H * W
    reps = -(-total // N)
    return vec.repeat(1, reps)[:, :total].reshape(B, C, H, W)


def read_from_frame(frame: torch.Tensor, n: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, n): mean over the complete copies of an n-long tiled vector."""
    B = frame.shape[0]
    flat = frame.reshape(B, -1)
    copies = flat.shape[1] // n
    if copies < 1:
        raise ValueError(f"latent frame holds {flat.shape[1]} values, fewer than one {n}-vector")
    return flat[:, : copies * n].reshape(B, copies, n).mean(dim=1)


def inject(latent: torch.Tensor, frame: int, vec: torch.Tensor) -> torch.Tensor:
    """Return a copy of latent (B,C,T,H,W) with `vec` (B,N) tiled over latent frame `frame`."""
    out = latent.clone()
    B, C, T, H, W = latent.shape
    out[:, :, frame] = tile_to_frame(vec.reshape(B, -1).to(latent.dtype), (C, H, W))
    return out


def inject_scalar(latent: torch.Tensor, frame: int, value: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-sample scalar (B,) over a whole latent frame."""
    out = latent.clone()
    out[:, :, frame] = value.reshape(-1, 1, 1, 1).to(latent.dtype)
    return out


def read_actions(latent: torch.Tensor, layout: LatentLayout) -> torch.Tensor:
    """(B,C,T,H,W) -> (B, chunk_len, action_dim) in the normalised [-1, 1] scale."""
    n = layout.chunk_len * layout.action_dim
    return read_from_frame(latent[:, :, layout.action], n).reshape(-1, layout.chunk_len, layout.action_dim)


def read_proprio(latent: torch.Tensor, layout: LatentLayout, future: bool = True) -> torch.Tensor:
    frame = layout.future_proprio if future else layout.proprio
    return read_from_frame(latent[:, :, frame], layout.proprio_dim)


def read_value(latent: torch.Tensor, layout: LatentLayout) -> torch.Tensor:
    """Mean of the whole value frame, mapped from [-1,1] to [0,1] and clamped: (B,)."""
    v = latent[:, :, layout.value].reshape(latent.shape[0], -1).float().mean(dim=1)
    return ((v + 1.0) / 2.0).clamp(0.0, 1.0)


def inject_state(latent: torch.Tensor, layout: LatentLayout, proprio: torch.Tensor | None = None,
                 actions: torch.Tensor | None = None, future_proprio: torch.Tensor | None = None,
                 value: torch.Tensor | None = None) -> torch.Tensor:
    """Write any of the normalised vectors into their frames (targets for training, conditions for sampling)."""
    out = latent
    if proprio is not None:
        out = inject(out, layout.proprio, proprio)
    if actions is not None:
        out = inject(out, layout.action, actions.reshape(actions.shape[0], -1))
    if future_proprio is not None:
        out = inject(out, layout.future_proprio, future_proprio)
    if value is not None:
        out = inject_scalar(out, layout.value, value)
    return out


# ---------------------------------------------------------------- condition masks


def condition_frames(layout: LatentLayout, query: Query | str) -> list[int]:
    """Indices of the latent frames that are given (clean) for a query type (spec sections 4, 7)."""
    query = Query(query)
    n = layout.num_frames
    if query is Query.POLICY:
        return list(range(layout.num_conditional_frames))
    if query is Query.WORLD:
        return list(range(layout.num_conditional_frames + 1))
    if query is Query.VALUE:
        return list(range(n - 1))
    if query is Query.VALUE_SPRIME:
        return [layout.blank, layout.future_proprio, *layout.future_camera_frames]
    if query is Query.Q_VALUE:
        return list(range(layout.num_conditional_frames + 1))
    raise ValueError(query)


def condition_mask(layout: LayoutConfig | LatentLayout, query: Query | str, batch: int = 1,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """(B, T) float mask, 1 = conditioning frame given clean, 0 = generated."""
    if isinstance(layout, LayoutConfig):
        layout = LatentLayout.from_config(layout)
    m = torch.zeros(batch, layout.num_frames, device=device)
    m[:, condition_frames(layout, query)] = 1.0
    return m


# ---------------------------------------------------------------- pixel-frame sequence


def build_pixel_sequence(images: dict[str, torch.Tensor], layout: LatentLayout,
                         future_images: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """uint8 (B,H,W,3) per camera -> uint8 video (B,3,1+4(T-1),H,W) in the latent-frame order.

    Non-image slots are black; future-camera slots repeat the current image (inference placeholder,
    upstream) unless `future_images` is given (training).
    """
    first = images[layout.cameras[0]]
    B, H, W, _ = first.shape
    video = torch.zeros(B, 3, layout.num_pixel_frames, H, W, dtype=torch.uint8, device=first.device)
    future_images = future_images or images

    def put(frame: int, img: torch.Tensor) -> None:
        start = 1 + 4 * (frame - 1)
        video[:, :, start:start + 4] = img.permute(0, 3, 1, 2)[:, :, None]

    for cam in layout.cameras:
        if cam not in images:
            raise KeyError(f"missing camera image {cam!r} (layout needs {list(layout.cameras)})")
        put(layout.camera(cam), images[cam])
        put(layout.future_camera(cam), future_images[cam])
    return video


def latent_to_pixel_frame(latent_index: int) -> int:
    """First pixel frame decoded from latent frame i (i >= 1)."""
    return 0 if latent_index == 0 else (latent_index - 1) * 4 + 1
