"""Checkpoint reading and strict loading with one-line errors.

Reads .pt/.pth with torch.load(weights_only=True) (never unpickles arbitrary objects) and
.safetensors. Upstream prefixes are handled: `net.` (regular weights), `net_ema.` (EMA, chosen with
`ema=True`), `model.`/`module.`/`_orig_mod.`, activation-checkpoint wrapper names, TE `_extra_state`
entries, and a top-level {"model"|"state_dict"|"ema": {...}} wrapper. Recomputable buffers
(RoPE tables, training counters) may be absent. Anything else that does not match -> CheckpointError
with the first bad key.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

_WRAPPERS = ("model", "state_dict", "net", "ema", "module")
_DROP_PARTS = ("._checkpoint_wrapped_module", "_checkpoint_wrapped_module.", "._orig_mod", "_orig_mod.")
OPTIONAL_BUFFERS = (
    "pos_embedder.seq", "pos_embedder.dim_spatial_range", "pos_embedder.dim_temporal_range",
    "accum_video_sample_counter", "accum_image_sample_counter", "accum_iteration", "accum_train_in_hours",
)


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message is one line."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Raw {key: tensor} from a .pt/.pth/.safetensors file (wrapper dicts unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(16)
    is_zip = head[:4] == b"PK\x03\x04"
    try:
        if path.suffix == ".safetensors" or (not is_zip and _looks_like_safetensors(head)):
            from safetensors.torch import load_file
            sd = load_file(str(path))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # protocol warnings for foreign pickles
                sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=is_zip)
    except CheckpointError:
        raise
    except Exception as exc:  # truncated zip, foreign pickle, bad header ...
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {msg[:200]})") from None
    return _unwrap(sd, str(path))


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n < 100_000_000 and head[8:9] == b"{"


def _unwrap(obj, where: str) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if k in obj and isinstance(obj[k], Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: not a state dict (top-level object is {type(obj).__name__})")
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{where}: first bad key {k!r}: value is {type(v).__name__}, not a tensor")
    return dict(obj)


def normalize_keys(sd: Mapping[str, torch.Tensor], ema: bool = False,
                   prefixes: tuple[str, ...] = ("net.",)) -> dict[str, torch.Tensor]:
    """Strip upstream prefixes and wrapper names; pick EMA (`net_ema.`) or regular (`net.`) weights."""
    out: dict[str, torch.Tensor] = {}
    has_net = any(k.startswith(p) for k in sd for p in prefixes)
    ema_prefixes = tuple(p.rstrip(".") + "_ema." for p in prefixes)
    has_ema = any(k.startswith(ema_prefixes) for k in sd)
    if ema and not has_ema:
        raise CheckpointError("EMA weights requested but the checkpoint has no 'net_ema.' keys")
    want = ema_prefixes if ema else prefixes
    for k, v in sd.items():
        if k.endswith("_extra_state"):
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
    sd = normalize_keys(raw, ema=ema, prefixes=prefixes)
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
