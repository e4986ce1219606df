"""The released Cosmos Policy ALOHA checkpoint as downloaded: which file is which, and where to get each.

A lab downloads the policy repository (``huggingface-cli download nvidia/Cosmos-Policy-ALOHA-Predict2-2B
--local-dir DIR``) and the Wan2.1 tokenizer from the base model's repository (``... nvidia/Cosmos-Predict2-2B-
Video2World tokenizer/tokenizer.pth --local-dir DIR``, which lands in ``DIR/tokenizer/tokenizer.pth``). The
folder then holds (spec section 11; upstream ``aloha/deploy.py:37-38``, ``config/defaults/tokenizer.py:27``)::

    DIR/Cosmos-Policy-ALOHA-Predict2-2B.pt      DiT weights, {"net.<param>": bf16 tensor} + TE _extra_state
    DIR/aloha_dataset_statistics.json           actions_/proprio_{min,max,mean,std,median}, 14 floats each
    DIR/aloha_t5_embeddings.pkl                 pickle {instruction: bf16 tensor (1, 512, 1024)}
    DIR/tokenizer/tokenizer.pth                 Wan2.1 VAE state dict (encoder.*, conv1.*, conv2.*, decoder.*)

This module finds them by name (then by pattern) and says, for each one missing, which repository and path it
comes from. It reads no file and imports no torch: the bundle resolution and `cosmos-ckpt DIR` both use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cosmos_policy_ros.errors import CosmosError

POLICY_REPO = "nvidia/Cosmos-Policy-ALOHA-Predict2-2B"
PLANNING_REPO = "nvidia/Cosmos-Policy-ALOHA-Planning-Model-Predict2-2B"
BASE_REPO = "nvidia/Cosmos-Predict2-2B-Video2World"
# The model YAML (config/model/) a released folder runs with unless model_config names another.
RELEASED_MODEL_CONFIG = "cosmos_policy_2b_aloha.yaml"


@dataclass(frozen=True)
class ReleasedFile:
    """One file of the released layout."""

    role: str                      # what it is, for messages ("dataset statistics")
    key: str                       # the launch argument / node parameter that names it elsewhere
    names: tuple[str, ...]         # paths relative to the folder, tried first, in order
    pattern: str                   # else the one file matching this glob in the folder ("" = none)
    repo: str                      # Hugging Face repository it comes from
    repo_path: str                 # its path there ("*.pt": the repository's one weights file)

    def where_to_get(self) -> str:
        return f"download {self.repo_path} from https://huggingface.co/{self.repo}"


WEIGHTS = ReleasedFile("DiT weights", "checkpoint", ("Cosmos-Policy-ALOHA-Predict2-2B.pt",), "*.pt",
                       POLICY_REPO, "Cosmos-Policy-ALOHA-Predict2-2B.pt")
PLANNING_WEIGHTS = ReleasedFile("planning DiT weights", "planning_checkpoint", (), "*.pt",
                                PLANNING_REPO, "its .pt file")
STATS = ReleasedFile("dataset statistics", "stats", ("aloha_dataset_statistics.json",), "*dataset_statistics.json",
                     POLICY_REPO, "aloha_dataset_statistics.json")
T5 = ReleasedFile("T5 embeddings", "t5_embeddings", ("aloha_t5_embeddings.pkl",), "*t5_embeddings.pkl",
                  POLICY_REPO, "aloha_t5_embeddings.pkl")
TOKENIZER = ReleasedFile("Wan2.1 tokenizer", "tokenizer", ("tokenizer.pth", "tokenizer/tokenizer.pth"), "",
                         BASE_REPO, "tokenizer/tokenizer.pth")
# Upstream's HF repository also has a config.json (components of the 14-D vectors); informative only.
CONFIG_JSON = "config.json"


class AmbiguousFileError(CosmosError, ValueError):
    """Several files match one role's pattern and none has the released name (the message is one line)."""


def find(folder: Path, spec: ReleasedFile) -> Path | None:
    """The file of ``spec`` in ``folder``: a released name, else the only match of its pattern; None if absent.

    Raises AmbiguousFileError when the pattern matches several files (which one is meant cannot be guessed).
    """
    for name in spec.names:
        if (folder / name).is_file():
            return folder / name
    if not spec.pattern:
        return None
    found = sorted(p for p in folder.glob(spec.pattern) if p.is_file())
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise AmbiguousFileError(f"{folder}: several {spec.role} files ({listed}): give {spec.key}:=<file>")
    return found[0] if found else None


def missing_line(folder: Path, spec: ReleasedFile) -> str:
    """One line: which file is missing from ``folder``, where it comes from, and the argument that names it."""
    looked = " or ".join(spec.names) if spec.names else spec.pattern
    return (f"{folder}: no {spec.role} ({looked}): {spec.where_to_get()} into this folder, "
            f"or give {spec.key}:=<file>")


def layout_files(planning: bool = False) -> tuple[ReleasedFile, ...]:
    """The files a released folder holds, weights first (the planning repository's weights when ``planning``)."""
    return (PLANNING_WEIGHTS if planning else WEIGHTS, STATS, T5, TOKENIZER)
