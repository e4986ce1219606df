"""Precomputed T5 text embeddings: instruction string -> (L, D) tensor.

The robot PC never runs T5-11B; upstream ships a pickle {instruction: bf16 tensor (1,512,1024)}.
We read that pickle with a restricted unpickler (tensor rebuild functions only, weights-only inner
loads), or a torch.save'd dict (weights_only=True), or a .safetensors file keyed by instruction.
"""
from __future__ import annotations

import collections
import io
import pickle
from pathlib import Path
from typing import Mapping

import torch

from cosmos_policy_ros.errors import CosmosError, file_head, looks_like

from .checkpoint import PICKLE, SAFETENSORS, TORCH_ZIP, load_failure


class EmbeddingsError(CosmosError, ValueError):
    """A T5 embeddings file cannot be read or holds something else than instruction -> tensor (one line)."""


class UnknownInstructionError(CosmosError, KeyError):
    """The instruction has no precomputed embedding."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class _TensorOnlyUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("collections", "OrderedDict"): collections.OrderedDict,
        # map_location: upstream appends embeddings computed on CUDA to its cache pickle (cosmos_utils.py:387-410)
        ("torch.storage", "_load_from_bytes"): lambda b: torch.load(io.BytesIO(b), map_location="cpu",
                                                                    weights_only=True),
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _read(path: Path) -> Mapping[str, torch.Tensor]:
    """The file's table; EmbeddingsError naming the file if it is none of the three formats or cannot be read."""
    kind = looks_like(file_head(path))
    if kind not in (SAFETENSORS, TORCH_ZIP, PICKLE) or (path.suffix == ".safetensors" and kind != SAFETENSORS):
        raise EmbeddingsError(f"{path}: not a T5 embeddings file (expected a torch.save dict, a pickle or "
                              f".safetensors; it looks like {kind})")
    try:
        if kind == SAFETENSORS:
            from safetensors.torch import load_file
            return load_file(str(path))
        if kind == TORCH_ZIP:
            return torch.load(str(path), map_location="cpu", weights_only=True)
        with open(path, "rb") as f:
            return _TensorOnlyUnpickler(f).load()
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("refusing to load "):  # ours: names the object; nothing was executed
            raise EmbeddingsError(f"{path}: not a T5 embeddings file ({exc}: only tensors are read, "
                                  "nothing was executed)") from None
        raise EmbeddingsError(f"{path}: not a T5 embeddings file ({load_failure(exc, path, kind)})") from None
    except Exception as exc:  # noqa: BLE001 - truncated, corrupt: one line naming the file
        raise EmbeddingsError(f"{path}: not a T5 embeddings file ({load_failure(exc, path, kind)})") from None


class T5EmbeddingStore:
    """Lookup of instruction embeddings; `get` returns (L, D) float32, `batch` (B, L, D)."""

    def __init__(self, table: Mapping[str, torch.Tensor], source: str = "<memory>"):
        self.source = source
        self._table: dict[str, torch.Tensor] = {}
        for k, v in table.items():
            if not isinstance(k, str) or not isinstance(v, torch.Tensor):
                raise EmbeddingsError(f"{source}: entries must be str -> tensor, "
                                 f"got {type(k).__name__} -> {type(v).__name__}")
            if v.ndim == 3 and v.shape[0] == 1:
                v = v[0]
            if v.ndim != 2:
                raise EmbeddingsError(f"{source}: embedding for {k!r} has shape {tuple(v.shape)}, "
                                 "expected (1, L, D) or (L, D)")
            self._table[k] = v

    @classmethod
    def load(cls, path: str | Path) -> "T5EmbeddingStore":
        path = Path(path)
        if not path.is_file():
            raise EmbeddingsError(f"{path}: T5 embeddings file not found")
        table = _read(path)
        if not isinstance(table, Mapping):
            raise EmbeddingsError(f"{path}: not a T5 embeddings file (expected a dict instruction -> tensor, "
                                  f"got {type(table).__name__})")
        return cls(table, str(path))

    def save(self, path: str | Path) -> None:
        """Write as torch.save dict {instruction: (1, L, D)} (readable with weights_only=True)."""
        torch.save({k: v[None].contiguous() for k, v in self._table.items()}, str(path))

    @property
    def instructions(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, instruction: str) -> bool:
        return instruction in self._table

    def get(self, instruction: str) -> torch.Tensor:
        try:
            return self._table[instruction].float()
        except KeyError:
            known = ", ".join(repr(s) for s in self.instructions[:10])
            raise UnknownInstructionError(
                f"no T5 embedding for instruction {instruction!r} in {self.source} (known: {known}); "
                "add it with: cosmos-aloha t5-embed --out <this file> \"<instruction>\"") from None

    def batch(self, instructions: str | list[str], batch: int | None = None) -> torch.Tensor:
        if isinstance(instructions, str):
            instructions = [instructions] * (batch or 1)
        return torch.stack([self.get(s) for s in instructions])
