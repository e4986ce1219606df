"""Checkpoint reading and strict loading with one-line errors.

Reads .pt/.pth with torch.load(weights_only=True) (never unpickles arbitrary objects) and
.safetensors. Upstream prefixes are handled: `net.` (regular weights), `net_ema.` (EMA, chosen with
`ema=True`), `model.`/`module.`/`_orig_mod.`, activation-checkpoint wrapper names, TE `_extra_state`
entries, and a top-level {"model"|"state_dict"|"ema": {...}} wrapper.

Transformer Engine `_extra_state` entries (the q/k RMSNorms, `t_embedding_norm`) hold FP8 metadata, which
inference never uses. Depending on the TE version and on how a distributed checkpoint was converted to one
file they are an empty/uint8 tensor, None, or an `io.BytesIO` holding a `torch.save`d object; upstream loads
its .pt with weights_only=False to get past the last kind. Here `io.BytesIO` is the one extra class the
weights-only unpickler may build (it only stores bytes); its contents are never read, and every
`_extra_state` entry is dropped. Recomputable buffers
(RoPE tables, training counters) may be absent. Anything else that does not match -> CheckpointError
with the first bad key.
"""
from __future__ import annotations

import contextlib
import io
import json
import pickle
import re
import warnings
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from cosmos_policy_ros.errors import CosmosError, clean, file_head, looks_like

_WRAPPERS = ("model", "state_dict", "net", "ema", "module")
EXTRA_STATE = "_extra_state"   # key suffix of Transformer Engine (FP8) metadata: dropped
# What the weights-only unpickler may build besides tensors: the BytesIO of TE extra state (bytes, never read).
_SAFE_GLOBALS = [io.BytesIO]
_DROP_PARTS = ("._checkpoint_wrapped_module", "_checkpoint_wrapped_module.", "._orig_mod", "_orig_mod.")
OPTIONAL_BUFFERS = (
    "pos_embedder.seq", "pos_embedder.dim_spatial_range", "pos_embedder.dim_temporal_range",
    "accum_video_sample_counter", "accum_image_sample_counter", "accum_iteration", "accum_train_in_hours",
)


class CheckpointError(CosmosError, RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message is one line."""


SAFETENSORS, TORCH_ZIP, PICKLE = "a safetensors file", "a zip archive (torch.save)", "a Python pickle"
_READABLE = (SAFETENSORS, TORCH_ZIP, PICKLE)  # looks_like() answers this module reads
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_WEIGHTS_ONLY = re.compile(r"WeightsUnpickler error: (.*?)(?: Check the documentation|$)")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Raw {key: tensor} from a .pt/.pth/.safetensors file (wrapper dicts unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    kind = looks_like(file_head(path))
    where = f"{path}: cannot read checkpoint"
    if path.suffix == ".safetensors" and kind != SAFETENSORS:
        raise CheckpointError(f"{where}: not a safetensors file (it looks like {kind})")
    if kind not in _READABLE:
        raise CheckpointError(f"{where}: expected safetensors or a torch.save .pt/.pth file, it looks like {kind}")
    try:
        if kind == SAFETENSORS:
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            with warnings.catch_warnings(), _allow_extra_state_bytes():
                warnings.simplefilter("ignore")  # protocol warnings for foreign pickles
                sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=kind == TORCH_ZIP)
    except Exception as exc:  # truncated zip, foreign pickle, bad header ...
        raise CheckpointError(f"{where}: {load_failure(exc, path, kind)}") from None
    return _unwrap(sd, str(path))


def _allow_extra_state_bytes():
    """torch.load(weights_only=True) may build io.BytesIO (torch >= 2.5; older ones refuse such files in one line)."""
    allow = getattr(torch.serialization, "safe_globals", None)
    return allow(_SAFE_GLOBALS) if allow else contextlib.nullcontext()


def load_failure(exc: BaseException, path: Path, kind: str) -> str:
    """Why safetensors or torch.load(weights_only=True) could not read ``path`` (a ``looks_like`` kind), briefly.

    torch's refusal is a paragraph with ANSI escapes that suggests weights_only=False; this says
    instead which pickled object was refused (nothing was executed) or that the file is cut short.
    """
    text = clean(str(exc))
    found = _UNSUPPORTED_GLOBAL.search(text)
    name = found.group(1) if found else (pickled_global(path) if kind == PICKLE else None)
    if name:
        return f"it holds a pickled Python object ({name}), not only tensors: refused, nothing was executed"
    found = _WEIGHTS_ONLY.search(text)
    if found:
        return f"refused by torch.load(weights_only=True): {found.group(1).strip() or 'not a tensors-only file'}"
    label = {SAFETENSORS: "safetensors file", TORCH_ZIP: "torch.save file", PICKLE: "pickle"}.get(kind, "file")
    first = text.split(". ")[0].removeprefix("Error while deserializing header: ")[:200]
    return f"truncated or corrupt {label} ({type(exc).__name__}: {first or 'no details'})"


class _FirstForeignGlobal(pickle.Unpickler):
    """Walks a pickle without building any object but plain containers and stand-ins.

    find_class never returns a real callable: torch's own names (tensor rebuild functions) get a
    harmless stand-in, anything else stops the walk naming itself. So nothing in the file can run.
    """

    class Found(Exception):
        pass

    def find_class(self, module: str, name: str):
        if module.split(".")[0] == "torch" or (module, name) in (("collections", "OrderedDict"), ("_codecs", "encode")):
            return lambda *args, **kwargs: None
        raise self.Found(f"{module}.{name}")

    def persistent_load(self, pid):
        return None


def pickled_global(path: Path) -> str | None:
    """The first importable name other than torch's a pickle file refers to (None: none, or unreadable)."""
    try:
        with open(path, "rb") as f:
            _FirstForeignGlobal(f).load()
    except _FirstForeignGlobal.Found as found:
        return str(found)
    except Exception:  # noqa: BLE001 - truncated or not a pickle: nothing to name
        return None
    return None


def _unwrap(obj, where: str) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: not a state dict (top-level object is {type(obj).__name__})")
    obj = {k: v for k, v in obj.items() if not str(k).endswith(EXTRA_STATE)}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{where}: first bad key {k!r}: value is {type(v).__name__}, not a tensor")
    return dict(obj)


def normalize_keys(sd: Mapping[str, torch.Tensor], ema: bool = False, prefixes: tuple[str, ...] = ("net.",),
                   where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Strip upstream prefixes and wrapper names; pick EMA (`net_ema.`) or regular (`net.`) weights.

    ``where`` (the file) begins the error message when EMA weights are asked for and absent.
    """
    out: dict[str, torch.Tensor] = {}
    has_net = any(k.startswith(p) for k in sd for p in prefixes)
    ema_prefixes = tuple(p.rstrip(".") + "_ema." for p in prefixes)
    has_ema = any(k.startswith(ema_prefixes) for k in sd)
    if ema and not has_ema:
        raise CheckpointError(f"{where}: EMA weights requested but the file has no "
                              f"{' / '.join(repr(p) for p in ema_prefixes)} keys")
    want = ema_prefixes if ema else prefixes
    for k, v in sd.items():
        if k.endswith(EXTRA_STATE):
            continue
        for part in _DROP_PARTS:
            k = k.replace(part, "")
        for generic in ("module.", "model."):
            if k.startswith(generic):
                k = k[len(generic):]
        if has_net or has_ema:
            matched = next((p for p in want if k.startswith(p)), None)
            if matched is None:
                if k.startswith(prefixes + ema_prefixes):
                    continue  # the other weight set
                continue  # non-network entries (tokenizer, conditioner, logvar ...) of a full model dump
            k = k[len(matched):]
        out[k] = v
    return out


def check_state_dict(model: nn.Module, sd: Mapping[str, torch.Tensor], where: str = "checkpoint",
                     optional: tuple[str, ...] = OPTIONAL_BUFFERS) -> None:
    """Raise CheckpointError naming the first key that is missing, unexpected or mis-shaped."""
    expected = model.state_dict()
    for k, v in sd.items():
        if k not in expected:
            raise CheckpointError(f"{where}: first bad key {k!r}: unexpected (not in the model)")
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{where}: first bad key {k!r}: shape {tuple(v.shape)}, "
                                  f"model expects {tuple(expected[k].shape)}")
    for k in expected:
        if k not in sd and k not in optional:
            raise CheckpointError(f"{where}: first bad key {k!r}: missing from the checkpoint "
                                  f"({len(sd)} keys found, {len(expected)} expected)")


def load_into(model: nn.Module, path: str | Path, ema: bool = False,
              prefixes: tuple[str, ...] = ("net.",)) -> dict[str, int]:
    """Read, normalise, check and strictly load a checkpoint into `model`. Returns a small summary."""
    raw = read_state_dict(path)
    sd = normalize_keys(raw, ema=ema, prefixes=prefixes, where=str(path))
    check_state_dict(model, sd, str(path))
    full = dict(model.state_dict())
    for k in full:
        if k not in sd:
            sd[k] = full[k]  # recomputable buffer kept as built
    bad = [k for k, v in sd.items() if not torch.isfinite(v.float()).all()] if _is_small(sd) else []
    if bad:
        raise CheckpointError(f"{path}: first bad key {bad[0]!r}: contains NaN/Inf")
    model.load_state_dict(sd, strict=True)
    return {"keys": len(raw), "loaded": len(sd)}


def _is_small(sd: Mapping[str, torch.Tensor]) -> bool:
    return sum(v.numel() for v in sd.values()) < 50_000_000


def save_checkpoint(model: nn.Module, path: str | Path, prefix: str = "net.",
                    metadata: Mapping[str, object] | None = None) -> None:
    """Write {prefix+key: tensor} as .safetensors (metadata as JSON strings) or .pt (by suffix)."""
    path = Path(path)
    sd = {prefix + k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
        save_file(sd, str(path), metadata=meta)
    else:
        torch.save(sd, str(path))


def summarize(sd: Mapping[str, torch.Tensor]) -> dict[str, object]:
    """Key count, parameter count, dtypes and prefixes of a raw state dict."""
    dtypes: dict[str, int] = {}
    for v in sd.values():
        dtypes[str(v.dtype).replace("torch.", "")] = dtypes.get(str(v.dtype).replace("torch.", ""), 0) + 1
    prefixes: dict[str, int] = {}
    for k in sd:
        p = k.split(".", 1)[0] + "." if "." in k else k
        prefixes[p] = prefixes.get(p, 0) + 1
    return {"keys": len(sd), "params": int(sum(v.numel() for v in sd.values())), "dtypes": dtypes,
            "top_level_prefixes": dict(sorted(prefixes.items(), key=lambda kv: -kv[1])[:8])}


def guess_dit_config(sd: Mapping[str, torch.Tensor]) -> dict[str, int] | None:
    """Infer DiT sizes from a normalised state dict (None if it does not look like the DiT)."""
    try:
        D, patch_in = sd["x_embedder.proj.1.weight"].shape
        blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
        head_dim = sd["blocks.0.self_attn.q_norm.weight"].shape[0]
        return {
            "model_channels": int(D), "num_blocks": blocks, "num_heads": int(D // head_dim),
            "patch_in_features": int(patch_in),
            "crossattn_emb_channels": int(sd["blocks.0.cross_attn.k_proj.weight"].shape[1]),
            "mlp_hidden": int(sd["blocks.0.mlp.layer1.weight"].shape[0]),
            "adaln_lora_dim": int(sd["blocks.0.adaln_modulation_self_attn.1.weight"].shape[0]),
            "out_features": int(sd["final_layer.linear.weight"].shape[0]),
        }
    except (KeyError, ValueError, IndexError):
        return None
