"""The on-disk latent cache: VAE latents of every episode frame a sample reads, encoded once, memory-mapped.

Why: the 2B model's inputs are three 224x224 cameras per step; hundreds of recorded episodes of ~1000 steps do
not fit in memory as frames, and re-encoding them every run costs GPU hours. So frames stream episode by
episode through preprocessing (inference/images.py, the nodes' function), optional augmentation
(train/augment.py) and the frozen VAE, and land in one .npy per episode that DataLoader workers map lazily.

    <cache>/manifest.json      settings (VAE weights hash, image size, cameras, preprocessing, augmentation,
                               dtype) + per episode: file size/mtime, steps rule, .npy name, latent moments
    <cache>/blank.npy          (C, h, w) float32 latent of the black frame 0 (the same for every sample)
    <cache>/ep_<hash>.npy      (copies, frames, cameras, C, h, w) float16|float32, raw VAE latents
                               (normalised with the VAE config's latent mean/std, not the dataset's)

The manifest is rewritten (atomically) after each finished episode, so a crash re-encodes only unfinished
ones; an episode whose file changed (size or mtime) or that lacks steps is re-encoded alone; other settings
re-make the whole cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from cosmos_policy_ros.data.aloha_hdf5 import EpisodeFormatError, open_episode
from cosmos_policy_ros.inference.images import preprocess_image
from cosmos_policy_ros.inference.preprocessing import Preprocessing
from cosmos_policy_ros.model.layout import LatentLayout
from cosmos_policy_ros.model.policy_model import normalize_frames
from cosmos_policy_ros.model.vae import WanVAE

from . import augment as aug
from .latent_cache import prefix_video

FORMAT = 1
MANIFEST = "manifest.json"
BLANK = "blank.npy"
DTYPES = ("float16", "float32")


def vae_fingerprint(vae: WanVAE) -> str:
    """sha256 of the VAE's weights and latent mean/std: the identity of the encoder that made the latents."""
    h = hashlib.sha256()
    tensors = dict(vae.state_dict())
    tensors.update(latent_mean=vae.latent_mean, latent_std=vae.latent_std)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensors[name].shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class EncodeSettings:
    """Everything the stored latents depend on besides the episode files; any change re-makes the cache."""

    vae: str                       # vae_fingerprint
    image_size: int
    cameras: tuple[str, ...]
    preprocess: dict               # Preprocessing fields (resize mode, per-camera crop; never the test-time crop)
    copies: int                    # augmented copies per frame; 0 = one un-augmented copy
    augment_seed: int | None       # seed of the augmentation parameters (None when copies == 0)
    augment_ranges: dict = field(default_factory=dict)
    dtype: str = "float16"

    @property
    def num_copies(self) -> int:
        return max(1, self.copies)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))   # tuples -> lists, as read back from JSON


class FrameEncoder:
    """Raw camera frames of one episode -> latents of every stored copy, batched on `device`.

    The VAE runs in float32 on a CPU and under bf16 autocast on CUDA (as the inference engine's model runs
    there); frames are normalised in float32 (the trainer's Preprocessing.frame_dtype).
    """

    def __init__(self, vae: WanVAE, layout: LatentLayout, settings: EncodeSettings, device: str | torch.device,
                 batch: int = 16):
        self.vae, self.layout, self.settings, self.batch = vae, layout, settings, batch
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available here; encode with --device cpu")
        self.prep = Preprocessing(**settings.preprocess)
        self.pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))  # PIL resizes release the GIL

    @torch.no_grad()
    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        x = normalize_frames(video.to(self.device), torch.float32)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            return self.vae.encode(x)

    def blank(self) -> np.ndarray:
        """(C, h, w) latent of the black first pixel frame."""
        s = self.settings.image_size
        return self._encode(torch.zeros(1, 3, 1, s, s, dtype=torch.uint8))[0, :, 0].cpu().numpy()

    def preprocess(self, frames: np.ndarray, camera: str | None = None) -> torch.Tensor:
        """uint8 (n,H,W,3) raw frames of `camera` -> (n,S,S,3) through the inference nodes' preprocess_image
        (its crop included)."""
        size = self.settings.image_size
        return torch.stack(list(self.pool.map(lambda f: preprocess_image(f, size, self.prep, camera=camera),
                                              frames)))

    def encode(self, episode: str, frames: dict[str, np.ndarray]) -> np.ndarray:
        """Raw frames per camera (n,H,W,3) -> float32 (copies, n, cameras, C, h, w)."""
        pre = {cam: self.preprocess(frames[cam], cam).to(self.device) for cam in self.layout.cameras}
        out = []
        for copy in range(self.settings.num_copies):
            z = self._encode(prefix_video(self.view(episode, pre, copy), self.layout))   # (n, C, 2+K, h, w)
            out.append(z[:, :, 2:].permute(0, 2, 1, 3, 4).float().cpu().numpy())
        return np.stack(out)

    def view(self, episode: str, images: dict[str, torch.Tensor], copy: int) -> dict[str, torch.Tensor]:
        """Preprocessed frames (n,S,S,3) per camera as copy `copy` stores them: one parameter draw for the
        episode's copy, applied to every camera and frame; unchanged when augmentation is off."""
        s = self.settings
        if not s.copies:
            return images
        p = aug.draw_params(s.image_size, s.augment_seed, episode, copy)
        return {cam: aug.augment(x, p) for cam, x in images.items()}

    def close(self) -> None:
        self.pool.shutdown()


@dataclass(frozen=True)
class EpisodeSource:
    """One episode to cache: its file, the steps to encode (sorted) and the cameras to read."""

    path: Path
    steps: np.ndarray

    @property
    def key(self) -> str:
        return str(self.path.resolve())


def _file_id(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


class LatentStore:
    """The cache directory: brings it up to date (`update`) and hands out a lazy reader for a dataset."""

    def __init__(self, directory: str | Path, settings: EncodeSettings):
        self.dir = Path(directory)
        self.settings = settings
        self.manifest = self._load()

    def _load(self) -> dict:
        fresh = {"format": FORMAT, "settings": self.settings.as_dict(), "episodes": {}}
        path = self.dir / MANIFEST
        if not path.is_file():
            return fresh
        try:
            old = json.loads(path.read_text())
        except ValueError:
            return fresh
        if old.get("format") != FORMAT or old.get("settings") != fresh["settings"]:
            return fresh      # other encoder/preprocessing/augmentation: every episode is stale
        return old

    def is_current(self, src: EpisodeSource) -> bool:
        e = self.manifest["episodes"].get(src.key)
        if not e or not (self.dir / e["file"]).is_file():
            return False
        return e["file_id"] == _file_id(src.path) and bool(np.isin(src.steps, e["steps"]).all())

    def update(self, sources: Sequence[EpisodeSource], encoder_factory: Callable[[], FrameEncoder],
               progress: bool = True) -> list[str]:
        """Encode the episodes that are not current; returns their keys. The encoder is built only if needed."""
        todo = [s for s in sources if not self.is_current(s)]
        if not todo and (self.dir / BLANK).is_file():
            return []
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.manifest["episodes"] == {} and (self.dir / MANIFEST).is_file():
            self._clear()
        encoder = encoder_factory()
        try:
            np.save(self.dir / BLANK, encoder.blank())
            total = int(sum(len(s.steps) for s in todo))
            with tqdm(total=total, desc="encode", unit="frame", disable=not progress, dynamic_ncols=True) as bar:
                for i, src in enumerate(todo):
                    bar.set_postfix_str(f"episode {i + 1}/{len(todo)}")
                    self._encode_episode(src, encoder, bar)
        finally:
            encoder.close()
        return [s.key for s in todo]

    def _clear(self) -> None:
        for p in self.dir.glob("ep_*.npy"):
            p.unlink()
        (self.dir / MANIFEST).unlink(missing_ok=True)

    def _encode_episode(self, src: EpisodeSource, encoder: FrameEncoder, bar: tqdm) -> None:
        s = self.settings
        name = f"ep_{hashlib.sha256(src.key.encode()).hexdigest()[:16]}.npy"
        tmp = self.dir / f".{name}.{os.getpid()}.tmp"
        file_id = _file_id(src.path)
        moments = np.zeros((3, 0))
        arr = None
        with open_episode(src.path) as f:
            for start in range(0, len(src.steps), encoder.batch):
                idx = src.steps[start:start + encoder.batch]
                frames = {cam: _read_frames(f, src.path, cam, idx) for cam in s.cameras}
                z = encoder.encode(src.key, frames)                      # (copies, n, K, C, h, w)
                if arr is None:
                    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=s.dtype,
                                                    shape=(z.shape[0], len(src.steps), *z.shape[2:]))
                    moments = np.zeros((3, z.shape[3]))
                arr[:, start:start + len(idx)] = z
                zc = np.moveaxis(z, 3, 0).reshape(z.shape[3], -1).astype(np.float64)
                moments += np.stack([np.full(len(zc), zc.shape[1]), zc.sum(1), (zc * zc).sum(1)])
                bar.update(len(idx))
        arr.flush()
        del arr
        os.replace(tmp, self.dir / name)
        self.manifest["episodes"][src.key] = {
            "file": name, "file_id": file_id, "steps": [int(t) for t in src.steps],
            "moments": {"count": moments[0].tolist(), "sum": moments[1].tolist(), "sumsq": moments[2].tolist()}}
        _write_json(self.dir / MANIFEST, self.manifest)

    def reader(self, sources: Sequence[EpisodeSource]) -> "LatentReader":
        """A lazy, picklable reader over these episodes, in this order (all must be current)."""
        entries = [self.manifest["episodes"][s.key] for s in sources]
        return LatentReader(self.dir, [e["file"] for e in entries], [len(e["steps"]) for e in entries],
                            np.load(self.dir / BLANK), self.settings.num_copies)

    def rows(self, sources: Sequence[EpisodeSource]) -> Callable[[int, np.ndarray], np.ndarray]:
        """(episode index, steps) -> rows of the reader over `sources`."""
        steps = [np.asarray(self.manifest["episodes"][s.key]["steps"]) for s in sources]
        offsets = np.cumsum([0] + [len(s) for s in steps])

        def row(e: int, t: np.ndarray) -> np.ndarray:
            return offsets[e] + np.searchsorted(steps[e], t)
        return row

    def latent_moments(self, sources: Sequence[EpisodeSource]) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and std (unbiased) of the stored latents of these episodes."""
        m = 0.0
        for s in sources:
            e = self.manifest["episodes"][s.key]["moments"]
            m = m + np.array([e["count"], e["sum"], e["sumsq"]], np.float64)
        n, s1, s2 = m
        mean = s1 / n
        var = np.maximum(s2 - n * mean * mean, 0.0) / np.maximum(n - 1, 1)
        return mean, np.sqrt(var)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _read_frames(f, path: Path, cam: str, steps: np.ndarray) -> np.ndarray:
    key = f"observations/images/{cam}"
    try:
        return f[key][np.asarray(steps)]
    except (KeyError, OSError) as exc:
        raise EpisodeFormatError(f"{path}: /{key} unreadable at steps {int(steps[0])}..{int(steps[-1])}: "
                                 f"{exc}") from None


class LatentReader:
    """Camera latents by global row, from the per-episode .npy files opened lazily (once per process).

    Pickles without the open maps, so each DataLoader worker maps the files itself and reads only the rows a
    batch asks for.
    """

    def __init__(self, directory: Path, files: list[str], frames: list[int], blank: np.ndarray, num_copies: int):
        self.dir = Path(directory)
        self.files = list(files)
        self.offsets = np.cumsum([0] + list(frames))
        self.blank = torch.from_numpy(np.asarray(blank, np.float32))
        self.num_copies = num_copies
        self._maps: list[np.ndarray] | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"], state["_pid"] = None, None
        return state

    def _open(self) -> list[np.ndarray]:
        if self._maps is None or self._pid != os.getpid():
            self._maps = [np.load(self.dir / f, mmap_mode="r") for f in self.files]
            self._pid = os.getpid()
        return self._maps

    def read(self, rows: np.ndarray, copies: np.ndarray) -> torch.Tensor:
        """-> float32 (n, cameras, C, h, w) of these rows, each from its copy."""
        maps = self._open()
        rows = np.asarray(rows, np.int64)
        ep = np.searchsorted(self.offsets, rows, side="right") - 1
        local = rows - self.offsets[ep]
        out = np.stack([maps[e][c, r] for e, c, r in zip(ep, np.asarray(copies), local)])
        return torch.from_numpy(out.astype(np.float32))

    def load(self) -> "InMemoryLatents":
        """Everything in memory (small datasets, tests)."""
        maps = self._open()
        cam = torch.from_numpy(np.concatenate([np.asarray(m, np.float32) for m in maps], axis=1))
        return InMemoryLatents(cam, self.blank)


class InMemoryLatents:
    """Camera latents held in one tensor (copies, N, cameras, C, h, w); same interface as LatentReader."""

    def __init__(self, cam: torch.Tensor, blank: torch.Tensor):
        self.cam = cam
        self.blank = blank
        self.num_copies = cam.shape[0]

    def __len__(self) -> int:
        return self.cam.shape[1]

    def read(self, rows: np.ndarray, copies: np.ndarray) -> torch.Tensor:
        return self.cam[torch.as_tensor(np.asarray(copies), dtype=torch.long),
                        torch.as_tensor(np.asarray(rows), dtype=torch.long)]
