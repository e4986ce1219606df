"""`cosmos-aloha t5-embed`: the T5 encoder embeddings of new instructions, computed once, in upstream's pickle.

Why: the policy is conditioned on T5-11B's encoder output, which neither the robot PC nor a training run
computes (spec sections 2 and 11). Upstream ships one pickle per dataset, ``{instruction: bf16 tensor
(1, 512, 1024)}`` (``aloha_t5_embeddings.pkl``), and appends to it when it meets a new instruction
(``cosmos_utils.py:387-410``). This command does that step ahead of time, on a machine that can hold the
encoder, exactly as upstream's ``get_t5_emb.py:25-112`` computes an entry::

    T5TokenizerFast(padding="max_length", max_length=512, truncation=True)
      -> T5 encoder (input ids + attention mask) -> last_hidden_state (1, 512, d_model)
      -> positions from the token count on (padding) set to exactly 0 -> bf16

    cosmos-aloha t5-embed --out my_t5_embeddings.pkl "put the cup on the plate" [--device cuda]
    cosmos-aloha t5-embed --out my_t5_embeddings.pkl --from-episodes DATA_DIR [--model LOCAL_T5_DIR]

The file grows: entries already there are kept (an instruction already there is recomputed only with
``--overwrite``) and it is replaced atomically, so a crash leaves the old file. It is read by
``model.text.T5EmbeddingStore``: the inference engine and ``cosmos-aloha train --t5-embeddings FILE``.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from cosmos_policy_ros.data.aloha_hdf5 import list_episodes
from cosmos_policy_ros.errors import EXPECTED_ERRORS, CosmosError, one_line
from cosmos_policy_ros.model.text import T5EmbeddingStore

from .instruction_embeddings import instructions_of

DEFAULT_MODEL = "google-t5/t5-11b"   # upstream's text encoder (get_t5_emb.py)
DEFAULT_MAX_LENGTH = 512             # tokens; the released model's text_len
INSTALL_HINT = "pip install -r requirements/t5.txt"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class T5EmbedError(CosmosError, RuntimeError):
    """The encoder, the instructions or the output file cannot be used (one line naming which and why)."""


class T5Encoder:
    """A T5 tokenizer + encoder that turns one instruction into upstream's (1, max_length, d_model) bf16 entry."""

    def __init__(self, tokenizer, encoder, max_length: int, device: torch.device):
        self.tokenizer, self.encoder, self.max_length, self.device = tokenizer, encoder, max_length, device

    @classmethod
    def load(cls, model: str, device: str, max_length: int = DEFAULT_MAX_LENGTH,
             dtype: torch.dtype = torch.float32) -> "T5Encoder":
        """Tokenizer and encoder weights of `model` (a Hugging Face id or a local folder) on `device`.

        float32 is what upstream runs (transformers' from_pretrained default of its time); bfloat16 halves
        the memory of T5-11B's encoder (~19 GB in float32) at the cost of rounding inside the encoder.
        """
        transformers = _transformers()
        dev = _device(device)
        if _looks_like_path(model) and not Path(model).expanduser().is_dir():
            raise T5EmbedError(f"{model}: T5 model folder not found (give a local folder holding config.json, the "
                               f"weights and the tokenizer files, or a Hugging Face id such as {DEFAULT_MODEL})")
        source = str(Path(model).expanduser()) if _looks_like_path(model) else model
        transformers.utils.logging.disable_progress_bar()  # our own bar counts instructions
        try:
            tokenizer = transformers.T5TokenizerFast.from_pretrained(source)
            encoder = transformers.T5EncoderModel.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError, TypeError) as exc:  # not downloadable / offline, no tokenizer, foreign files
            raise T5EmbedError(f"{model}: cannot load a T5 tokenizer and encoder ({one_line(exc)})") from None
        return cls(tokenizer, encoder.to(dev).eval(), max_length, dev)

    @property
    def dim(self) -> int:
        return int(self.encoder.config.d_model)

    @torch.no_grad()
    def embed(self, instruction: str) -> torch.Tensor:
        """(1, max_length, d_model) bf16 on the CPU, zero from the instruction's token count on."""
        enc = self.tokenizer([instruction], return_tensors="pt", padding="max_length", truncation=True,
                             max_length=self.max_length)
        ids, mask = enc.input_ids.to(self.device), enc.attention_mask.to(self.device)
        hidden = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        hidden[0, int(mask[0].sum()):] = 0  # upstream: padded tokens are zero vectors (the DiT uses no mask)
        # clone: a tensor of its own storage, so pickle writes exactly (1, L, D) and nothing of a larger buffer
        return hidden.detach().to("cpu", torch.bfloat16).clone()


def _transformers():
    """The transformers module, or one line saying how to install it."""
    try:
        import transformers  # heavy and optional: only this command needs it
    except ImportError:
        raise T5EmbedError(f"computing T5 embeddings needs the transformers package: {INSTALL_HINT}") from None
    return transformers


def _device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise T5EmbedError(f"--device {device}: not a torch device (cuda, cuda:1, cpu)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise T5EmbedError(f"--device {device}: no CUDA device here (torch.cuda.is_available() is False); "
                           "use --device cpu (slow for T5-11B) or run on a GPU machine")
    return dev


def _looks_like_path(model: str) -> bool:
    """A local folder (one that exists, or an explicit ./ / ~ path) rather than a Hugging Face id ("owner/name")."""
    return model.startswith((".", "/", "~")) or Path(model).expanduser().exists()


def read_table(path: Path) -> dict[str, torch.Tensor]:
    """The entries of an existing embeddings file as (1, L, D) bf16 (an absent file: none).

    Read through T5EmbeddingStore, the reader the engine uses; bf16 entries come back unchanged (bf16 ->
    float32 -> bf16 is exact), entries of another dtype are rounded to upstream's bf16.
    """
    if not path.exists():
        return {}
    if not path.is_file():
        raise T5EmbedError(f"{path}: --out is not a file")
    store = T5EmbeddingStore.load(path)  # EmbeddingsError: one line naming the file
    return {s: store.get(s)[None].to(torch.bfloat16) for s in store.instructions}


def write_table(path: Path, table: dict[str, torch.Tensor]) -> None:
    """pickle.dump of {instruction: (1, L, D) bf16}, as upstream writes it, replacing `path` atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            pickle.dump(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def episode_instructions(dirs: Sequence[str | Path]) -> list[str]:
    """The distinct instructions of the ALOHA HDF5 episodes under `dirs`, in first-seen order."""
    return instructions_of([path for d in dirs for path in list_episodes(d)])  # no folder / episodes: one line


def _check_shape(out: Path, table: dict[str, torch.Tensor], length: int, dim: int) -> None:
    """Every entry of one file has the same (L, D): the engine stacks them into one batch."""
    for s, v in table.items():
        if tuple(v.shape[1:]) != (length, dim):
            raise T5EmbedError(f"{out}: holds embeddings of shape {tuple(v.shape)} (e.g. {s!r}) but this encoder "
                               f"makes (1, {length}, {dim}): use another --out, or the --model and --max-length "
                               "that made them")


def embed_into(out: Path, instructions: Sequence[str], model: str, device: str,
               max_length: int = DEFAULT_MAX_LENGTH, overwrite: bool = False, dtype: torch.dtype = torch.float32,
               progress: bool = True) -> list[str]:
    """Add the embeddings of `instructions` to the file `out` (created if absent); returns those computed."""
    if out.suffix == ".safetensors":
        raise T5EmbedError(f"{out}: this command writes upstream's pickle format: name the file .pkl")
    if not out.parent.is_dir():
        raise T5EmbedError(f"{out}: folder {out.parent} does not exist")
    if max_length < 1:
        raise T5EmbedError(f"--max-length must be >= 1, got {max_length}")
    table = read_table(out)
    todo = [s for s in dict.fromkeys(instructions) if overwrite or s not in table]
    if not todo:
        return []
    encoder = T5Encoder.load(model, device, max_length, dtype)
    _check_shape(out, {s: v for s, v in table.items() if s not in todo}, max_length, encoder.dim)
    for s in tqdm(todo, desc="t5-embed", unit="instruction", disable=not progress):
        table[s] = encoder.embed(s)
    write_table(out, table)
    return todo


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cosmos-aloha t5-embed", description=__doc__.splitlines()[0])
    p.add_argument("instructions", nargs="*", help="instructions to embed (quote each one)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="embeddings pickle to create or add to (e.g. a copy of aloha_t5_embeddings.pkl)")
    p.add_argument("--from-episodes", nargs="+", default=[], metavar="DIR",
                   help="also embed the instructions of the ALOHA HDF5 episodes in these folders")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"Hugging Face id or local folder (default {DEFAULT_MODEL})")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH,
                   help=f"tokens, padded and truncated to (default {DEFAULT_MAX_LENGTH}: the model's text_len)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                   help="encoder weights (default float32, as upstream; bfloat16 halves the memory)")
    p.add_argument("--overwrite", action="store_true", help="recompute instructions the file already holds")
    p.add_argument("--no-progress", action="store_true")
    ns = p.parse_args(argv)
    out = Path(ns.out).expanduser()
    try:
        wanted = list(dict.fromkeys([*ns.instructions, *episode_instructions(ns.from_episodes)]))
        if not wanted:
            p.error("give instructions or --from-episodes DIR")
        if any(not s.strip() for s in wanted):
            raise T5EmbedError("an instruction is empty")
        done = embed_into(out, wanted, ns.model, ns.device, ns.max_length, ns.overwrite, DTYPES[ns.dtype],
                          progress=not ns.no_progress)
    except EXPECTED_ERRORS as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    kept = [s for s in wanted if s not in done]
    if kept:
        print(f"kept {len(kept)} instruction(s) already in {out} (--overwrite recomputes them)")
    print(f"{out}: {len(done)} embedding(s) computed with {ns.model} (max length {ns.max_length})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
