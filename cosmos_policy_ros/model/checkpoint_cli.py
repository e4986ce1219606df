"""`cosmos-ckpt PATH [--config YAML] [--ema]`: print a checkpoint's summary, or the first bad key.

Exit status 0 when the file reads (and, with --config, fits the configured DiT strictly), 1 otherwise.
"""
from __future__ import annotations

import argparse
import sys

import torch

from cosmos_policy_ros.errors import EXPECTED_ERRORS, one_line

from . import checkpoint as ckpt
from .config import load_model_config
from .dit import CosmosDiT


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cosmos-ckpt", description=__doc__.splitlines()[0])
    ap.add_argument("path", help=".pt/.pth/.safetensors checkpoint")
    ap.add_argument("--config", help="model YAML to check the DiT weights against (strict)")
    ap.add_argument("--ema", action="store_true", help="check the net_ema.* weights instead of net.*")
    args = ap.parse_args(argv)
    try:
        raw = ckpt.read_state_dict(args.path)
        s = ckpt.summarize(raw)
        print(f"file: {args.path}")
        print(f"keys: {s['keys']}")
        print(f"params: {s['params']:,}")
        print("dtypes: " + ", ".join(f"{k}={v}" for k, v in s["dtypes"].items()))
        print("prefixes: " + ", ".join(f"{k}{v}" if k.endswith('.') else f"{k}"
                                       for k, v in s["top_level_prefixes"].items()))
        net_sd = ckpt.normalize_keys(raw, ema=args.ema, where=args.path)
        guess = ckpt.guess_dit_config(net_sd)
        if guess is None:
            print("config guess: no Cosmos DiT weights recognised")
        else:
            dit_params = sum(v.numel() for k, v in net_sd.items()
                             if not k.startswith(("pos_embedder.", "accum_")))
            print("config guess: " + ", ".join(f"{k}={v}" for k, v in guess.items()))
            print(f"DiT params: {dit_params:,}")
        if args.config:
            cfg = load_model_config(args.config)
            with torch.device("meta"):
                net = CosmosDiT(cfg.dit)
            ckpt.check_state_dict(net, net_sd, args.path)
            print(f"fits {args.config}: yes (strict)")
    except EXPECTED_ERRORS as exc:  # CheckpointError, ConfigError, an unreadable file: one line naming it
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
