"""The instruction context a training run conditions on: a T5 embedding from a file, or a stand-in.

* T5 (fine-tuning the released model, or any run given a T5 file): the instruction's entry of an
  upstream-format embeddings file (``model.text.T5EmbeddingStore``): ``--t5-embeddings FILE`` /
  ``train.t5_embeddings``, else the parent's own file (the released ``aloha_t5_embeddings.pkl``, or a
  bundle's ``instruction_embeddings.pt``). New instructions are added with ``cosmos-aloha t5-embed``.
* Stand-in (small from-scratch sim models; no T5-11B on this machine): a deterministic Gaussian (L, D)
  table seeded by the instruction's SHA-256, so distinct instructions get distinct, reproducible
  contexts. It carries no language understanding: such a model knows only the instructions it was
  trained on.

Checkpoints and bundles store whichever was used as ``instruction_embeddings.pt``, so the engine and a
resumed run load either kind unchanged.
"""
from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import Iterable, Sequence

import torch

from cosmos_policy_ros.data.aloha_hdf5 import read_episode
from cosmos_policy_ros.errors import CosmosError
from cosmos_policy_ros.model.text import EmbeddingsError, T5EmbeddingStore, UnknownInstructionError


class EpisodeInstructionError(CosmosError, ValueError):
    """An episode names no instruction, so no T5 embedding can be looked up or made for it (one line)."""


def stand_in_embedding(instruction: str, length: int, dim: int) -> torch.Tensor:
    seed = int.from_bytes(hashlib.sha256(instruction.encode()).digest()[:8], "little")
    g = torch.Generator().manual_seed(seed)
    return torch.randn(length, dim, generator=g)


def stand_in_store(instructions, length: int, dim: int) -> T5EmbeddingStore:
    return T5EmbeddingStore({s: stand_in_embedding(s, length, dim) for s in sorted(set(instructions))},
                            source="<stand-in embeddings>")


def context_file(given: str, recipe: Path | None, parent_file: Path | None) -> Path | None:
    """The T5 file a run takes its context from; None: the stand-in.

    `given` (``train.t5_embeddings`` or ``--t5-embeddings``): the path as given, else relative to the recipe's
    folder; else the parent's T5 file. A given file that is in neither place: EmbeddingsError naming it.
    """
    if not given:
        return parent_file
    path = Path(given).expanduser()
    if not path.is_file() and recipe is not None and not path.is_absolute() and (recipe.parent / path).is_file():
        path = recipe.parent / path
    if not path.is_file():
        raise EmbeddingsError(f"{given}: T5 embeddings file not found (train.t5_embeddings / --t5-embeddings; "
                              "make one with `cosmos-aloha t5-embed --out FILE ...`)")
    return path


def _missing(instruction: str, store: T5EmbeddingStore) -> UnknownInstructionError:
    held = ", ".join(repr(s) for s in store.instructions[:5]) + (", ..." if len(store.instructions) > 5 else "")
    return UnknownInstructionError(
        f"no T5 embedding for instruction {instruction!r} in {store.source} (it holds {held or 'none'}): make it with "
        f"`cosmos-aloha t5-embed --out MY_T5.pkl {shlex.quote(instruction)}` and train with --t5-embeddings MY_T5.pkl")


def check_instructions(instructions: Iterable[str], t5_file: Path) -> None:
    """Every instruction has an entry in `t5_file` (checked before hours of encoding); else one line naming it."""
    store = T5EmbeddingStore.load(t5_file)
    for s in instructions:
        if s not in store:
            raise _missing(s, store)


def training_context(instruction: str, length: int, dim: int, t5_file: Path | None) -> torch.Tensor:
    """(length, dim) float32: the instruction's T5 embedding from `t5_file`, or the stand-in when it is None.

    An entry of another shape than the model's (text_len, crossattn_emb_channels): EmbeddingsError naming the
    file (padded positions are zero vectors the DiT attends to without a mask, so the length matters too).
    """
    if t5_file is None:
        return stand_in_embedding(instruction, length, dim)
    store = T5EmbeddingStore.load(t5_file)
    if instruction not in store:
        raise _missing(instruction, store)
    emb = store.get(instruction)
    if tuple(emb.shape) != (length, dim):
        raise EmbeddingsError(f"{t5_file}: the embedding of {instruction!r} is {tuple(emb.shape)} but the model "
                              f"takes ({length}, {dim}) (text_len, crossattn_emb_channels): make it with "
                              f"`cosmos-aloha t5-embed --max-length {length}` and a T5 of width {dim}")
    return emb


def instructions_of(files: Sequence[Path]) -> list[str]:
    """The distinct instructions of these ALOHA HDF5 episodes, in first-seen order; an episode without one: error."""
    found: dict[str, None] = {}
    for path in files:
        instruction = read_episode(path).instruction
        if not instruction:
            raise EpisodeInstructionError(f"{path}: the episode names no instruction (its instruction attribute is "
                                          "empty), so it has no T5 embedding")
        found.setdefault(instruction, None)
    return list(found)
