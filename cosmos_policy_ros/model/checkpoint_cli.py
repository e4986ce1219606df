"""`cosmos-ckpt PATH [--config YAML] [--ema] [--planning]`: a checkpoint's summary, or the first bad key.

PATH a weights file: its keys, dtypes, prefixes and the DiT sizes they imply. PATH a folder: upstream's
released layout (model/released.py) — each file found, and for each one missing where to download it —
then the summary of the weights file found there.

Exit status 0 when everything reads (and, with --config, the DiT fits strictly), 1 otherwise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from cosmos_policy_ros.errors import EXPECTED_ERRORS, one_line

from . import checkpoint as ckpt
from . import released
from .config import load_model_config
from .dit import CosmosDiT


def report_folder(folder: Path, planning: bool = False) -> tuple[Path | None, list[str]]:
    """Print one line per released file (found: its path; missing: where to get it). Returns (weights file
    or None, the missing lines)."""
    print(f"folder: {folder} (released layout, {released.PLANNING_REPO if planning else released.POLICY_REPO})")
    weights, missing = None, []
    for spec in released.layout_files(planning):
        try:
            found = released.find(folder, spec)
        except released.AmbiguousFileError as exc:
            missing.append(str(exc))
            print(f"  {spec.role}: ambiguous ({exc})")
            continue
        if found is None and planning and spec is not released.PLANNING_WEIGHTS:
            print(f"  {spec.role}: not here (the policy checkpoint's is used)")
        elif found is None:
            missing.append(released.missing_line(folder, spec))
            print(f"  {spec.role}: MISSING - {spec.where_to_get()} (or give {spec.key}:=<file>)")
        else:
            print(f"  {spec.role}: {found.relative_to(folder)}")
            weights = found if spec in (released.WEIGHTS, released.PLANNING_WEIGHTS) else weights
    if (folder / released.CONFIG_JSON).is_file():
        print(f"  {released.CONFIG_JSON}: present (informative; the model config is "
              f"config/model/{released.RELEASED_MODEL_CONFIG} unless model_config:= names another)")
    return weights, missing


def summarize_weights(path: Path, config: str | None, ema: bool) -> None:
    raw = ckpt.read_state_dict(path)
    s = ckpt.summarize(raw)
    print(f"file: {path}")
    print(f"keys: {s['keys']} (Transformer Engine _extra_state entries dropped)")
    print(f"params: {s['params']:,}")
    print("dtypes: " + ", ".join(f"{k}={v}" for k, v in s["dtypes"].items()))
    print("prefixes: " + ", ".join(f"{k}{v}" if k.endswith('.') else f"{k}"
                                   for k, v in s["top_level_prefixes"].items()))
    net_sd = ckpt.normalize_keys(raw, ema=ema, where=str(path))
    guess = ckpt.guess_dit_config(net_sd)
    if guess is None:
        print("config guess: no Cosmos DiT weights recognised")
    else:
        dit_params = sum(v.numel() for k, v in net_sd.items() if not k.startswith(("pos_embedder.", "accum_")))
        print("config guess: " + ", ".join(f"{k}={v}" for k, v in guess.items()))
        print(f"DiT params: {dit_params:,}")
    if config:
        cfg = load_model_config(config)
        with torch.device("meta"):
            net = CosmosDiT(cfg.dit)
        ckpt.check_state_dict(net, net_sd, str(path))
        print(f"fits {config}: yes (strict)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cosmos-ckpt", description=__doc__.splitlines()[0])
    ap.add_argument("path", help=".pt/.pth/.safetensors checkpoint, or a released checkpoint folder")
    ap.add_argument("--config", help="model YAML to check the DiT weights against (strict)")
    ap.add_argument("--ema", action="store_true", help="check the net_ema.* weights instead of net.*")
    ap.add_argument("--planning", action="store_true",
                    help=f"the folder is the planning model's ({released.PLANNING_REPO})")
    args = ap.parse_args(argv)
    path = Path(args.path)
    missing: list[str] = []
    try:
        if path.is_dir():
            weights, missing = report_folder(path, args.planning)
            if weights is not None:
                summarize_weights(weights, args.config, args.ema)
        else:
            summarize_weights(path, args.config, args.ema)
    except EXPECTED_ERRORS as exc:  # CheckpointError, ConfigError, an unreadable file: one line naming it
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    for line in missing:
        print(f"error: {line}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
