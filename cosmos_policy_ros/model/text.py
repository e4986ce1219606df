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


class UnknownInstructionError(KeyError):
    """The instruction has no precomputed embedding."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class _TensorOnlyUnpickler(pickle.Unpickler):
    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch.storage", "_load_from_bytes"): lambda b: torch.load(io.BytesIO(b), weights_only=True),
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a T5 embedding file") from None


def _read(path: Path) -> Mapping[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    with open(path, "rb") as f:
        zip_file = f.read(4) == b"PK\x03\x04"
    if zip_file:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    with open(path, "rb") as f:
        return _TensorOnlyUnpickler(f).load()


class T5EmbeddingStore:
    """Lookup of instruction embeddings; `get` returns (L, D) float32, `batch` (B, L, D)."""

    def __init__(self, table: Mapping[str, torch.Tensor], source: str = "<memory>"):
        self.source = source
        self._table: dict[str, torch.Tensor] = {}
        for k, v in table.items():
            if not isinstance(k, str) or not isinstance(v, torch.Tensor):
                raise ValueError(f"{source}: entries must be str -> tensor, got {type(k).__name__} -> {type(v).__name__}")
            if v.ndim == 3 and v.shape[0] == 1:
                v = v[0]
            if v.ndim != 2:
                raise ValueError(f"{source}: embedding for {k!r} has shape {tuple(v.shape)}, expected (1, L, D) or (L, D)")
            self._table[k] = v

    @classmethod
    def load(cls, path: str | Path) -> "T5EmbeddingStore":
        path = Path(path)
        try:
            table = _read(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: T5 embedding file not found") from None
        except Exception as exc:
            raise ValueError(f"{path}: cannot read T5 embeddings ({type(exc).__name__}: {exc})") from None
        if not isinstance(table, Mapping):
            raise ValueError(f"{path}: expected a dict instruction -> tensor, got {type(table).__name__}")
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
                "precompute it with T5-11B and add it to the file") from None

    def batch(self, instructions: str | list[str], batch: int | None = None) -> torch.Tensor:
        if isinstance(instructions, str):
            instructions = [instructions] * (batch or 1)
        return torch.stack([self.get(s) for s in instructions])
