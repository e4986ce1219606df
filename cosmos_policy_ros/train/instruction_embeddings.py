"""Stand-in instruction embeddings for small from-scratch models (no T5-11B on this machine).

A deterministic Gaussian (L, D) table seeded by the instruction's SHA-256: distinct instructions get
distinct, reproducible contexts, stored in the same file format as upstream T5 embeddings
(`model.text.T5EmbeddingStore`), so the engine loads either kind unchanged. It carries no language
understanding: a model trained with it knows only the instructions it was trained on.
"""
from __future__ import annotations

import hashlib

import torch

from cosmos_policy_ros.model.text import T5EmbeddingStore


def stand_in_embedding(instruction: str, length: int, dim: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(instruction.encode()).digest()[:8], "little")
    g = torch.Generator().manual_seed(seed)
    return torch.randn(length, dim, generator=g)


def stand_in_store(instructions, length: int, dim: int) -> T5EmbeddingStore:
    return T5EmbeddingStore({s: stand_in_embedding(s, length, dim) for s in sorted(set(instructions))},
                            source="<stand-in embeddings>")
